import pytest

from finetuner_protocol.data import DataError, LabeledItem
from finetuner_protocol.data.validation import validate_labeled


def records(*pairs):
    return [LabeledItem(text, label, source=f"row {i + 2}") for i, (text, label) in enumerate(pairs)]


GOOD = [("a1", "a"), ("a2", "a"), ("b1", "b"), ("b2", "b")]


def test_good_data_passes():
    validate_labeled(records(*GOOD), "train")


@pytest.mark.parametrize(
    "pairs,expected",
    [
        ([], "train: the data set is empty"),
        ([*GOOD, ("", "a")], "row 6: text is empty or whitespace"),
        ([*GOOD, ("   \t", "a")], "row 6: text is empty or whitespace"),
        ([*GOOD, ("text", "")], "row 6: label is missing"),
        ([*GOOD, ("text", None)], "row 6: label is missing"),
        ([("a1", "a"), ("a2", "a")], "train: needs at least 2 classes to build negatives, found 1 ('a')"),
        ([*GOOD, ("c1", "c")], "row 6: class 'c' has 1 item(s); the sampler needs at least 2 per class"),
    ],
)
def test_each_problem_is_named(pairs, expected):
    with pytest.raises(DataError) as info:
        validate_labeled(records(*pairs), "train")
    assert expected in [str(p) for p in info.value.problems]
    assert expected in str(info.value)


def test_every_bad_row_is_listed_at_once():
    with pytest.raises(DataError) as info:
        validate_labeled(records(("", "a"), ("x", ""), *GOOD), "train")
    assert [p.where for p in info.value.problems] == ["row 2", "row 3"]
    assert str(info.value).startswith("train data rejected: 2 problems")


def test_one_item_classes_are_allowed_when_the_sampler_does_not_need_pairs():
    validate_labeled(records(*GOOD, ("c1", "c")), "eval", min_items_per_class=1)


# --- query-document and scored pairs ------------------------------------------------------------------------------


def query_docs(*pairs):
    from finetuner_protocol.data.records import QueryDocItem

    return [QueryDocItem(query, document, source=f"row {i + 2}") for i, (query, document) in enumerate(pairs)]


def scored(*triples):
    from finetuner_protocol.data.records import ScoredPairItem

    return [ScoredPairItem(a, b, score, source=f"row {i + 2}") for i, (a, b, score) in enumerate(triples)]


def problems_of(validate, records, **options):
    with pytest.raises(DataError) as info:
        validate(records, "train", **options)
    return [str(p) for p in info.value.problems]


def test_good_pairs_pass():
    from finetuner_protocol.shapes import validate_records

    validate_records(query_docs(("q1", "d1"), ("q2", "d2")), "train")
    validate_records(scored(("a", "b", 0.5), ("c", "d", -3)), "train")


def test_every_bad_query_document_pair_is_named():
    from finetuner_protocol.shapes import validate_records

    records = query_docs(("q1", "d1"), (" ", "d2"), ("q3", None), ("q4", "\t"), ("q5", "d5"))
    assert problems_of(validate_records, records) == [
        "row 3: query is empty or whitespace",
        "row 4: document (the second text) is missing, empty or whitespace",
        "row 5: document (the second text) is missing, empty or whitespace",
    ]


@pytest.mark.parametrize(
    "pairs,expected",
    [
        ([], "train: the data set is empty"),
        ([("q", "d")], "train: needs at least 2 pairs: the other pairs of a batch are what each pair is compared with"),
        (
            [("q", "d1"), ("q", "d2")],
            "train: all 2 pairs share one query; in-batch negatives need at least 2 different",
        ),
    ],
)
def test_query_document_sets_need_two_queries(pairs, expected):
    from finetuner_protocol.data.validation import validate_query_docs

    assert problems_of(validate_query_docs, query_docs(*pairs))[0].startswith(expected)


def test_every_bad_scored_pair_is_named():
    from finetuner_protocol.data.validation import validate_scored

    records = scored(
        ("a", "b", 1.0),
        ("", "b", 2.0),
        ("a", None, 2.0),
        ("a", "b", float("nan")),
        ("a", "b", float("inf")),
        ("a", "b", None),
        ("a", "b", "high"),
    )
    assert problems_of(validate_scored, records) == [
        "row 3: text is empty or whitespace",
        "row 4: second text is missing, empty or whitespace",
        "row 5: score is nan, not a finite number",
        "row 6: score is inf, not a finite number",
        "row 7: score is missing",
        "row 8: score 'high' is not a number",
    ]


def test_scored_sets_need_two_pairs_with_different_scores():
    from finetuner_protocol.data.validation import validate_scored

    assert problems_of(validate_scored, scored(("a", "b", 1.0)))[0].startswith("train: needs at least 2 pairs")
    assert problems_of(validate_scored, scored(("a", "b", 3), ("c", "d", 3))) == [
        "train: every score is 3; scored pairs need at least 2 different scores"
    ]


def test_one_batch_of_a_dataset_is_checked_row_by_row_only():
    from finetuner_protocol.shapes import validate_records

    validate_records(scored(("a", "b", 3.0)), "batch", whole=False)
    validate_records(query_docs(("q", "d")), "batch", whole=False)
    validate_records(records(("a1", "a")), "batch", whole=False)
    with pytest.raises(DataError, match="row 2: score is nan"):
        validate_records(scored(("a", "b", float("nan"))), "batch", whole=False)
