import math

import numpy as np
import pytest

from finetuner_core.evaluation import METRICS, FlatIndex, label_retrieval_metrics, retrieval_metrics


def reference(ranked: list[int], relevant: set[int], k: int) -> dict[str, float]:
    """Textbook definitions, one query at a time, with plain loops."""
    top = ranked[:k]
    found = [doc in relevant for doc in top]
    first = next((i for i, f in enumerate(found) if f), None)
    precisions = [sum(found[: i + 1]) / (i + 1) for i in range(len(top)) if found[i]]
    dcg = sum(1 / math.log2(i + 2) for i, f in enumerate(found) if f)
    idcg = sum(1 / math.log2(i + 2) for i in range(min(len(relevant), k)))
    return {
        "precision": sum(found) / k,
        "recall": sum(found) / len(relevant),
        "hit": float(any(found)),
        "mrr": 0.0 if first is None else 1 / (first + 1),
        "map": sum(precisions) / min(len(relevant), k),
        "ndcg": dcg / idcg,
    }


def test_every_metric_matches_the_reference():
    rng = np.random.default_rng(0)
    queries, corpus, depth = 50, 40, 20
    ranked = [list(rng.permutation(corpus)[:depth]) for _ in range(queries)]
    relevant = [set(rng.choice(corpus, size=rng.integers(1, 12), replace=False)) for _ in range(queries)]
    hits = np.array([[doc in rel for doc in row] for row, rel in zip(ranked, relevant, strict=True)])
    num_relevant = np.array([len(rel) for rel in relevant])
    result = retrieval_metrics(hits, num_relevant, (1, 5, 20))
    assert set(METRICS) == {"precision", "recall", "hit", "mrr", "map", "ndcg"}
    for name in METRICS:
        for k in (1, 5, 20):
            expected = np.mean([reference(r, rel, k)[name] for r, rel in zip(ranked, relevant, strict=True)])
            assert result[f"{name}@{k}"] == pytest.approx(expected, abs=1e-12), f"{name}@{k}"


def test_queries_without_relevant_items_are_counted_not_averaged():
    hits = np.array([[True, False], [False, False]])
    result = retrieval_metrics(hits, np.array([1, 0]), (1,))
    assert result["precision@1"] == 1.0
    assert result["queries"] == 1 and result["queries_without_relevant"] == 1


def test_k_beyond_the_results_is_refused():
    with pytest.raises(ValueError, match="k=3"):
        retrieval_metrics(np.ones((2, 2), bool), np.array([1, 1]), (3,))


@pytest.mark.parametrize("metric", ["cosine", "inner_product", "l2"])
def test_flat_index_equals_numpy_brute_force(metric):
    rng = np.random.default_rng(1)
    index_vectors, queries = rng.normal(size=(300, 16)), rng.normal(size=(40, 16))
    if metric == "cosine":
        a = index_vectors / np.linalg.norm(index_vectors, axis=1, keepdims=True)
        b = queries / np.linalg.norm(queries, axis=1, keepdims=True)
        scores = b @ a.T
    elif metric == "inner_product":
        scores = queries @ index_vectors.T
    else:
        scores = -((queries[:, None, :] - index_vectors[None]) ** 2).sum(-1)
    expected_ids = np.argsort(-scores, axis=1, kind="stable")[:, :10]
    got_scores, got_ids = FlatIndex(index_vectors, metric).search(queries, 10, batch_size=7)
    np.testing.assert_array_equal(got_ids, expected_ids)
    np.testing.assert_allclose(got_scores, np.take_along_axis(scores, expected_ids, 1), rtol=1e-4, atol=1e-4)


def test_ties_go_to_the_lower_id():
    vectors = np.array([[1.0, 0.0]] * 5 + [[0.0, 1.0]])
    _, ids = FlatIndex(vectors).search(np.array([[1.0, 0.0]]), 5)
    assert ids.tolist() == [[0, 1, 2, 3, 4]]


@pytest.mark.parametrize(
    "vectors,queries,k,message",
    [
        (np.zeros((0, 4)), np.zeros((1, 4)), 1, "non-empty"),
        (np.ones((3, 4)), np.ones((1, 5)), 1, "dimension 5"),
        (np.ones((3, 4)), np.ones((1, 4)), 4, "k=4"),
        (np.ones((3, 4)), np.full((1, 4), np.nan), 1, "NaN"),
    ],
)
def test_index_refuses_bad_input(vectors, queries, k, message):
    with pytest.raises(ValueError, match=message):
        FlatIndex(vectors).search(queries, k)


def test_label_retrieval_excludes_the_query_and_matches_brute_force():
    rng = np.random.default_rng(2)
    labels = [f"c{i % 6}" for i in range(60)] + ["alone"]
    centres = {label: rng.normal(size=8) for label in sorted(set(labels))}
    embeddings = rng.normal(size=(61, 8)) + np.array([centres[label] for label in labels])
    result = label_retrieval_metrics(embeddings, labels, (1, 10))
    unit = embeddings / np.linalg.norm(embeddings, axis=1, keepdims=True)
    scores = unit @ unit.T
    np.fill_diagonal(scores, -np.inf)
    expected = []
    for q in range(60):
        ranked = list(np.argsort(-scores[q], kind="stable"))
        relevant = {i for i, lab in enumerate(labels) if lab == labels[q] and i != q}
        expected.append(reference(ranked, relevant, 10))
    for name in METRICS:
        assert result[f"{name}@10"] == pytest.approx(np.mean([e[name] for e in expected]), abs=1e-9), name
    assert result["queries_without_relevant"] == 1
