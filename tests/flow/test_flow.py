"""The real default Flow (flow.yml) on 127.0.0.1, driven by the client, with the real MiniLM."""

import csv

import numpy as np
import pytest
from docarray import BaseDoc, DocList
from docarray.typing import NdArray
from sentence_transformers import SentenceTransformer

import finetuner
from conftest import banking77_slice
from finetuner_protocol.backbones import ModelNotAvailableError


class LabeledDoc(BaseDoc):
    text: str
    finetuner_label: str
    embedding: NdArray | None = None


def write_csv(path, rows):
    with open(path, "w", newline="", encoding="utf-8") as file:
        csv.writer(file).writerows([("text", "label"), *rows])
    return path


@pytest.mark.slow
def test_fit_through_the_flow_end_to_end(flow, data_dir, tmp_path, minilm):
    train_csv = write_csv(tmp_path / "train.csv", banking77_slice(data_dir, "train", classes=5, per_class=8))
    eval_docs = DocList[LabeledDoc](
        LabeledDoc(text=t, finetuner_label=lab) for t, lab in banking77_slice(data_dir, "test", classes=5, per_class=6)
    )
    run = finetuner.fit(
        train_data=str(train_csv),
        eval_data=eval_docs,
        batch_size=16,
        epochs=2,
        max_steps=3,
        eval_ks=[1, 5],
        log_every=1,
    )
    assert run.status() in {"QUEUED", "STARTED", "FINISHED"}
    lines = list(run.stream_logs(interval_s=0.2))
    assert run.status() == "FINISHED", "\n".join(lines)
    assert any(line.startswith("step 3/3") for line in lines), lines

    metrics = run.metrics()
    for stage in ("before", "after"):
        assert {"precision@1", "recall@5", "mrr@5", "map@5", "ndcg@5", "hit@5"} <= set(metrics[stage])
        assert 0 < metrics[stage]["precision@1"] <= 1 and metrics[stage]["queries"] == 30

    model_dir = run.save_artifact(tmp_path / "model")
    texts = [doc.text for doc in eval_docs][:5]
    tuned = SentenceTransformer(str(model_dir), device="cpu").encode(texts, normalize_embeddings=True)
    assert tuned.shape == (5, 384)
    assert not np.allclose(tuned, minilm.encode(texts), atol=1e-4), "the tuned model differs from the base"

    model = finetuner.get_model(model_dir)
    np.testing.assert_allclose(finetuner.encode(model, texts), tuned, atol=1e-5)
    encoded = finetuner.encode(model, eval_docs[:3])
    assert encoded[0].embedding.shape == (384,)

    assert finetuner.get_run(run.id).status() == "FINISHED"
    assert run.id in [r["run_id"] for r in finetuner.list_runs()]
    by_run = finetuner.evaluate(eval_docs, run_id=run.id, eval_ks=[1, 5])
    assert by_run["precision@1"] == pytest.approx(metrics["after"]["precision@1"])


def test_a_bad_csv_comes_back_as_one_clear_error(flow, tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("text,label\nfine,a\nalso fine,a\nnext,b\n,b\nthis,has,three\n", encoding="utf-8")
    datasets = finetuner.list_datasets()
    with pytest.raises(finetuner.DataError) as info:  # checked by the client before anything is sent
        finetuner.fit(train_data=str(path))
    message = str(info.value)
    assert message.startswith("bad.csv data rejected") and "bad.csv row 6: expected 2 columns" in message
    assert finetuner.list_datasets() == datasets, "nothing is stored"


def test_bad_configuration_and_unknown_runs_are_refused(flow, tmp_path):
    path = write_csv(tmp_path / "ok.csv", [("a", "x"), ("b", "x"), ("c", "y"), ("d", "y")])
    with pytest.raises(ModelNotAvailableError, match="^model 'org/model-not-here': no such model on the Hugging Face"):
        finetuner.fit(model="org/model-not-here", train_data=str(path))  # the Flow may download: it asked the Hub
    with pytest.raises(finetuner.ServerError, match="not found"):
        finetuner.get_run("0123456789abcdef")
    with pytest.raises(ValueError, match="unknown loss"):
        finetuner.fit(train_data=str(path), loss="NoSuchLoss")


def test_evaluate_queries_against_an_index_with_pairs_and_models_side_by_side(flow):
    queries = ["how do I top up my card", "my new card has not arrived yet"]
    index = ["top up with a card", "when will my card arrive", "what is the exchange rate", "close my account"]
    answer = finetuner.evaluate(queries=queries, index=index, pairs=[(0, 0), (1, 1)], eval_ks=[1, 2], full=True)
    assert answer["metrics"]["hit@2"] == 1.0 and answer["metrics"]["queries"] == 2
    assert answer["examples"], "sample queries come back with their top results"
    with pytest.raises(finetuner.ServerError):
        finetuner.evaluate(queries=queries, index=index, pairs=[(0, 9)], eval_ks=[1])
