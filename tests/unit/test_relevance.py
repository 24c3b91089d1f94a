"""Every relevance kind through the evaluation steps, against brute force; bad input and its messages."""

import io
import json
from dataclasses import dataclass

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from finetuner_core.evaluation import (
    METRICS,
    EvalSet,
    EvaluationError,
    LabelRelevance,
    PairRelevance,
    evaluate,
    evaluate_embeddings,
    evaluate_labeled,
    evaluate_pairs,
    label_retrieval_metrics,
    labeled_set,
    pairs_set,
)
from finetuner_core.evaluation.endpoint import model_specs
from finetuner_core.evaluation.options import parse_evaluation_options
from finetuner_core.evaluation.request import eval_set_from_docs, is_retrieval_request
from finetuner_protocol.wire import FinetunerDoc

from .test_metrics import reference


def ranked_by_brute_force(queries: np.ndarray, index: np.ndarray, own=None) -> list[list[int]]:
    """Inner-product ranking in float64, ties to the lower id, each query's own item removed."""
    scores = queries.astype(np.float64) @ index.astype(np.float64).T
    rankings = []
    for q, row in enumerate(scores):
        ranked = np.argsort(-row, kind="stable").tolist()
        rankings.append([i for i in ranked if own is None or i != own[q]])
    return rankings


def expected_table(rankings, grades_per_query, ks) -> dict[str, float]:
    kept = [(r, g) for r, g in zip(rankings, grades_per_query, strict=True) if g]
    return {f"{name}@{k}": np.mean([reference(r, g, k)[name] for r, g in kept]) for name in METRICS for k in ks}


def integer_vectors(seed: int, n: int, dim: int = 6) -> np.ndarray:
    """Small integers: exact float32 scores with many ties."""
    return np.random.default_rng(seed).integers(-2, 3, size=(n, dim)).astype(np.float32)


def assert_table(result: dict, expected: dict) -> None:
    for key, value in expected.items():
        assert result[key] == pytest.approx(value, abs=1e-12), key


# --- label relevance ---------------------------------------------------------------------------------------------
def test_label_relevance_leaves_the_query_out_and_matches_brute_force():
    vectors = integer_vectors(0, 90)
    labels = [f"c{i % 7}" for i in range(89)] + ["alone"]
    result = evaluate_embeddings(
        vectors, vectors, LabelRelevance(labels, labels, own=np.arange(90)), (1, 5, 20), {"metric": "inner_product"}
    )
    rankings = ranked_by_brute_force(vectors, vectors, own=np.arange(90))
    grades = [{i: 1.0 for i, lab in enumerate(labels) if lab == labels[q] and i != q} for q in range(90)]
    assert_table(result.metrics, expected_table(rankings, grades, (1, 5, 20)))
    assert result.metrics["queries_without_relevant"] == 1 and result.metrics["queries"] == 89
    assert result.warnings == [
        "1 of 90 queries have no relevant item in the index and are left out of the means "
        "(queries_without_relevant): query 89"
    ]


def test_label_retrieval_metrics_keeps_its_contract():
    rng = np.random.default_rng(2)
    labels = [f"c{i % 6}" for i in range(60)]
    embeddings = rng.normal(size=(60, 8)) + 5 * np.eye(8)[[i % 6 for i in range(60)]]
    result = label_retrieval_metrics(embeddings, labels, (1, 10))
    assert {"precision@1", "recall@10", "hit@10", "mrr@10", "map@10", "ndcg@10", "f1@10", "dcg@10"} <= set(result)
    assert result["precision@1"] > 0.9 and result["r_precision_queries"] == 60
    with pytest.raises(EvaluationError, match="3 embeddings but 2 labels"):
        label_retrieval_metrics(np.ones((3, 2)), ["a", "b"], (1,))


@dataclass(frozen=True)
class Record:
    content: object
    label: str


class Lookup:
    """A deterministic encoder: a fixed vector per input."""

    def __init__(self, table: dict):
        self.table = table

    def encode(self, inputs: list) -> np.ndarray:
        return np.array([self.table[x] for x in inputs], np.float32)


def test_evaluate_labeled_reads_records_and_encodes_once():
    texts = [f"t{i}" for i in range(12)]
    vectors = integer_vectors(3, 12)
    model = Lookup(dict(zip(texts, vectors, strict=True)))
    records = [Record(t, f"c{i % 3}") for i, t in enumerate(texts)]
    labels = [r.label for r in records]
    assert evaluate_labeled(model, records, (1, 3)) == label_retrieval_metrics(vectors, labels, (1, 3))


# --- pair and graded relevance -----------------------------------------------------------------------------------
@pytest.mark.parametrize("graded", [False, True])
def test_pair_relevance_matches_brute_force(graded):
    rng = np.random.default_rng(4)
    queries, index = integer_vectors(5, 40), integer_vectors(6, 300)
    grades = [
        {int(i): float(rng.integers(1, 4)) if graded else 1.0 for i in rng.choice(300, rng.integers(0, 6), False)}
        for _ in range(40)
    ]
    pairs = [(q, i, g) for q, row in enumerate(grades) for i, g in row.items()]
    q, i, g = (np.array(c) for c in zip(*pairs, strict=True))
    relevance = PairRelevance(40, 300, q, i, g)
    assert relevance.kind == ("graded" if graded else "pairs")
    result = evaluate_embeddings(queries, index, relevance, (1, 10), {"metric": "inner_product"})
    assert_table(result.metrics, expected_table(ranked_by_brute_force(queries, index), grades, (1, 10)))
    assert result.metrics["queries_without_relevant"] == sum(not row for row in grades) > 0


def test_pairs_within_one_set_never_count_the_query_itself():
    vectors = integer_vectors(7, 20)
    relevance = PairRelevance(20, 20, np.array([0, 0, 1]), np.array([0, 5, 1]), own=np.arange(20))
    assert relevance.num_relevant()[:2].tolist() == [1, 0], "a pair of an item with itself is dropped"
    result = evaluate_embeddings(vectors, vectors, relevance, (1,), {"metric": "inner_product"})
    assert result.metrics["queries"] == 1


def test_pair_relevance_refuses_bad_pairs():
    with pytest.raises(EvaluationError, match="listed more than once, e.g. query 0 and item 1"):
        PairRelevance(2, 3, np.array([0, 0]), np.array([1, 1]))
    with pytest.raises(EvaluationError, match=r"grades must be finite and > 0 \(pairs \[1\]\)"):
        PairRelevance(2, 3, np.array([0, 1]), np.array([1, 1]), np.array([1.0, 0.0]))
    with pytest.raises(EvaluationError, match=r"pair index positions must lie in \[0, 3\)"):
        PairRelevance(2, 3, np.array([0]), np.array([3]))


# --- cross-modal -------------------------------------------------------------------------------------------------
CLASSES = ["cat", "dog", "ship"]


class Tower:
    """One tower of a toy two-tower model: a fixed torch module behind ``encode``."""

    def __init__(self, module: nn.Module, prepare):
        self.module, self.prepare = module, prepare

    @torch.no_grad()
    def encode(self, inputs: list) -> np.ndarray:
        return self.module(self.prepare(inputs)).numpy()


def towers(dim: int = 16):
    """A text tower (caption -> class vector) and an image tower (pixels -> the same vector, plus noise)."""
    generator = torch.Generator().manual_seed(0)
    centres = torch.linalg.qr(torch.randn(dim, dim, generator=generator))[0][: len(CLASSES)]  # (3, dim)
    patterns = torch.linalg.qr(torch.randn(3 * 8 * 8, 3 * 8 * 8, generator=generator))[0][: len(CLASSES)]
    text = nn.Embedding.from_pretrained(centres)
    image = nn.Linear(3 * 8 * 8, dim, bias=False)
    image.weight.data = centres.T @ patterns  # (dim, 192)
    vocabulary = {c: i for i, c in enumerate(CLASSES)}
    text_tower = Tower(text, lambda texts: torch.tensor([vocabulary[t.split()[-1]] for t in texts]))
    image_tower = Tower(image, lambda images: torch.tensor(np.stack(images)).reshape(len(images), -1))
    return text_tower, image_tower, patterns.numpy()


def images_of(patterns: np.ndarray, classes: list[int], seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [(patterns[c] + 0.02 * rng.normal(size=patterns.shape[1])).astype(np.float32) for c in classes]


@dataclass(frozen=True)
class Pair:
    text: str
    image: np.ndarray


def test_text_to_image_pairs_with_a_query_and_an_index_model():
    text_tower, image_tower, patterns = towers()
    classes = [i % 3 for i in range(12)]
    pairs = [
        Pair(f"a photo of a {CLASSES[c]}", image)
        for c, image in zip(classes, images_of(patterns, classes, 0), strict=True)
    ]
    metrics = evaluate_pairs(text_tower, pairs, (1, 4), index_model=image_tower)
    assert metrics["queries"] == 3, "one query per distinct caption"
    assert metrics["precision@4"] == metrics["recall@4"] == metrics["ndcg@4"] == metrics["r_precision"] == 1.0


def test_image_queries_against_a_text_index_by_label():
    text_tower, image_tower, patterns = towers()
    classes = [0, 1, 2, 2, 1, 0]
    images = [Record(image, CLASSES[c]) for c, image in zip(classes, images_of(patterns, classes, 1), strict=True)]
    captions = [Record(f"a photo of a {c}", c) for c in CLASSES]
    result = evaluate(labeled_set(images, captions), image_tower, (1, 3), index_model=text_tower)
    assert result.metrics["precision@1"] == 1.0 and result.metrics["map@3"] == 1.0
    assert result.examples[0]["results"][0]["content"] == "a photo of a cat"
    assert result.examples[0]["query"]["content"] == "array (192,)"


def test_query_and_index_models_of_different_sizes_are_refused():
    text_tower, _, patterns = towers(dim=16)
    other = Tower(nn.Linear(192, 8), lambda images: torch.tensor(np.stack(images)).reshape(len(images), -1))
    data = labeled_set([Record("a photo of a cat", "cat")], [Record(i, "cat") for i in images_of(patterns, [0], 2)])
    with pytest.raises(EvaluationError, match="query embeddings are 16-d but index embeddings are 8-d"):
        evaluate(data, text_tower, (1,), index_model=other)


# --- bad input ---------------------------------------------------------------------------------------------------
def test_empty_sets_are_refused():
    model = Lookup({"a": [1.0, 0.0]})
    with pytest.raises(EvaluationError, match="no queries to evaluate"):
        evaluate(pairs_set([], ["a"], []), model, (1,))
    with pytest.raises(EvaluationError, match="the index is empty"):
        evaluate(pairs_set(["a"], [], []), model, (1,))


def test_k_larger_than_what_a_query_can_retrieve_is_refused_before_encoding():
    records = [Record(f"t{i}", "c") for i in range(5)]
    with pytest.raises(EvaluationError, match=r"k=5 is larger than the 4 items a query can retrieve \(5 index items"):
        evaluate_labeled(None, records, (1, 5))


def test_evaluation_records_are_checked_before_a_run():
    from finetuner_core.evaluation.evaluate import check_eval_records

    labeled = [Record(f"t{i}", "c") for i in range(5)]
    check_eval_records(labeled, (1, 4))
    with pytest.raises(EvaluationError, match="k=5 is larger than the 4 items a query can retrieve"):
        check_eval_records(labeled, (1, 5))
    pairs = [Pair(f"caption {i % 2}", np.zeros(3)) for i in range(5)]
    check_eval_records(pairs, (5,))
    with pytest.raises(EvaluationError, match="k=6 is larger than the 5 items"):
        check_eval_records(pairs, (6,))
    with pytest.raises(EvaluationError, match="no queries to evaluate"):
        check_eval_records([], (1,))


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_nan_embeddings_name_the_items(bad):
    vectors = {f"t{i}": [1.0, float(i)] for i in range(6)}
    vectors["t3"] = [bad, 0.0]
    records = [Record(f"t{i}", "c") for i in range(6)]
    with pytest.raises(EvaluationError, match=r"1 query embeddings hold NaN or infinite values \(e.g. query 3\)"):
        evaluate_labeled(Lookup(vectors), records, (1,))


def test_a_model_returning_the_wrong_shape_is_refused():
    class Short:
        def encode(self, inputs):
            return np.ones((len(inputs) - 1, 4))

    with pytest.raises(EvaluationError, match=r"returned embeddings of shape \(2, 4\) for 3 inputs"):
        evaluate_labeled(Short(), [Record(f"t{i}", "c") for i in range(3)], (1,))


def test_no_query_with_a_relevant_item_is_refused():
    with pytest.raises(EvaluationError, match="none of the 3 queries has a relevant item"):
        label_retrieval_metrics(np.eye(3), ["a", "b", "c"], (1,))


def test_labels_are_required_for_label_relevance():
    with pytest.raises(EvaluationError, match=r"queries without a label: 1 \(positions \[1\]\)"):
        LabelRelevance(["a", None], ["a", "b"])


# --- approximate indexes, options, examples ---------------------------------------------------------------------
def test_an_approximate_index_reports_its_recall_against_exact_search():
    rng = np.random.default_rng(8)
    labels = [f"c{i % 10}" for i in range(2000)]
    embeddings = rng.normal(size=(2000, 16)) + 4 * rng.normal(size=(10, 16))[[i % 10 for i in range(2000)]]
    relevance = LabelRelevance(labels, labels, own=np.arange(2000))
    exact = evaluate_embeddings(embeddings, embeddings, relevance, (1, 10)).metrics
    options = {"index": "hnsw", "index_options": {"m": 16, "ef_search": 128}, "exact_check": 200}
    approximate = evaluate_embeddings(embeddings, embeddings, relevance, (1, 10), options).metrics
    assert 0.9 < approximate["index_recall@10"] <= 1.0 and "index_recall@10" not in exact
    assert approximate["precision@10"] == pytest.approx(exact["precision@10"], abs=0.02)


def test_options_are_validated_with_the_field_named():
    with pytest.raises(EvaluationError, match=r"unknown ivf index options \['ef_search'\]; allowed: nlist"):
        parse_evaluation_options({"index": "ivf", "index_options": {"ef_search": 3}})
    with pytest.raises(EvaluationError, match="metric: Input should be 'cosine', 'inner_product' or 'l2'"):
        parse_evaluation_options({"metric": "dot"})


def test_examples_show_sample_queries_with_their_top_results():
    vectors = integer_vectors(9, 30)
    data = EvalSet([f"q{i}" for i in range(30)], None, LabelRelevance(["a", "b"] * 15, ["a", "b"] * 15, np.arange(30)))
    model = Lookup({f"q{i}": v for i, v in enumerate(vectors)})
    result = evaluate(data, model, (1, 5), options={"examples": 3, "example_k": 4})
    assert [e["query"]["position"] for e in result.examples] == [0, 14, 29]
    first = result.examples[0]
    assert first["query"] == {"position": 0, "name": "query 0", "content": "q0"}
    assert [r["rank"] for r in first["results"]] == [1, 2, 3, 4] and first["relevant_in_index"] == 14
    assert all(r["position"] != 0 for r in first["results"]), "the query itself is left out"
    assert [r["relevance"] for r in first["results"]] == [float(r["position"] % 2 == 0) for r in first["results"]]
    scores = [r["score"] for r in first["results"]]
    assert scores == sorted(scores, reverse=True)


# --- requests: documents -> evaluation data ---------------------------------------------------------------------
def item(text=None, label=None, role=None, name=None, **fields) -> FinetunerDoc:
    return FinetunerDoc(split="eval", text=text, finetuner_label=label, role=role, name=name, **fields)


def relevance_doc(pairs) -> FinetunerDoc:
    return FinetunerDoc(kind="relevance", split="eval", payload=json.dumps({"pairs": pairs}))


def test_labeled_items_without_roles_are_leave_one_out():
    docs = [item("a", "x"), item("b", "x"), item("c", "y")]
    data = eval_set_from_docs(docs)
    assert not is_retrieval_request(docs)
    assert data.same_set and data.queries == ["a", "b", "c"] and data.own.tolist() == [0, 1, 2]
    assert data.relevance.num_relevant().tolist() == [1, 1, 0]


def test_roles_and_graded_pairs_by_name():
    docs = [
        item("how do I pay?", role="query", name="q1"),
        item("card lost", role="query", name="q2"),
        item("Payments are made ...", role="index", name="d1"),
        item("Report a lost card ...", role="index", name="d2"),
        item("Fees ...", name="d3"),  # no role: a query and an index item
        relevance_doc([["q1", "d1", 2], ["q1", "d3"], ["q2", "d2", 0], ["d3", "d1", 1]]),
    ]
    data = eval_set_from_docs(docs)
    assert is_retrieval_request(docs) and not data.same_set
    assert data.query_names == ["q1", "q2", "d3"] and data.index_names == ["d1", "d2", "d3"]
    assert data.own.tolist() == [-1, -1, 2] and data.relevance.kind == "graded"
    assert data.relevance.num_relevant().tolist() == [2, 0, 1], "grade 0 is not relevant"
    judged = data.relevance.judge(np.array([[0, 2], [1, 0], [0, 1]]))
    assert judged.gains.tolist() == [[2.0, 1.0], [0.0, 0.0], [1.0, 0.0]]


def test_cross_modal_items_decode_images_and_keep_vectors():
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (200, 10, 10)).save(buffer, format="PNG")
    png = buffer.getvalue()
    docs = [item("a photo of a cat", "cat", role="query"), item(label="cat", role="index", blob=png)]
    docs.append(item(label="cat", role="index", tensor=np.arange(4, dtype=np.float32)))
    data = eval_set_from_docs(docs)
    assert data.queries == ["a photo of a cat"]
    assert data.index[0].size == (8, 8) and data.index[1].tolist() == [0.0, 1.0, 2.0, 3.0]


def test_bad_request_documents_are_refused_with_every_problem():
    docs = [
        item("a", role="query", name="q1"),
        item(role="index", name="d1"),
        item("b", role="answer", name="d2"),
        item("c", role="index", name="d2"),
        item("d", role="index", name="d2"),
        relevance_doc([["q1", "d1"]]),
    ]
    with pytest.raises(EvaluationError) as info:
        eval_set_from_docs(docs)
    message = str(info.value)
    assert message.startswith("evaluation data rejected: 3 problems")
    assert "document 1: no input" in message and "document 2: unknown role 'answer'" in message
    assert "index names must be unique; repeated: d2" in message
    with pytest.raises(EvaluationError, match="2 pairs name unknown items: query 'q9', item 'd9'"):
        eval_set_from_docs(
            [
                item("a", role="query", name="q1"),
                item("b", role="index", name="d1"),
                relevance_doc([["q9", "d1"], ["q1", "d9"]]),
            ]
        )
    with pytest.raises(EvaluationError, match="document 0: no finetuner_label"):
        eval_set_from_docs([item("a"), item("b", "x")])
    with pytest.raises(EvaluationError, match="no index item"):
        eval_set_from_docs([item("a", "x", role="query")])


def test_model_specs_name_every_way_to_pick_models():
    default = model_specs({}, "all-MiniLM-L6-v2", {"pooling": None})
    assert [(s.name, s.query.model, s.query.model_options, s.index) for s in default] == [
        ("all-MiniLM-L6-v2", "all-MiniLM-L6-v2", {"pooling": None}, None)
    ]
    assert model_specs({"run_id": "ab" * 8}, "m", {})[0].query.run_id == "ab" * 8
    two = model_specs({"query_model": {"model": "clip-t"}, "index_model": {"run_id": "r1"}}, "m", {})[0]
    assert (two.name, two.query.model, two.index.run_id) == ("clip-t / run r1", "clip-t", "r1")
    many = model_specs({"models": ["a", {"run_id": "r2", "name": "tuned"}]}, "m", {})
    assert [s.name for s in many] == ["a", "tuned"]
    with pytest.raises(EvaluationError, match="give exactly one of 'model' and 'run_id'"):
        model_specs({"models": [{"model": "a", "run_id": "r"}]}, "m", {})
