"""The real Flow with `shards: 2` on the evaluator and the evaluator as their `uses_after`: `/search` reaches both
shards, each searches its slice of the index with the real MiniLM, and the merged answer equals the unsharded
search exactly; with a shard down the search fails, naming the shard."""

import json
import os
import signal
import time

import numpy as np
import pytest
import yaml
from docarray import DocList
from jina import Client, Flow

from conftest import ROOT, banking77_slice, unused_port, user_token
from finetuner_core.evaluation.search import SearchOptions, SliceCache, docs_index, merge_search_answers, search_shard
from finetuner_protocol.wire import FinetunerDoc

pytestmark = pytest.mark.slow
SHARDS = 2
K = 8


@pytest.fixture(scope="module")
def sharded_flow(tmp_path_factory):
    """flow.yml's evaluator split in two shards, merged by a third as their uses_after, on a free 127.0.0.1 port."""
    port = unused_port()
    workspace = tmp_path_factory.mktemp("workspace")
    os.environ["FINETUNER_WORKSPACE"] = str(workspace)
    token = user_token(workspace, "alice")
    executors = yaml.safe_load((ROOT / "flow.yml").read_text())["executors"]
    evaluator = next(e for e in executors if e["name"] == "evaluator")
    uses = str(ROOT / evaluator["uses"])  # the evaluator alone (the others pass /search through): fewer processes
    flow = Flow(protocol="grpc", host="127.0.0.1", port=port).add(
        name="evaluator", uses=uses, shards=SHARDS, uses_after=uses
    )
    with flow:
        wait_for_every_shard(port, token)
        yield flow, port, token


def post_search(port, token, docs, k=K):
    return Client(host="127.0.0.1", port=port, protocol="grpc").post(
        "/search",
        inputs=DocList[FinetunerDoc](docs),
        parameters={"token": token, "config": {"model": "all-MiniLM-L6-v2"}, "search": {"k": k}},
        request_size=len(docs),
        return_type=DocList[FinetunerDoc],
    )


def wait_for_every_shard(port, token, timeout_s=300):
    """Ready means every shard answers: a search over a tiny index until it succeeds (a shard still connecting
    fails it), with a deadline."""
    docs = [FinetunerDoc(role="query", text="hello"), FinetunerDoc(role="index", text="hi there", name="item")]
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            answer = post_search(port, token, docs, k=1)
            if json.loads(answer[0].payload)["results"][0][0]["name"] == "item":
                return
        except Exception:
            if time.monotonic() > deadline:
                raise
        time.sleep(1)


def search_docs(data_dir):
    """300 Banking77 texts as the index (two encoding blocks: both shards hold items) and 6 queries."""
    rows = banking77_slice(data_dir, "train", 20, 16)[:300]
    queries = ["my card has not arrived yet", "how do I top up by bank transfer?", "cash withdrawal fee"]
    queries += [rows[0][0], rows[150][0], rows[299][0]]  # queries equal to items: ties at score 1.0
    docs = [FinetunerDoc(role="query", text=q, name=f"query {i}") for i, q in enumerate(queries)]
    docs += [
        FinetunerDoc(role="index", text=t, finetuner_label=label, name=f"row {i}") for i, (t, label) in enumerate(rows)
    ]
    return docs


def test_sharded_search_equals_unsharded(sharded_flow, data_dir, minilm):
    _, port, token = sharded_flow
    docs = search_docs(data_dir)
    answer = post_search(port, token, docs)
    results = [json.loads(doc.payload) for doc in answer if doc.kind == "result"]
    assert len(results) == 1 and results[0]["shards"] == SHARDS  # one answer, merged from every shard
    merged = results[0]

    queries = [d.text for d in docs if d.role == "query"]
    expected = search_shard(
        queries, docs_index(docs), minilm.encode, minilm.encode, SearchOptions(k=K), 0, 1, SliceCache()
    )
    unsharded = merge_search_answers([expected], K)
    np.testing.assert_array_equal(merged["ids"], unsharded["ids"])
    np.testing.assert_array_equal(merged["scores"], unsharded["scores"])
    assert merged["results"] == unsharded["results"]
    assert [row[0]["name"] for row in merged["results"][3:]] == ["row 0", "row 150", "row 299"]
    assert {i for row in merged["ids"] for i in row if i >= 256}  # results from the second shard's slice too


def test_a_missing_shard_fails_the_search(sharded_flow, data_dir):
    """Shard 1's process killed: the search fails with the shard named, instead of answering from half the index.
    (Runs last: it leaves the Flow with one shard.)"""
    flow, port, token = sharded_flow
    pod = flow._deployment_nodes["evaluator"].shards[1]._pods[0]
    os.kill(pod.worker.pid, signal.SIGKILL)
    pod.worker.join(60)
    pod.is_shutdown.set()  # the process is gone: closing the Flow need not wait a minute for its goodbye
    with pytest.raises(Exception, match=r"shard 1 of 2 did not answer"):
        answer = post_search(port, token, search_docs(data_dir))
        if answer and answer[0].kind == "result":  # a Client without continue_on_error raises; else show the answer
            raise AssertionError(f"the search answered without shard 1: {answer[0].payload[:200]}")
