"""The FAISS wrapper against NumPy brute force: exact results, ties, approximate recall, bad input."""

import numpy as np
import pytest

from finetuner_core.evaluation import INDEXES, FlatIndex, build_index
from finetuner_core.evaluation.index import neighbour_recall
from finetuner_core.evaluation.options import index_option_names


def brute_force(index_vectors: np.ndarray, queries: np.ndarray, metric: str, k: int):
    """Scores of every pair in float64, ranked by score then lower id (a stable sort).  # (q, k), (q, k)"""
    a, b = index_vectors.astype(np.float64), queries.astype(np.float64)
    if metric == "cosine":
        a, b = a / np.linalg.norm(a, axis=1, keepdims=True), b / np.linalg.norm(b, axis=1, keepdims=True)
    scores = -((b[:, None, :] - a[None]) ** 2).sum(-1) if metric == "l2" else b @ a.T
    ids = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(scores, ids, 1), ids


@pytest.mark.parametrize("metric", ["cosine", "inner_product", "l2"])
@pytest.mark.parametrize("num_queries", [3, 64])  # FAISS takes another code path from 20 queries on
def test_flat_index_equals_numpy_brute_force(metric, num_queries):
    rng = np.random.default_rng(1)
    index_vectors, queries = rng.normal(size=(3000, 16)), rng.normal(size=(num_queries, 16))
    expected_scores, expected_ids = brute_force(index_vectors, queries, metric, 10)
    scores, ids = FlatIndex(index_vectors, metric).search(queries, 10, batch_size=7)
    np.testing.assert_array_equal(ids, expected_ids)
    np.testing.assert_allclose(scores, expected_scores, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("metric", ["inner_product", "l2"])
@pytest.mark.parametrize("num_queries", [1, 64])
def test_ties_go_to_the_lower_id_within_and_at_the_cut_off(metric, num_queries):
    """Small integer vectors give exact float32 scores, so ties are real ties; duplicates span FAISS blocks."""
    rng = np.random.default_rng(2)
    index_vectors = rng.integers(-2, 3, size=(5000, 8)).astype(np.float32)
    queries = rng.integers(-2, 3, size=(num_queries, 8)).astype(np.float32)
    _, expected_ids = brute_force(index_vectors, queries, metric, 50)
    scores, ids = FlatIndex(index_vectors, metric).search(queries, 50)
    assert (scores[:, :-1] == scores[:, 1:]).any(), "the data must hold ties"
    np.testing.assert_array_equal(ids, expected_ids)


def test_identical_vectors_come_back_in_id_order():
    vectors = np.array([[1.0, 0.0]] * 5 + [[0.0, 1.0]] + [[1.0, 0.0]] * 5)
    _, ids = FlatIndex(vectors).search(np.array([[1.0, 0.0]]), 7)
    assert ids.tolist() == [[0, 1, 2, 3, 4, 6, 7]]


def test_vectors_added_in_batches_are_searched_like_one_matrix():
    rng = np.random.default_rng(3)
    vectors, queries = rng.normal(size=(500, 12)), rng.normal(size=(20, 12))
    index = FlatIndex(vectors[:100], "l2")
    index.add(vectors[100:], batch_size=64)
    assert len(index) == 500
    np.testing.assert_array_equal(index.search(queries, 5)[1], brute_force(vectors, queries, "l2", 5)[1])
    np.testing.assert_allclose(index.vectors(), vectors.astype(np.float32))


def clustered(seed: int, n: int, dim: int = 32, centres: int = 50):
    rng = np.random.default_rng(seed)
    means = rng.normal(size=(centres, dim))
    return (means[rng.integers(centres, size=n)] + 0.3 * rng.normal(size=(n, dim))).astype(np.float32)


@pytest.mark.parametrize("kind", [kind for kind in INDEXES if kind != "flat"])
def test_approximate_indexes_find_most_exact_neighbours(kind):
    vectors, queries = clustered(4, 4000), clustered(5, 100)
    _, exact = FlatIndex(vectors).search(queries, 10)
    index = build_index(kind, vectors, "cosine")
    scores, ids = index.search(queries, 10)
    assert neighbour_recall(ids, exact) > 0.9
    assert (np.diff(scores, axis=1) <= 0).all(), "results are ordered by score"


def test_approximate_index_parameters_trade_recall_for_work():
    vectors, queries = clustered(6, 4000), clustered(7, 100)
    _, exact = FlatIndex(vectors).search(queries, 10)
    ivf = build_index("ivf", vectors, "cosine", nlist=64, nprobe=1)
    narrow = neighbour_recall(ivf.search(queries, 10)[1], exact)
    ivf.nprobe = 64
    assert ivf.nprobe == ivf.nlist == 64
    assert neighbour_recall(ivf.search(queries, 10)[1], exact) == 1.0 > narrow
    hnsw = build_index("hnsw", vectors, "l2", m=8, ef_search=1)
    assert hnsw.search(queries, 10)[1].shape == (100, 10), "ef_search below k is raised to k"


def test_every_index_option_is_exposed_and_named():
    assert index_option_names("ivf") == ["nlist", "nprobe", "train_size", "seed", "use_gpu"]
    assert index_option_names("hnsw") == ["m", "ef_construction", "ef_search", "use_gpu"]
    with pytest.raises(ValueError, match="unknown index 'annoy'; allowed: flat, ivf, hnsw"):
        build_index("annoy", np.ones((2, 2)))


def test_missing_results_of_an_approximate_index_are_marked():
    vectors = clustered(8, 400)
    index = build_index("ivf", vectors, "l2", nlist=20, nprobe=1)
    scores, ids = index.search(vectors[:5], 300)
    assert (ids == -1).any() and np.isneginf(scores[ids == -1]).all()
    assert neighbour_recall(ids, FlatIndex(vectors, "l2").search(vectors[:5], 300)[1]) < 1


def test_gpu_cannot_be_forced_without_a_gpu_build():
    from finetuner_core.evaluation.index import gpu_available

    if gpu_available():
        pytest.skip("this machine has FAISS GPU")
    with pytest.raises(ValueError, match="no GPU support"):
        FlatIndex(np.ones((2, 2)), use_gpu=True)


@pytest.mark.parametrize(
    "vectors,queries,k,message",
    [
        (np.zeros((0, 4)), np.zeros((1, 4)), 1, "non-empty"),
        (np.ones((3, 4)), np.ones((1, 5)), 1, "query dimension 5 does not match index dimension 4"),
        (np.ones((3, 4)), np.ones((1, 4)), 4, "k=4 must be between 1 and the index size"),
        (np.ones((3, 4)), np.full((1, 4), np.nan), 1, "NaN"),
        (np.array([[1.0, np.inf]] * 3), np.ones((1, 2)), 1, r"index vectors contain NaN .* \(rows \[0, 1, 2\]\)"),
    ],
)
def test_index_refuses_bad_input(vectors, queries, k, message):
    with pytest.raises(ValueError, match=message):
        FlatIndex(vectors).search(queries, k)


def test_unknown_metric_is_refused():
    with pytest.raises(ValueError, match="unknown metric 'dot'; allowed: cosine, inner_product, l2"):
        FlatIndex(np.ones((2, 2)), "dot")
