import pytest

from finetuner_core.config import FitConfig
from finetuner_core.data import LabeledItem
from finetuner_core.runs import RunNotFoundError, RunStatus, RunStore
from finetuner_core.runs.artifact import read_chunk, read_manifest, write_manifest

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
