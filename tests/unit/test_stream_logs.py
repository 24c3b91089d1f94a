"""Following a run's logs gives up only after its reconnection window, with one clear line (the restarts it
outlives: tests/flow/test_supervisor.py and tests/flow/test_flow_service.py)."""

import time

import pytest

from conftest import unused_port
from finetuner import ConnectionFailedError, FinetunerError
from finetuner.run import Run, reconnect_window
from finetuner.transport import Transport


def test_following_a_run_gives_up_after_the_reconnection_window_with_one_clear_line():
    host = f"grpc://127.0.0.1:{unused_port()}"  # nothing listens there
    run = Run(Transport(host, token="t"), "0" * 16)
    started = time.monotonic()
    with pytest.raises(ConnectionFailedError) as lost:
        next(run.stream_logs(reconnect_s=2))
    assert time.monotonic() - started >= 1
    message = str(lost.value)
    assert "\n" not in message and host in message and "0" * 16 in message and "for 2 s" in message


def test_the_reconnection_window_comes_from_the_environment(monkeypatch):
    assert reconnect_window() == 300
    monkeypatch.setenv("FINETUNER_RECONNECT_S", "600")
    assert reconnect_window() == 600
    monkeypatch.setenv("FINETUNER_RECONNECT_S", "soon")
    with pytest.raises(FinetunerError, match="FINETUNER_RECONNECT_S must be a number of seconds"):
        reconnect_window()
