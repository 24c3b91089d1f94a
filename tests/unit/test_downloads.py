"""Downloading a model from the Hub as a run does: through huggingface_hub's real client, from a stand-in Hub on
127.0.0.1 (tests/hub_server.py) serving the packaged MiniLM as ``acme/minilm-copy``, into a temporary HF_HOME.

Progress as ``Download`` log records, resumption of an interrupted download, nothing taken for a model after a
failed or killed one, and one copy when two processes ask at once.
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import huggingface_hub.constants
import numpy as np
import pytest
from hub_server import HubServer
from rich.console import Console

from finetuner.progress import RunProgress
from finetuner_core.config import FitConfig
from finetuner_core.models import build_model
from finetuner_core.models.hub import cached_snapshot, download
from finetuner_core.models.resolve import CACHE, HUB, resolve_model
from finetuner_core.runs import RunStatus, RunStore
from finetuner_core.runs.context import RunContext
from finetuner_core.runs.execute import execute_run
from finetuner_protocol.backbones import ModelNotAvailableError, minilm_path
from finetuner_protocol.data import LabeledItem
from finetuner_protocol.logs import Building, Download, LogRecord, read_record

REPO = "acme/minilm-copy"
WEIGHTS = "model.safetensors"
TEXTS = ["where is my card?", "I was charged twice for the same purchase"]
# A process that imports, says "ready", takes its environment from the first line it reads (JSON), downloads REPO
# printing each Download record as JSON and, at the end, the snapshot's folder.
DOWNLOADER = """
import json, os, sys
from finetuner_core.models.hub import download
print("ready", flush=True)
os.environ.update(json.loads(sys.stdin.readline()))
path = download(sys.argv[1], progress=lambda record: print(record.model_dump_json(), flush=True))
print(path, flush=True)
"""


@pytest.fixture(scope="module")
def hub():
    with HubServer({REPO: minilm_path()}) as server:
        yield server


@pytest.fixture
def online(hub, monkeypatch, tmp_path) -> Path:
    """Downloads allowed from the stand-in Hub into an empty HF_HOME; its hub cache folder. huggingface_hub read
    HF_HUB_OFFLINE (or TRANSFORMERS_OFFLINE) once, when this (offline) test process imported it: its flag follows.
    """
    for variable in (
        "HF_HUB_OFFLINE",
        "TRANSFORMERS_OFFLINE",
        "HF_HUB_CACHE",
        "HUGGINGFACE_HUB_CACHE",
        "FINETUNER_DOWNLOADS",
    ):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    hub.rate_bps = None
    hub.restore()
    hub.served.clear()
    return tmp_path / "hf" / "hub"


def weights_blob(cache: Path, hub: HubServer) -> Path:
    """Where the weights file's blob goes in ``cache`` (its ``.incomplete`` while it arrives)."""
    return cache / "models--acme--minilm-copy" / "blobs" / hub.repos[REPO][WEIGHTS].etag


def wait_for(condition: Callable[[], bool], what: str, *processes: subprocess.Popen, timeout_s: float = 60.0) -> None:
    """Poll ``condition`` until it holds, failing after ``timeout_s`` or as soon as one of ``processes`` ended."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        assert all(p.poll() is None for p in processes), f"a download ended before {what}"
        time.sleep(0.02)


class Downloader:
    """A process of its own that downloads REPO when told (:meth:`start`), in the environment of the test that
    tells it; started ahead, so that its imports are done by then."""

    def __init__(self, log: Path):
        self.log = log
        environment = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
        self.process = subprocess.Popen(
            [sys.executable, "-c", DOWNLOADER, REPO], stdin=subprocess.PIPE, stdout=log.open("w"), env=environment
        )

    def start(self) -> subprocess.Popen:
        wait_for(
            lambda: self.log.read_text().startswith("ready"), "the downloader to import", self.process, timeout_s=180
        )
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps(dict(os.environ)).encode() + b"\n")
        self.process.stdin.flush()
        return self.process

    def last_line(self) -> str:
        return self.log.read_text().splitlines()[-1]


@pytest.fixture(scope="module", autouse=True)
def downloaders(tmp_path_factory):
    """The processes of the tests below, started with the module (their imports take seconds, done meanwhile)."""
    folder = tmp_path_factory.mktemp("downloaders")
    started = {name: Downloader(folder / f"{name}.log") for name in ("killed", "other")}
    yield started
    for downloader in started.values():
        if downloader.process.poll() is None:
            downloader.process.kill()
        downloader.process.wait(timeout=30)


def test_a_hub_id_is_downloaded_into_the_cache_and_builds_like_the_packaged_model(online, hub, minilm):
    assert resolve_model(REPO).kind == HUB
    model = build_model(REPO, device="cpu")
    np.testing.assert_allclose(model.encode(TEXTS), minilm.encode(TEXTS), atol=1e-6)
    commit = hub.commits[REPO]
    assert model.source["kind"] == HUB and model.source["revision"] == commit
    source = resolve_model(REPO)
    assert source.kind == CACHE and source.revision == commit
    assert source.path == online / "models--acme--minilm-copy" / "snapshots" / commit
    assert {path: hub.gets(REPO, path) for path in hub.repos[REPO]} == dict.fromkeys(hub.repos[REPO], 1)
    repo = online / "models--acme--minilm-copy"
    assert [p.name for p in repo.rglob("*") if ".incomplete" in p.name or ".staging" in p.parts] == []


def test_progress_is_reported_about_once_a_second_and_adds_up_to_the_model(online, hub):
    hub.rate_bps = 40e6  # about 2.3 s for the model's 91 MB
    records: list[Download] = []
    download(REPO, progress=records.append)
    size = hub.size(REPO)
    assert records and all(r.model == REPO and r.total_bytes == size for r in records)
    first, *middle, last = records
    assert first.done_bytes == 0 and first.elapsed_s == 0
    assert last.complete and last.done_bytes == size and last.text().startswith(f"downloaded {REPO}: 91.6 MB in ")
    assert middle, "a download of seconds reports on its way"
    assert all(0 < r.done_bytes <= size and r.file in hub.repos[REPO] and r.rate_bps > 0 for r in middle)
    assert any(r.file == WEIGHTS for r in middle)
    dones, times = [r.done_bytes for r in records], [r.elapsed_s for r in records]
    assert dones == sorted(dones) and times == sorted(times)
    assert all(b - a >= 0.95 for a, b in zip(times[:-2], times[1:-1], strict=True)), "about one a second"
    assert middle[0].text().startswith(f"downloading {REPO} ({middle[0].file}): ")


def test_an_interrupted_download_fails_in_one_line_leaves_no_model_and_resumes(online, hub):
    cut = 30_000_000
    hub.cut(REPO, WEIGHTS, after_bytes=cut)
    with pytest.raises(ModelNotAvailableError) as failed:
        download(REPO)
    message = str(failed.value)
    assert message.startswith(f"model '{REPO}': the download from the Hugging Face Hub ({hub.url}) failed: {WEIGHTS}: ")
    assert "503" in message and "\n" not in message
    assert cached_snapshot(REPO) is None and resolve_model(REPO).kind == HUB
    blob = weights_blob(online, hub)
    kept = Path(f"{blob}.incomplete").stat().st_size
    assert 0 < kept <= cut, "what arrived is kept (in the client's whole chunks)"

    hub.restore()
    path = download(REPO)
    assert path == cached_snapshot(REPO) and (path / WEIGHTS).resolve() == blob
    assert hub.ranges(REPO, WEIGHTS) == [None, f"bytes={kept}-"]
    size = hub.repos[REPO][WEIGHTS].size
    assert hub.bytes_sent(REPO, WEIGHTS) == cut + size - kept, "the second try asked for the rest only"
    assert hub.gets(REPO, "config.json") == 1, "the files that arrived before are not asked again"


def test_a_killed_download_leaves_nothing_taken_for_a_model_and_a_later_one_completes(online, hub, downloaders):
    hub.rate_bps = 8e6
    partial = Path(f"{weights_blob(online, hub)}.incomplete")
    process = downloaders["killed"].start()
    try:
        wait_for(lambda: partial.is_file() and partial.stat().st_size > 0, "the weights to arrive in part", process)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    assert cached_snapshot(REPO) is None and resolve_model(REPO).kind == HUB
    assert not (online / "models--acme--minilm-copy" / "refs" / "main").exists()

    hub.rate_bps = None
    path = download(REPO)
    assert path == resolve_model(REPO).path and resolve_model(REPO).kind == CACHE
    first, second = hub.ranges(REPO, WEIGHTS)
    assert first is None and second is not None and second.startswith("bytes="), "resumed from what the killed one left"


def test_two_processes_asking_for_one_model_download_it_once(online, hub, downloaders):
    """Another process downloads the model while this one asks for it too: this one waits, then takes its copy."""
    hub.rate_bps = 4e6  # the other process is still downloading when this one asks
    other = downloaders["other"].start()
    partial = Path(f"{weights_blob(online, hub)}.incomplete")
    records: list[Download] = []
    here: list[Path] = []
    asking = threading.Thread(target=lambda: here.append(download(REPO, progress=records.append)), daemon=True)
    try:
        wait_for(lambda: partial.is_file() and partial.stat().st_size > 0, "the other process to download", other)
        asking.start()
        wait_for(lambda: any(r.waiting for r in records), "this process to wait for the other", other)
        hub.rate_bps = None
        assert other.wait(timeout=120) == 0
        asking.join(timeout=120)
    finally:
        if other.poll() is None:
            other.kill()
    assert here == [Path(downloaders["other"].last_line())] == [cached_snapshot(REPO)]
    assert records == [Download(model=REPO, waiting=True)], "nothing downloaded here"
    assert {path: hub.gets(REPO, path) for path in hub.repos[REPO]} == dict.fromkeys(hub.repos[REPO], 1)


def stored(records: list[LogRecord]) -> list[LogRecord]:
    """``records`` as a run's log stores them and the client reads them back (``/runs/logs`` entries, JSON)."""
    entries = [{"time": 0.0, "message": r.text(), "record": json.loads(r.model_dump_json())} for r in records]
    return [read_record(entry) for entry in json.loads(json.dumps(entries))]


def test_download_records_read_back_and_show_as_a_bar_then_a_line():
    going = Download(model="BAAI/x", file=WEIGHTS, done_bytes=12_000_000, total_bytes=33_400_000, rate_bps=5.1e6)
    done = Download(model="BAAI/x", done_bytes=33_400_000, total_bytes=33_400_000, rate_bps=5.6e6, elapsed_s=6.0)
    waiting = Download(model="BAAI/x", waiting=True)
    records = [Building(model="BAAI/x", device="cpu"), waiting, going, done]
    assert stored(records) == records
    assert going.text() == f"downloading BAAI/x ({WEIGHTS}): 12.0/33.4 MB, 5.1 MB/s"
    assert done.text() == "downloaded BAAI/x: 33.4 MB in 6s, 5.6 MB/s"
    assert waiting.text() == "waiting for BAAI/x: another process is downloading it"

    screen = io.StringIO()
    with RunProgress(Console(file=screen, force_terminal=True, width=120, color_system=None), "bar") as progress:
        for record in stored(records[:3]):
            progress.feed(record)
        progress._progress.refresh()
        frame = screen.getvalue().split("\x1b[2K")[-2:]
        progress.feed(done)
    shown = screen.getvalue()
    assert any(
        "downloading BAAI/x" in line and "12.0/33.4 MB" in line and "5.1 MB/s eta 0:04" in line for line in frame
    )
    assert "downloading BAAI/x (" not in shown, "the download's records move its bar"
    assert waiting.text() in shown and done.text() in shown

    lines = io.StringIO()
    with RunProgress(Console(file=lines, width=120), "lines") as progress:
        for record in stored(records):
            progress.feed(record)
    assert lines.getvalue().splitlines() == [record.text() for record in records]


def test_a_run_shows_its_download_and_fails_with_the_reason_when_it_fails(online, hub, tmp_path):
    store = RunStore(tmp_path / "runs")
    train = [LabeledItem(text, label) for text, label in [("a", "x"), ("b", "x"), ("c", "y"), ("d", "y")]]
    run_id = store.create(FitConfig(model=REPO, device="cpu", max_steps=1), train, [])
    hub.cut(REPO, WEIGHTS, after_bytes=1_000_000)
    execute_run(RunContext(store, run_id))
    status = store.status(run_id)
    assert status["status"] == RunStatus.FAILED
    assert f"the download from the Hugging Face Hub ({hub.url}) failed: {WEIGHTS}: " in status["error"]
    downloads = [
        read_record(entry) for entry in store.logs(run_id) if (entry.get("record") or {}).get("kind") == "download"
    ]
    assert downloads and downloads[0] == Download(model=REPO, total_bytes=hub.size(REPO))
