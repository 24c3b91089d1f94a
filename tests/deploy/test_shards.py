"""Sharded search gives exactly the unsharded top k: the same ids, the same scores, the same tie order."""

import numpy as np
import pytest

from finetuner_core.evaluation.errors import EvaluationError
from finetuner_core.evaluation.index import METRIC_TYPES, FlatIndex
from finetuner_core.evaluation.search import SearchOptions, SliceCache, docs_index, merge_search_answers, search_shard
from finetuner_core.evaluation.shards import (
    ShardAnswer,
    merge_answers,
    pair_scores,
    prepare,
    search_slice,
    shard_range,
    sharded_search,
)
from finetuner_protocol.wire import FinetunerDoc


def brute_force(vectors, queries, k, metric):
    """Every item scored against every query one query at a time, sorted by (score desc, id asc)."""
    vectors, queries = prepare(vectors, metric), prepare(queries, metric)
    scores = np.concatenate([pair_scores(q[None], vectors[None], metric) for q in queries])
    ids = np.broadcast_to(np.arange(len(vectors)), scores.shape)
    order = np.lexsort((ids, -scores), axis=-1)[:, :k]
    return np.take_along_axis(scores, order, -1), np.take_along_axis(ids, order, -1)


def tied_data(n=1500, dim=48, queries=40, seed=0):
    """Random vectors with many exact duplicates (ties across shard borders) and queries equal to items."""
    rng = np.random.default_rng(seed)
    vectors = rng.standard_normal((n, dim)).astype(np.float32)
    vectors[n // 2 : n // 2 + 150] = vectors[:150]  # duplicates far apart: in different shards
    vectors[10:30] = vectors[5]  # 21 copies of one vector: ties deeper than k
    query_vectors = np.concatenate([rng.standard_normal((queries - 3, dim)).astype(np.float32), vectors[[0, 5, 7]]])
    return vectors, query_vectors


@pytest.mark.parametrize("metric", METRIC_TYPES)
@pytest.mark.parametrize("shards", [1, 2, 3, 5])
def test_sharded_equals_unsharded_exactly(metric, shards):
    vectors, queries = tied_data()
    expected = brute_force(vectors, queries, 25, metric)
    scores, ids = sharded_search(vectors, queries, 25, shards, metric, block=64)
    np.testing.assert_array_equal(ids, expected[1])
    np.testing.assert_array_equal(scores, expected[0])
    unsharded = search_slice(vectors, queries, 25, metric)
    np.testing.assert_array_equal(unsharded[1], ids)
    np.testing.assert_array_equal(unsharded[0], scores)


def test_ties_are_broken_by_the_lower_id_across_shards():
    vectors, queries = tied_data()
    _, ids = sharded_search(vectors, queries[-2:-1], 21, 4, "cosine", block=64)  # the query equal to item 5
    assert ids[0].tolist() == [5, *range(10, 30)]


def test_same_ranking_as_the_flat_index_of_the_evaluation():
    rng = np.random.default_rng(1)
    vectors, queries = rng.standard_normal((2000, 64)).astype(np.float32), rng.standard_normal((50, 64))
    _, flat_ids = FlatIndex(vectors, "cosine").search(queries, 20)
    _, ids = sharded_search(vectors, queries, 20, 3, "cosine", block=128)
    np.testing.assert_array_equal(ids, flat_ids)


def test_shard_ranges_cover_the_index_once_in_whole_blocks():
    for total in (0, 1, 255, 256, 257, 1000, 4097):
        for shards in (1, 2, 3, 7, 20):
            ranges = [shard_range(total, shards, s, block=256) for s in range(shards)]
            assert [p for r in ranges for p in r] == list(range(total))
            assert all(r.start % 256 == 0 for r in ranges if len(r))
    with pytest.raises(EvaluationError, match="shard id"):
        shard_range(10, 2, 2)


def test_merge_refuses_missing_or_repeated_shards():
    vectors, queries = tied_data(n=300)
    answers = []
    for shard in range(3):
        positions = shard_range(len(vectors), 3, shard, block=64)
        part = vectors[positions.start : positions.stop]
        answers.append(ShardAnswer(shard, 3, len(vectors), *search_slice(part, queries, 5, offset=positions.start)))
    with pytest.raises(EvaluationError, match=r"shard 1 of 3 did not answer.*no partial answer"):
        merge_answers([answers[0], answers[2]], 5)
    with pytest.raises(EvaluationError, match=r"shard 0 of 3 answered twice"):
        merge_answers([answers[0], answers[0], answers[1], answers[2]], 5)
    merged = merge_answers([ShardAnswer.from_payload(a.to_payload()) for a in reversed(answers)], 5)
    np.testing.assert_array_equal(merged[1], brute_force(vectors, queries, 5, "cosine")[1])


def test_search_request_answers_per_shard_merge_to_the_unsharded_answer():
    """The /search steps on documents (vectors as the model input, an identity encoder): every shard's answer,
    merged, equals the one-shard answer; names and labels come with the results."""
    vectors, queries = tied_data(n=700, dim=16, queries=12)
    docs = [FinetunerDoc(role="query", tensor=q, name=f"q{i}") for i, q in enumerate(queries)]
    docs += [
        FinetunerDoc(role="index", tensor=v, name=f"item{i}", finetuner_label=str(i % 7)) for i, v in enumerate(vectors)
    ]
    queries_in = [d.tensor for d in docs if d.role == "query"]
    options = SearchOptions(k=12)

    def identity(inputs):
        return np.stack(inputs)

    def answer(shard, shards):
        return search_shard(queries_in, docs_index(docs), identity, identity, options, shard, shards, SliceCache())

    single = merge_search_answers([answer(0, 1)], 12)
    sharded = merge_search_answers([answer(s, 3) for s in (2, 0, 1)], 12)
    np.testing.assert_array_equal(sharded["ids"], single["ids"])
    np.testing.assert_array_equal(sharded["scores"], single["scores"])
    assert sharded["results"] == single["results"]
    assert sharded["results"][0][0]["name"] == f"item{sharded['ids'][0][0]}"
    np.testing.assert_array_equal(sharded["ids"], brute_force(vectors, queries, 12, "cosine")[1])
    with pytest.raises(EvaluationError, match="larger than the index"):
        search_shard(queries_in, docs_index(docs), identity, identity, SearchOptions(k=701), 0, 1)
