"""`check_data` / `finetuner check` refuse what a fit would: an unknown model, and evaluation data that cannot be
used, naming the eval split. `fit` runs the same checks before it sends anything."""

import pytest

import finetuner
from finetuner import cli
from finetuner_core.config import parse_fit_config
from finetuner_protocol.backbones import ModelNotAvailableError
from finetuner_protocol.data.checks import check_fit_splits
from finetuner_protocol.data.errors import DataError
from finetuner_protocol.data.records import LabeledItem

TRAIN = "text,label\nI lost my card,lost\nmy card is gone,lost\nwhere is my card,came\nis it here,came\n"
ONE_CLASS = "text,label\nI lost my card,lost\nmy card is gone,lost\n"


@pytest.fixture
def files(tmp_path):
    (tmp_path / "train.csv").write_text(TRAIN)
    (tmp_path / "eval.csv").write_text(ONE_CLASS)
    return tmp_path


@pytest.fixture(autouse=True)
def no_login(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    for name in ("FINETUNER_HOST", "FINETUNER_TOKEN", "FINETUNER_DEBUG"):
        monkeypatch.delenv(name, raising=False)


def test_an_unknown_model_is_refused_by_check_data_and_the_check_command(files, capsys):
    with pytest.raises(ModelNotAvailableError, match="model 'no-such-model' is not available offline"):
        finetuner.check_data(str(files / "train.csv"), model="no-such-model")
    code = cli.main(["check", "--train-data", str(files / "train.csv"), "--model", "no-such-model"])
    out, err = capsys.readouterr()
    assert code == cli.REFUSED and out == "" and "valid" not in err
    assert err.startswith("error: model 'no-such-model' is not available offline") and len(err.splitlines()) == 1


def test_an_eval_file_with_one_class_is_named_as_eval_data(files):
    expected = "eval data rejected: 1 problem\n  eval: needs at least 2 classes to build negatives, found 1 ('lost')"
    with pytest.raises(DataError) as refused:
        finetuner.check_data(str(files / "train.csv"), str(files / "eval.csv"))
    assert str(refused.value) == expected
    with pytest.raises(finetuner.NotLoggedInError):  # fit has the Flow resolve the model before it reads data
        finetuner.fit(train_data=str(files / "train.csv"), eval_data=str(files / "missing.csv"))


def test_eval_ks_beyond_the_eval_data_are_refused_with_the_largest_k_allowed(files):
    with pytest.raises(DataError) as refused:
        finetuner.check_data(str(files / "train.csv"), str(files / "train.csv"), eval_ks=[1, 50])
    assert str(refused.value).splitlines() == [
        "eval data rejected: 1 problem",
        "  eval: k=50 is larger than the 3 items a query can retrieve (4 index items, the query itself left out); "
        "use smaller eval_ks or more evaluation data",
    ]
    assert (
        finetuner.check_data(str(files / "train.csv"), str(files / "train.csv"), eval_ks=[1, 3])["eval"]["items"] == 4
    )


def test_check_data_refuses_data_for_the_wrong_model_without_a_flow(files):
    with pytest.raises(DataError, match="names no image"):
        finetuner.check_data(str(files / "train.csv"), model="efficientnet-lite0")


def test_a_name_only_a_flow_can_resolve_is_refused_without_one_saying_so(files):
    with pytest.raises(ModelNotAvailableError, match="only a Flow resolves other names .* or set model_modality"):
        finetuner.check_data(str(files / "train.csv"), model="BAAI/bge-small-en-v1.5")
    described = finetuner.check_data(str(files / "train.csv"), model="BAAI/bge-small-en-v1.5", model_modality="text")
    assert described["train"]["items"] == 4


def test_stored_eval_datasets_are_checked_as_eval_data():
    train = [LabeledItem(f"t{i}", f"c{i % 2}") for i in range(4)]
    one_class = [LabeledItem(f"e{i}", "only") for i in range(3)]
    with pytest.raises(DataError, match=r"^eval data rejected: 1 problem\n  eval: needs at least 2 classes"):
        check_fit_splits({"train": train, "eval": one_class}, parse_fit_config({"eval_ks": [1]}))
