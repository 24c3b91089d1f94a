"""Every metric against textbook definitions computed with plain loops, binary and graded."""

import math

import numpy as np
import pytest

from finetuner_core.evaluation import (
    METRICS,
    RANK_METRICS,
    EvaluationError,
    Judgements,
    PairRelevance,
    metric_table,
    retrieval_metrics,
)


def reference(ranked: list[int], grades: dict[int, float], k: int) -> dict[str, float | None]:
    """One query at a time: ``ranked`` ids, ``grades`` of its relevant ids (> 0), cut-off ``k``."""
    relevant = {doc for doc, grade in grades.items() if grade > 0}
    top = ranked[:k]
    found = [doc in relevant for doc in top]
    first = next((i for i, f in enumerate(found) if f), None)
    precision_at_hits = [sum(found[: i + 1]) / (i + 1) for i in range(len(top)) if found[i]]
    p, r = sum(found) / k, sum(found) / len(relevant)
    dcg = sum(grades.get(doc, 0.0) / math.log2(i + 2) for i, doc in enumerate(top))
    ideal = sorted(grades.values(), reverse=True)[:k]
    idcg = sum(g / math.log2(i + 2) for i, g in enumerate(ideal))
    fits = len(relevant) <= len(ranked)
    return {
        "precision": p,
        "recall": r,
        "f1": 0.0 if p + r == 0 else 2 * p * r / (p + r),
        "hit": float(any(found)),
        "mrr": 0.0 if first is None else 1 / (first + 1),
        "map": sum(precision_at_hits) / min(len(relevant), k),
        "ndcg": dcg / idcg,
        "dcg": dcg,
        "r_precision": sum(doc in relevant for doc in ranked[: len(relevant)]) / len(relevant) if fits else None,
    }


def random_rankings(seed: int, queries: int, corpus: int, depth: int, graded: bool):
    rng = np.random.default_rng(seed)
    ranked = [list(rng.permutation(corpus)[:depth]) for _ in range(queries)]
    relevant = []
    for _ in range(queries):
        docs = rng.choice(corpus, size=rng.integers(0, 25), replace=False)
        relevant.append({int(d): float(rng.integers(1, 4)) if graded else 1.0 for d in docs})
    return ranked, relevant


def judge(ranked, relevant, corpus) -> Judgements:
    pairs = [(q, d, g) for q, rel in enumerate(relevant) for d, g in rel.items()]
    q, d, g = (np.array(column) for column in zip(*pairs, strict=True))
    return PairRelevance(len(ranked), corpus, q, d, g).judge(np.array(ranked))


def test_every_registered_metric_has_a_reference():
    assert set(reference([0], {0: 1.0}, 1)) == set(METRICS) | set(RANK_METRICS)


@pytest.mark.parametrize("graded", [False, True])
def test_every_metric_matches_the_reference(graded):
    corpus, ks = 60, (1, 5, 20)
    ranked, relevant = random_rankings(0, 80, corpus, 20, graded)
    result = metric_table(judge(ranked, relevant, corpus), ks)
    kept = [(r, rel) for r, rel in zip(ranked, relevant, strict=True) if rel]
    assert result["queries"] == len(kept) and result["queries_without_relevant"] == 80 - len(kept)
    for name in METRICS:
        for k in ks:
            expected = np.mean([reference(r, rel, k)[name] for r, rel in kept])
            assert result[f"{name}@{k}"] == pytest.approx(expected, abs=1e-12), f"{name}@{k}"
    for name in RANK_METRICS:
        values = [v for r, rel in kept if (v := reference(r, rel, 1)[name]) is not None]
        assert result[f"{name}_queries"] == len(values) < len(kept), "some queries have more than 20 relevant"
        assert result[name] == pytest.approx(np.mean(values), abs=1e-12), name


def test_binary_hits_match_the_reference():
    rng = np.random.default_rng(1)
    ranked, relevant = random_rankings(1, 50, 40, 20, graded=False)
    relevant = [rel or {int(rng.integers(40)): 1.0} for rel in relevant]
    hits = np.array([[doc in rel for doc in row] for row, rel in zip(ranked, relevant, strict=True)])
    result = retrieval_metrics(hits, np.array([len(rel) for rel in relevant]), (1, 5, 20))
    for name in METRICS:
        expected = np.mean([reference(r, rel, 5)[name] for r, rel in zip(ranked, relevant, strict=True)])
        assert result[f"{name}@5"] == pytest.approx(expected, abs=1e-12), name


def test_graded_ndcg_rewards_the_better_grade_first():
    relevance = PairRelevance(2, 3, np.array([0, 0, 1, 1]), np.array([0, 1, 0, 1]), np.array([3.0, 1, 3, 1]))
    table = metric_table(relevance.judge(np.array([[0, 1, 2], [1, 0, 2]])), (2,))
    best, swapped = 1.0, (1 + 3 / math.log2(3)) / (3 + 1 / math.log2(3))
    assert table["ndcg@2"] == pytest.approx((best + swapped) / 2)
    assert table["precision@2"] == 1.0, "binary metrics count every grade > 0 as relevant"


def test_queries_without_relevant_items_are_counted_not_averaged():
    result = retrieval_metrics(np.array([[True, False], [False, False]]), np.array([1, 0]), (1,))
    assert result["precision@1"] == 1.0
    assert result["queries"] == 1 and result["queries_without_relevant"] == 1


def test_k_beyond_the_results_is_refused():
    with pytest.raises(EvaluationError, match="k=3 is larger than the 2 results"):
        retrieval_metrics(np.ones((2, 2), bool), np.array([1, 1]), (3,))


def test_judgements_that_do_not_line_up_are_refused():
    with pytest.raises(EvaluationError, match="do not line up"):
        retrieval_metrics(np.ones((2, 2), bool), np.array([1, 1, 1]), (1,))
