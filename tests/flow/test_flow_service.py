"""The Flow as a service that holds users' data: tokens, privacy, datasets, the run lifecycle, downloads."""

import csv
import os
from pathlib import Path

import pytest

import finetuner
from conftest import banking77_slice, user_token
from finetuner.errors import FinetunerError, ServerError
from flow.proxy import DroppingProxy

SMALL = {"batch_size": 16, "eval_ks": [1, 5], "log_every": 1, "device": "cpu"}


def write_csv(path: Path, rows) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as file:
        csv.writer(file).writerows([("text", "label"), *rows])
    return path


@pytest.fixture(scope="module")
def rows(data_dir):
    return banking77_slice(data_dir, "train", classes=4, per_class=8)


@pytest.fixture
def as_user(flow):
    """Log in as a new user of the Flow's workspace (``as_user("bob")``); alice again afterwards."""
    previous = finetuner.api._session["transport"]

    def login(name: str) -> str:
        token = user_token(Path(os.environ["FINETUNER_WORKSPACE"]), name)
        finetuner.login(host=f"grpc://127.0.0.1:{flow}", token=token)
        return token

    yield login
    finetuner.api._session["transport"] = previous


def test_requests_without_a_valid_token_are_refused(flow, as_user):
    for token in (None, "ft_wrong"):
        with pytest.raises(ServerError, match="token") as refused:
            finetuner.login(host=f"grpc://127.0.0.1:{flow}", token=token)
        assert "\n" not in str(refused.value) and "Traceback" not in str(refused.value)
        finetuner.login(host=f"grpc://127.0.0.1:{flow}", token=token, verify=False)
        with pytest.raises(ServerError, match="token"):
            finetuner.list_runs()


def test_users_see_only_their_own_datasets_and_runs(flow, rows, tmp_path, as_user):
    as_user("carol")
    dataset = finetuner.upload_dataset(write_csv(tmp_path / "train.csv", rows), quiet=True)
    run = finetuner.fit(train_data=dataset["id"], max_steps=1, experiment_name="mine", **SMALL)
    assert run.wait(interval_s=0.3) == "FINISHED", run.logs()
    as_user("dave")
    assert finetuner.list_runs() == [] and finetuner.list_datasets() == []
    for call in (lambda: finetuner.get_run(run.id), lambda: finetuner.fit(train_data=dataset["id"], **SMALL)):
        with pytest.raises(ServerError, match="not found"):
            call()
    with pytest.raises(ServerError, match="not found"):
        finetuner.Run(finetuner.api._transport(), run.id).save_artifact(tmp_path / "stolen")
    assert not (tmp_path / "stolen").exists()


def test_a_dataset_is_uploaded_in_batches_resumed_and_stored_once(flow, rows, tmp_path):
    from finetuner import datasets
    from finetuner.settings import settings_of

    config = settings_of("all-MiniLM-L6-v2", {})
    path = write_csv(tmp_path / "train.csv", rows)
    transport = finetuner.api._transport()
    partial = datasets.upload(transport, str(path), config, "train.csv", quiet=True, batch_items=5, stop_after=2)
    assert (partial["status"], partial["stored"], len(partial["missing"])) == ("UPLOADING", [0, 1], 5)
    done = datasets.upload(transport, str(path), config, "train.csv", quiet=True, batch_items=5)
    assert (done["id"], done["status"], done["items"]) == (partial["id"], "READY", len(rows))
    again = finetuner.upload_dataset(str(path), quiet=True)
    assert again["id"] == done["id"], "the same content is stored once"
    finetuner.delete_dataset(done["id"])
    assert done["id"] not in [d["id"] for d in finetuner.list_datasets()]


def test_runs_queue_cancel_list_and_delete(flow, rows, tmp_path):
    dataset = finetuner.upload_dataset(write_csv(tmp_path / "train.csv", rows), quiet=True)["id"]
    long = finetuner.fit(train_data=dataset, epochs=200, experiment_name="queue", **SMALL)
    short = finetuner.fit(train_data=dataset, max_steps=1, experiment_name="queue", **SMALL)
    for line in long.stream_logs(interval_s=0.2):
        if line.startswith("step 1/"):
            break
    assert (long.status(), short.status()) == ("STARTED", "QUEUED"), "one run at a time (concurrency 1)"
    long.cancel()
    assert long.wait(interval_s=0.3) == "CANCELLED"
    assert short.wait(interval_s=0.3) == "FINISHED", short.logs()
    listed = finetuner.list_runs(experiment_name="queue")
    assert [r["run_id"] for r in listed] == [long.id, short.id]
    assert [r["run_id"] for r in finetuner.list_runs(experiment_name="queue", page=2, size=1)] == [short.id]
    assert {"name": "queue", "runs": 2}.items() <= finetuner.get_experiment("queue").items()
    finetuner.delete_run(long.id)
    assert [r["run_id"] for r in finetuner.list_runs(experiment_name="queue")] == [short.id]
    finetuner.delete_experiment("queue")
    assert "queue" not in [e["name"] for e in finetuner.list_experiments()]


def test_stream_logs_survives_a_dropped_connection_and_downloads_resume(flow, rows, tmp_path, as_user):
    token = as_user("erin")
    proxy = DroppingProxy(flow)
    try:
        finetuner.login(host=f"grpc://127.0.0.1:{proxy.port}", token=token)
        run = finetuner.fit(train_data=str(write_csv(tmp_path / "t.csv", rows)), max_steps=4, **SMALL)
        lines = []
        for line in run.stream_logs(interval_s=0.2):
            lines.append(line)
            if len(lines) == 2:
                proxy.drop(pause_s=2.0)
        assert proxy.drops == 1 and run.status() == "FINISHED"
        assert lines == run.logs().splitlines(), "every line once, in order, across the reconnection"
    finally:
        proxy.close()
    finetuner.login(host=f"grpc://127.0.0.1:{flow}", token=token)
    run = finetuner.get_run(run.id)
    target = run.save_artifact(tmp_path / "model")
    weights = target / "model.safetensors"
    whole = weights.read_bytes()
    weights.write_bytes(whole[: len(whole) // 3])  # an interrupted download
    run.save_artifact(target)
    assert weights.read_bytes() == whole
    workspace = Path(os.environ["FINETUNER_WORKSPACE"])
    stored = workspace / "runs" / run.id / "model" / "model.safetensors"
    stored.write_bytes(whole[:100] + bytes([whole[100] ^ 0xFF]) + whole[101:])  # corrupted on the server
    with pytest.raises(FinetunerError, match="failed its checksum"):
        run.save_artifact(tmp_path / "again")
