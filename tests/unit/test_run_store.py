import pytest

from finetuner_core.config import FitConfig
from finetuner_core.runs import RunNotFoundError, RunStatus, RunStore
from finetuner_core.runs.artifact import read_chunk, read_manifest, write_manifest
from finetuner_protocol.data import LabeledItem

TRAIN = [LabeledItem("a1", "a"), LabeledItem("b1", "b")]


def test_a_run_keeps_its_config_data_status_logs_and_metrics(tmp_path):
    store = RunStore(tmp_path)
    run_id = store.create(FitConfig(epochs=3), TRAIN, [LabeledItem("q", "a")])
    assert store.list_ids() == [run_id]
    assert store.config(run_id).epochs == 3
    assert store.data(run_id, "train") == [LabeledItem("a1", "a"), LabeledItem("b1", "b")]
    assert store.status(run_id)["status"] == RunStatus.CREATED
    store.set_status(run_id, RunStatus.FAILED, error="boom")
    assert store.status(run_id)["status"] == "FAILED" and store.status(run_id)["error"] == "boom"
    for message in ["one", "two", "three"]:
        store.log(run_id, message)
    assert [e["message"] for e in store.logs(run_id, since=1)] == ["two", "three"]
    store.set_metrics(run_id, "before", {"precision@1": 0.5})
    store.set_metrics(run_id, "after", {"precision@1": 0.7})
    assert store.metrics(run_id) == {"before": {"precision@1": 0.5}, "after": {"precision@1": 0.7}}
    assert not list(tmp_path.glob(".*")), "no staging or temporary files are left behind"


@pytest.mark.parametrize("run_id", ["nope", "../" * 3 + "etc", "0123456789abcdef", None, ""])
def test_unknown_or_malformed_ids_are_not_found(tmp_path, run_id):
    with pytest.raises(RunNotFoundError):
        RunStore(tmp_path).status(run_id)


def test_artifact_is_served_from_its_manifest_only(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "weights.bin").write_bytes(b"0123456789")
    (tmp_path / "sub" / "config.json").write_text("{}")
    files = write_manifest(tmp_path)
    assert [f["path"] for f in files] == ["sub/config.json", "weights.bin"]
    assert read_manifest(tmp_path) == files
    assert read_chunk(tmp_path, "weights.bin", 4, 3) == b"456"
    with pytest.raises(FileNotFoundError):
        read_chunk(tmp_path, "../outside", 0)
    with pytest.raises(FileNotFoundError):
        read_chunk(tmp_path, "manifest.json", 0)


def test_runs_are_private_to_their_owner_paged_grouped_and_deleted(tmp_path):
    store = RunStore(tmp_path)
    alice = [store.create(FitConfig(), TRAIN, [], owner="alice", experiment=f"e{i % 2}") for i in range(5)]
    bob = store.create(FitConfig(), TRAIN, [], owner="bob")
    assert store.list_ids("alice") == alice and store.list_ids("bob") == [bob]
    assert [r["run_id"] for r in store.list("alice", offset=2, limit=2)] == alice[2:4]
    assert store.count("alice", experiment="e0") == 3
    assert [e["name"] for e in store.list_experiments("alice")] == ["e0", "e1"]
    with pytest.raises(RunNotFoundError):
        store.require(bob, "alice")
    with pytest.raises(ValueError, match="cancel it before deleting"):
        store.delete(alice[0], "alice")
    store.set_status(alice[0], RunStatus.FINISHED)
    store.log(alice[0], "x")
    store.delete(alice[0], "alice")
    assert alice[0] not in store.list_ids() and not (tmp_path / alice[0]).exists()
    with pytest.raises(RunNotFoundError):
        store.logs(alice[0])
    with pytest.raises(ValueError, match="have not ended"):
        store.delete_experiment("alice", "e1")


def test_status_times_and_metric_stages_are_kept_in_order(tmp_path):
    store = RunStore(tmp_path)
    run_id = store.create(FitConfig(), TRAIN, [])
    store.set_status(run_id, RunStatus.STARTED)
    for stage in ["before", "step 10", "step 20", "after"]:
        store.set_metrics(run_id, stage, {"mrr@10": 0.5})
    store.set_metrics(run_id, "before", {"mrr@10": 0.4})
    store.set_status(run_id, RunStatus.FINISHED)
    status = store.status(run_id)
    assert status["started_at"] <= status["finished_at"]
    assert list(store.metrics(run_id)) == ["before", "step 10", "step 20", "after"]
    assert store.metrics(run_id)["before"] == {"mrr@10": 0.4}


def test_a_folder_left_by_a_crash_before_the_run_was_recorded_is_removed(tmp_path):
    RunStore(tmp_path)
    (tmp_path / "0123456789abcdef").mkdir()
    (tmp_path / ".fedcba9876543210.tmp").mkdir()
    RunStore(tmp_path).sweep()
    assert not (tmp_path / "0123456789abcdef").exists() and not (tmp_path / ".fedcba9876543210.tmp").exists()
