import pytest

from finetuner_core.data import DataError, LabeledItem
from finetuner_core.data.validation import validate_labeled


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
