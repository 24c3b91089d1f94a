"""One user never waits on another: a status or list call answers while another user's large upload is checked."""

import asyncio
import hashlib
import os
import time
from pathlib import Path

from docarray import DocList
from jina import Client

from conftest import user_token
from finetuner_core.config import FitConfig
from finetuner_core.storage.datasets import batch_sha256
from finetuner_protocol.data.intake import parse_data
from finetuner_protocol.wire import FinetunerDoc, read_result

ITEMS = 4_000  # one batch whose checks (validator and trainer) take seconds


async def post(client: Client, endpoint: str, docs: list, **parameters) -> dict:
    """The answer's payload; the server's reason as an error when the request is refused."""
    async for response in client.post(
        endpoint,
        inputs=DocList[FinetunerDoc](docs),
        parameters=parameters,
        request_size=max(1, len(docs)),
        return_type=DocList[FinetunerDoc],
        return_responses=True,
        continue_on_error=True,
        on_error=lambda response: None,
    ):
        status = response.header.status
        assert status.code != status.ERROR, status.exception.args
        return read_result(response.docs)


async def race(port: int, uploader: str, watcher: str, docs: list, declared: dict) -> tuple[list[float], float]:
    """The times of the watcher's list calls answered while the uploader's batch was being checked, and the
    upload's own time."""
    client = Client(host="127.0.0.1", port=port, protocol="grpc", asyncio=True)
    plan = {"name": "big", "upload_key": hashlib.sha256(declared["sha256"].encode()).hexdigest(), "batches": 1}
    dataset = await post(client, "/datasets/begin", [], token=uploader, dataset=plan)
    batch = {"id": dataset["id"], "index": 0, **declared}
    config = FitConfig().model_dump(mode="json")
    started = time.perf_counter()
    upload = asyncio.create_task(post(client, "/datasets/upload", docs, token=uploader, dataset=batch, config=config))
    answered: list[float] = []
    while not upload.done():
        sent = time.perf_counter()
        runs = await post(client, "/runs/list", [], token=watcher, limit=1)
        assert runs["runs"] == []
        if not upload.done():
            answered.append(time.perf_counter() - sent)
    stored = await upload
    assert stored["missing"] == []
    return answered, time.perf_counter() - started


def test_a_list_call_answers_while_another_users_upload_is_checked(flow):
    workspace = Path(os.environ["FINETUNER_WORKSPACE"])
    uploader, watcher = user_token(workspace, "uploader"), user_token(workspace, "watcher")
    docs = [
        FinetunerDoc(text=f"how do I change the card number {i}?", finetuner_label=f"c{i % 50}") for i in range(ITEMS)
    ]
    config = FitConfig()
    records = parse_data(DocList[FinetunerDoc](docs), config.modality, config.csv_options, whole=False)["train"]
    declared = {"items": len(records), "sha256": batch_sha256(records)}
    answered, upload_s = asyncio.run(race(flow, uploader, watcher, docs, declared))
    assert answered, f"no list call was answered during the {upload_s:.1f} s upload"
    assert max(answered) < upload_s
