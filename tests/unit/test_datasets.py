import hashlib

import numpy as np
import pytest
from docarray import DocList
from PIL import Image

from finetuner_core.config import CSVOptions
from finetuner_core.storage.datasets import DatasetNotFoundError, DatasetStore, batch_sha256
from finetuner_protocol.data import DataError, LabeledItem
from finetuner_protocol.data.checks import check_dataset
from finetuner_protocol.data.intake import parse_data
from finetuner_protocol.data.records import PairItem, QueryDocItem, ScoredPairItem
from finetuner_protocol.wire import FinetunerDoc, record_docs

ROWS = [LabeledItem(f"text {i}", f"class {i % 3}") for i in range(12)]


def key(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def put(store, dataset_id, owner, index, rows):
    """Store a batch as the client sends it: with its number of items and digest."""
    return store.put_batch(dataset_id, owner, index, rows, len(rows), batch_sha256(rows))


def upload(store, owner, rows, upload_key, batches=3, only=None):
    size = -(-len(rows) // batches)
    dataset = store.begin(owner, "train.csv", upload_key, batches)
    for index in dataset["missing"] if only is None else only:
        put(store, dataset["id"], owner, index, rows[index * size : (index + 1) * size])
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
        put(store, dataset["id"], "alice", 2, ROWS)
    with pytest.raises(ValueError, match="upload limit of 200 bytes"):
        put(store, dataset["id"], "alice", 0, ROWS)
    assert not list((tmp_path / dataset["id"]).glob("**/*.*")), "nothing of a refused batch is kept"


def test_a_batch_cut_into_several_requests_is_refused_and_nothing_of_it_is_stored(tmp_path):
    store = DatasetStore(tmp_path)
    rows = [LabeledItem(f"text {i}", f"class {i % 3}") for i in range(300)]
    dataset = store.begin("alice", "train.csv", key("a"), 1)
    for part in (rows[:100], rows[100:200], rows[200:]):  # what a request_size of 100 makes of a 300-item batch
        with pytest.raises(ValueError) as refused:
            store.put_batch(dataset["id"], "alice", 0, part, 300, batch_sha256(rows))
        assert str(refused.value) == (
            f"batch 0 of dataset {dataset['id']} was declared with 300 items, this request holds 100: "
            "post each batch in one request (request_size >= the batch size)"
        )
    assert store.describe(dataset["id"], "alice")["stored"] == []
    with pytest.raises(ValueError, match=r"lacks batches \[0\]"):
        store.commit(dataset["id"], "alice", check_dataset)
    with pytest.raises(ValueError, match="declare its number of items and its sha256"):
        store.put_batch(dataset["id"], "alice", 0, rows, None, None)
    with pytest.raises(ValueError, match="does not match the sha256 declared for it"):
        store.put_batch(dataset["id"], "alice", 0, rows, 300, batch_sha256(rows[::-1]))


def test_a_batch_sent_again_changes_nothing_with_the_same_content_and_is_refused_with_other_content(tmp_path):
    store = DatasetStore(tmp_path)
    dataset = store.begin("alice", "train.csv", key("a"), 2)
    first = put(store, dataset["id"], "alice", 0, ROWS[:6])
    assert put(store, dataset["id"], "alice", 0, ROWS[:6]) == first
    assert store.put_batch(dataset["id"], "alice", 0, ROWS[:6], 6.0, batch_sha256(ROWS[:6]))["stored"] == [0]
    with pytest.raises(ValueError) as refused:
        put(store, dataset["id"], "alice", 0, ROWS[6:])
    assert str(refused.value) == (
        f"batch 0 of dataset {dataset['id']} was already stored with other content: "
        "post each batch in one request (request_size >= the batch size)"
    )
    put(store, dataset["id"], "alice", 1, ROWS[6:])
    assert store.records(store.commit(dataset["id"], "alice", check_dataset)["id"], "alice") == ROWS


def test_a_dataset_that_cannot_be_read_back_at_commit_is_deleted(tmp_path):
    store = DatasetStore(tmp_path)
    dataset = upload(store, "alice", ROWS, key("a"))
    (tmp_path / dataset["id"] / "part-000001.jsonl").write_text("{not json\n")
    with pytest.raises(ValueError):
        store.commit(dataset["id"], "alice", check_dataset)
    assert store.list("alice") == [] and not (tmp_path / dataset["id"]).exists()
    assert store.db.rows("SELECT * FROM parts") == [], "its batches are forgotten"


def wire_round_trip(records: list, modality: str) -> list:
    """The records as the trainer gets them from the client: item documents, through protobuf, parsed again."""
    docs = record_docs({"train": records})
    received = DocList[FinetunerDoc].from_protobuf(docs.to_protobuf())
    return parse_data(received, modality, CSVOptions(), whole=False)["train"]


@pytest.mark.parametrize("modality", ["text", "image", "vector", "text-image", "query-doc", "scored"])
def test_the_client_and_the_trainer_compute_the_same_batch_digest(modality):
    rng = np.random.default_rng(0)

    def image(i):
        return Image.fromarray(rng.integers(0, 256, (9 + i, 11, 3), dtype=np.uint8))

    records = {
        "text": [LabeledItem(f"héllo wörld ✓ {i}", f"c{i % 2}") for i in range(4)],
        "image": [LabeledItem(image(i), f"c{i % 2}") for i in range(4)],
        "vector": [LabeledItem(rng.standard_normal(8).astype(np.float32) / 3, f"c{i % 2}") for i in range(4)],
        "text-image": [PairItem(f"caption {i}", image(i)) for i in range(4)],
        "query-doc": [QueryDocItem(f"query {i}", f"document {i}") for i in range(4)],
        "scored": [ScoredPairItem(f"a {i}", f"b {i}", 0.1 + i / 3) for i in range(4)],
    }[modality]
    received = wire_round_trip(records, "text" if modality in ("query-doc", "scored") else modality)
    assert batch_sha256(received) == batch_sha256(records)
    assert batch_sha256(received[:3]) != batch_sha256(records), "another batch has another digest"
