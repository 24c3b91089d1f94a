"""The client's dataset upload against the trainer loaded from its config.yml (endpoints called directly)."""

import pytest
from docarray import DocList

from conftest import banking77_slice, user_token
from finetuner import datasets
from finetuner.errors import ServerError
from finetuner_core.config import FitConfig
from finetuner_protocol.wire import FinetunerDoc, read_result
from integration.called import load

ENDPOINTS = {
    "/datasets/begin": "begin_dataset",
    "/datasets/upload": "upload_dataset",
    "/datasets/commit": "commit_dataset",
    "/datasets/list": "list_datasets",
    "/datasets/delete": "delete_dataset",
}


class CalledTransport:
    """What the client's Transport does, with the trainer's endpoints called in this process."""

    def __init__(self, trainer, token: str):
        self.trainer, self.token = trainer, token

    def result(self, endpoint: str, docs=None, **parameters):
        method = getattr(self.trainer, ENDPOINTS[endpoint])
        try:
            answer = method(docs=DocList[FinetunerDoc](docs or []), parameters={**parameters, "token": self.token})
        except Exception as exc:  # a refused request: the client sees the reason
            raise ServerError(str(exc)) from None
        return read_result(answer)


@pytest.fixture(scope="module")
def rows(data_dir):
    return banking77_slice(data_dir, "train", classes=4, per_class=8)


def upload_to(tmp_path, rows, **trainer_settings):
    trainer = load("trainer", workspace_dir=str(tmp_path), **trainer_settings)
    transport = CalledTransport(trainer, user_token(tmp_path, "alice"))
    config = FitConfig(device="cpu")
    return transport, lambda: datasets.upload(transport, rows, config, "train", quiet=True, batch_items=8)


def test_an_upload_sends_each_batch_with_what_it_holds_and_is_stored_once(tmp_path, rows):
    transport, upload = upload_to(tmp_path, rows)
    dataset = upload()
    assert (dataset["status"], dataset["items"], dataset["batches"]) == ("READY", len(rows), 4)
    assert upload()["id"] == dataset["id"]
    assert [d["id"] for d in transport.result("/datasets/list")["datasets"]] == [dataset["id"]]


def test_an_upload_the_trainer_refuses_is_deleted_with_its_batches(tmp_path, rows):
    transport, upload = upload_to(tmp_path, rows, max_dataset_bytes=1500)  # room for a batch or two, not four
    with pytest.raises(ServerError, match="would exceed the upload limit of 1500 bytes"):
        upload()
    assert transport.result("/datasets/list")["datasets"] == []
    assert not list((tmp_path / "datasets").glob("ds-*")), "no batch of it is left in the workspace"
