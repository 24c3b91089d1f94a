import hashlib

import pytest
from PIL import Image

from finetuner_core.data import DataError, LabeledItem
from finetuner_core.data.checks import check_dataset
from finetuner_core.storage.datasets import DatasetNotFoundError, DatasetStore

ROWS = [LabeledItem(f"text {i}", f"class {i % 3}") for i in range(12)]


def key(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def upload(store, owner, rows, upload_key, batches=3, only=None):
    size = -(-len(rows) // batches)
    dataset = store.begin(owner, "train.csv", upload_key, batches)
    for index in dataset["missing"] if only is None else only:
        store.put_batch(dataset["id"], owner, index, rows[index * size : (index + 1) * size])
    return dataset


def test_batches_are_stored_then_the_whole_is_checked_and_read_back(tmp_path):
    store = DatasetStore(tmp_path)
    dataset = upload(store, "alice", ROWS, key("a"))
    ready = store.commit(dataset["id"], "alice", check_dataset)
    assert (ready["status"], ready["items"], ready["missing"]) == ("READY", 12, [])
    assert store.records(dataset["id"], "alice") == ROWS
    assert [d["id"] for d in store.list("alice")] == [dataset["id"]] and store.list("bob") == []


def test_an_interrupted_upload_resumes_with_the_missing_batches_only(tmp_path):
    store = DatasetStore(tmp_path)
    first = upload(store, "alice", ROWS, key("a"), only=[0])
    with pytest.raises(ValueError, match=r"lacks batches \[1, 2\]"):
        store.commit(first["id"], "alice", check_dataset)
    again = store.begin("alice", "train.csv", key("a"), 3)
    assert again["id"] == first["id"] and again["stored"] == [0] and again["missing"] == [1, 2]
    upload(store, "alice", ROWS, key("a"))
    assert store.commit(first["id"], "alice", check_dataset)["items"] == 12
    assert store.begin("alice", "train.csv", key("a"), 3)["status"] == "READY"


def test_the_same_content_is_stored_once_per_owner(tmp_path):
    store = DatasetStore(tmp_path)
    first = store.commit(upload(store, "alice", ROWS, key("a"))["id"], "alice", check_dataset)
    second = upload(store, "alice", ROWS, key("b"), batches=2)
    assert store.commit(second["id"], "alice", check_dataset)["id"] == first["id"]
    assert len(store.list("alice")) == 1 and not (tmp_path / second["id"]).exists()
    other = store.commit(upload(store, "bob", ROWS, key("a"))["id"], "bob", check_dataset)
    assert other["id"] != first["id"], "another user's identical data is not shared"


def test_a_dataset_that_fails_the_whole_set_checks_is_not_kept(tmp_path):
    store = DatasetStore(tmp_path)
    one_class = [LabeledItem(f"t{i}", "only") for i in range(6)]
    dataset = upload(store, "alice", one_class, key("c"))
    with pytest.raises(DataError, match="at least 2 classes"):
        store.commit(dataset["id"], "alice", check_dataset)
    assert store.list("alice") == [] and not (tmp_path / dataset["id"]).exists()


def test_images_are_kept_as_files_and_count_in_the_content_hash(tmp_path):
    store = DatasetStore(tmp_path)
    images = [LabeledItem(Image.new("RGB", (4, 4), (i * 40, 0, 0)), f"c{i % 2}") for i in range(4)]
    first = store.commit(upload(store, "alice", images, key("i"), batches=2)["id"], "alice", check_dataset)
    loaded = store.records(first["id"], "alice")
    assert [r.content.getpixel((0, 0)) for r in loaded] == [(i * 40, 0, 0) for i in range(4)]
    changed = [LabeledItem(Image.new("RGB", (4, 4), (1, 2, 3)), "c0"), *images[1:]]
    second = store.commit(upload(store, "alice", changed, key("j"), batches=2)["id"], "alice", check_dataset)
    assert second["content_sha256"] != first["content_sha256"]


def test_ids_of_other_owners_and_malformed_ids_are_not_found(tmp_path):
    store = DatasetStore(tmp_path)
    dataset = upload(store, "alice", ROWS, key("a"))
    for owner, dataset_id in [("bob", dataset["id"]), ("alice", "../x"), ("alice", "ds-" + "0" * 16), ("alice", None)]:
        with pytest.raises(DatasetNotFoundError):
            store.records(dataset_id, owner, ready=False)


def test_upload_settings_are_checked(tmp_path):
    store = DatasetStore(tmp_path, max_bytes=200)
    with pytest.raises(ValueError, match="upload_key"):
        store.begin("alice", "x", "not-a-digest", 1)
    with pytest.raises(ValueError, match="batches"):
        store.begin("alice", "x", key("a"), 0)
    dataset = store.begin("alice", "x", key("a"), 2)
    with pytest.raises(ValueError, match="batch index"):
        store.put_batch(dataset["id"], "alice", 2, ROWS)
    with pytest.raises(ValueError, match="upload limit of 200 bytes"):
        store.put_batch(dataset["id"], "alice", 0, ROWS)
