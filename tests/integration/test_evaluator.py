"""The evaluator loaded from its config.yml and called directly, with the real MiniLM on real data."""

import json

import numpy as np
import pytest
from docarray import DocList

from conftest import banking77_slice
from finetuner_core.config import FitConfig
from finetuner_core.evaluation import EvaluationError, evaluate, evaluate_labeled, pairs_set
from finetuner_core.models import build_model
from finetuner_core.runs import RunNotFoundError, RunStore, runs_root
from finetuner_core.storage.users import AuthError, UserStore
from finetuner_protocol.data import LabeledItem
from finetuner_protocol.wire import FinetunerDoc, read_result
from integration.called import load

CONFIG = {"eval_ks": [1, 5], "device": "cpu"}


@pytest.fixture(scope="module")
def evaluator(workspace, token):
    executor = load("evaluator", workspace_dir=str(workspace))
    executor.token = token  # what call() sends
    return executor


@pytest.fixture(scope="module")
def model():
    return build_model("all-MiniLM-L6-v2", device="cpu")


@pytest.fixture(scope="module")
def rows(data_dir):
    return banking77_slice(data_dir, "test", classes=5, per_class=6)


def labeled_docs(rows):
    return DocList[FinetunerDoc](FinetunerDoc(split="eval", text=t, finetuner_label=lab) for t, lab in rows)


def call(evaluator, docs, **parameters):
    parameters = {"config": CONFIG, "token": evaluator.token, **parameters}
    return read_result(evaluator.evaluate(docs=docs, parameters=parameters))


def stsb_rows(data_dir, count: int):
    with open(data_dir / "stsb" / "sts-test.csv", encoding="utf-8") as file:
        rows = [line.split("\t") for line in file.read().splitlines()]
    return [(float(r[4]), r[5], r[6]) for r in rows if len(r) >= 7][:count]


def test_labeled_items_give_the_same_metrics_as_a_run(evaluator, model, rows):
    answer = call(evaluator, labeled_docs(rows))
    records = [LabeledItem(t, lab) for t, lab in rows]
    assert answer["metrics"] == pytest.approx(evaluate_labeled(model, records, (1, 5)))
    assert answer["metrics"]["precision@1"] > 0.6 and answer["metrics"]["queries"] == 30
    assert (answer["relevance"], answer["queries"], answer["index"], answer["items"]) == ("label", 30, 30, 30)
    assert [m["name"] for m in answer["models"]] == ["all-MiniLM-L6-v2"] and answer["warnings"] == []
    example = answer["examples"][0]
    assert example["query"]["content"] == rows[0][0] and len(example["results"]) == 5
    assert all(r["content"] != rows[0][0] for r in example["results"]), "the query itself is left out"


def test_graded_query_document_pairs(evaluator, model, data_dir):
    rows = stsb_rows(data_dir, 80)
    docs = [FinetunerDoc(split="eval", role="query", name=f"q{i}", text=s1) for i, (_, s1, _) in enumerate(rows)]
    docs += [FinetunerDoc(split="eval", role="index", name=f"d{i}", text=s2) for i, (_, _, s2) in enumerate(rows)]
    pairs = [[f"q{i}", f"d{i}", score] for i, (score, _, _) in enumerate(rows)]
    docs.append(FinetunerDoc(kind="relevance", split="eval", payload=json.dumps({"pairs": pairs})))
    answer = call(evaluator, DocList[FinetunerDoc](docs), evaluation={"examples": 1})
    expected = evaluate(
        pairs_set([r[1] for r in rows], [r[2] for r in rows], [(i, i, r[0]) for i, r in enumerate(rows) if r[0] > 0]),
        model,
        (1, 5),
    )
    assert answer["metrics"] == pytest.approx(expected.metrics)
    assert answer["relevance"] == "graded" and answer["queries"] == answer["index"] == 80
    without = sum(r[0] == 0 for r in rows)
    assert answer["metrics"]["queries_without_relevant"] == without > 0
    assert answer["warnings"][0].startswith(f"{without} of 80 queries have no relevant item")
    assert answer["metrics"]["ndcg@5"] > 0.5


def test_two_models_side_by_side(evaluator, rows):
    models = ["all-MiniLM-L6-v2", {"model": "all-MiniLM-L6-v2", "model_options": {"pooling": "cls"}, "name": "cls"}]
    answer = call(evaluator, labeled_docs(rows), models=models)
    mean, cls = answer["models"]
    assert (mean["name"], cls["name"]) == ("all-MiniLM-L6-v2", "cls")
    assert answer["metrics"] == mean["metrics"] and mean["metrics"] != cls["metrics"]


def test_an_approximate_index_reports_its_recall(evaluator, rows):
    options = {"index": "hnsw", "index_options": {"m": 8}, "exact_check": 30}
    answer = call(evaluator, labeled_docs(rows), evaluation=options)
    assert answer["metrics"]["index_recall@5"] > 0.8


def test_a_runs_artifact_is_evaluated_by_run_id(evaluator, workspace, token, model, rows):
    store = RunStore(runs_root(str(workspace), "workspace"))
    records = [LabeledItem(t, lab) for t, lab in rows]
    alice = UserStore(workspace / "users.db").authenticate(token).id
    run_id = store.create(FitConfig(**CONFIG), records, records, owner=alice)
    with pytest.raises(EvaluationError, match=f"run {run_id} has no saved model to evaluate"):
        call(evaluator, labeled_docs(rows), run_id=run_id)
    model.save(store.artifact_dir(run_id))
    answer = call(evaluator, labeled_docs(rows), run_id=run_id)
    assert answer["models"][0]["name"] == f"run {run_id}"
    assert answer["metrics"] == pytest.approx(evaluate_labeled(model, records, (1, 5)))
    other = RunStore(runs_root(str(workspace), "workspace")).create(FitConfig(**CONFIG), records, [], owner="bob")
    with pytest.raises(RunNotFoundError):
        call(evaluator, labeled_docs(rows), run_id=other)


def test_a_request_without_a_valid_token_is_refused(evaluator, rows):
    for token in (None, "", "ft_not-a-token"):
        with pytest.raises(AuthError):
            read_result(evaluator.evaluate(docs=labeled_docs(rows), parameters={"config": CONFIG, "token": token}))


def cifar_docs(data_dir, classes: int, per_class: int):
    folders = sorted(p for p in (data_dir / "cifar10" / "test").iterdir())[:classes]
    docs = [
        FinetunerDoc(split="eval", role="query", text=f"a photo of a {f.name}", finetuner_label=f.name) for f in folders
    ]
    for folder in folders:
        for path in sorted(folder.glob("*.jpg"))[600 : 600 + per_class]:
            docs.append(FinetunerDoc(split="eval", role="index", blob=path.read_bytes(), finetuner_label=folder.name))
    return DocList[FinetunerDoc](docs)


@pytest.mark.slow
def test_text_queries_against_an_image_index(evaluator, data_dir):
    docs = cifar_docs(data_dir, classes=3, per_class=4)
    clip = {"model": "lit-minilm-efficientnet-lite0", "model_options": {"image_size": 64}}
    answer = call(evaluator, docs, config={**CONFIG, **clip}, evaluation={"examples": 1})
    assert (answer["queries"], answer["index"], answer["relevance"]) == (3, 12, "label")
    assert 0 <= answer["metrics"]["precision@1"] <= 1 and answer["metrics"]["queries"] == 3
    assert answer["examples"][0]["results"][0]["content"] == "image 32x32"


def test_query_and_index_models_must_share_a_space(evaluator, data_dir):
    docs = cifar_docs(data_dir, classes=2, per_class=3)
    with pytest.raises(EvaluationError, match="query embeddings are 384-d but index embeddings are 1280-d"):
        call(evaluator, docs, query_model={"model": "all-MiniLM-L6-v2"}, index_model={"model": "efficientnet-lite0"})


def test_bad_requests_get_clear_messages(evaluator, rows):
    with pytest.raises(EvaluationError, match="k=50 is larger than the 29 items a query can retrieve"):
        call(evaluator, labeled_docs(rows), config={**CONFIG, "eval_ks": [1, 50]})
    with pytest.raises(EvaluationError, match="evaluation.index: Input should be 'flat', 'ivf' or 'hnsw'|index: Input"):
        call(evaluator, labeled_docs(rows), evaluation={"index": "annoy"})
    with pytest.raises(EvaluationError, match="give exactly one of 'model' and 'run_id'"):
        call(evaluator, labeled_docs(rows), models=[{"name": "nothing"}])
    assert np.isfinite(call(evaluator, labeled_docs(rows[::5]), config={**CONFIG, "eval_ks": [1]})["metrics"]["mrr@1"])
