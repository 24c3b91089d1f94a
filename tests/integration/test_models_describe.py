"""The trainer resolves a model before any data is sent: ``/models/describe`` says what a name stands for and where
its weights would come from; ``/config/check`` refuses a model it cannot use and tells the client what the model
takes; ``fit``, ``check_data`` and ``evaluate`` ask it first and send nothing else when it refuses."""

import json

import pytest
from unit.test_resolve import COMMIT, fill_cache

import finetuner
from finetuner import evaluation
from finetuner.errors import ServerError
from finetuner_protocol import endpoints
from finetuner_protocol.answers import ModelsDescribed
from finetuner_protocol.backbones import (
    FINETUNER_ALIASES,
    WHERE,
    ModelNotAvailableError,
    list_backbones,
    minilm_path,
)
from finetuner_protocol.params import DescribeModelsParams
from integration.called import load
from integration.test_config_check import CalledTrainer

TRAIN = "text,label\nI lost my card,lost\nmy card is gone,lost\nwhere is my card,came\nis it here,came\n"


@pytest.fixture(scope="module")
def hf_home(tmp_path_factory):
    """An HF_HOME whose hub cache holds the packaged MiniLM as ``acme/minilm-copy`` and a CLIP config as
    ``acme/some-clip``."""
    home = tmp_path_factory.mktemp("hf_home")
    fill_cache(home / "hub", "acme/minilm-copy", minilm_path())
    clip = tmp_path_factory.mktemp("clip")
    (clip / "config.json").write_text(json.dumps({"model_type": "clip"}))
    fill_cache(home / "hub", "acme/some-clip", clip)
    return home


@pytest.fixture
def offline(hf_home, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(hf_home))
    for name in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "FINETUNER_HOST", "FINETUNER_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="module")
def trainer(workspace):
    return load("trainer", workspace_dir=str(workspace))


@pytest.fixture
def service(trainer, token, offline, monkeypatch) -> CalledTrainer:
    """The client logged in to the trainer (called in this process); records the endpoints called."""
    transport = CalledTrainer(trainer, token)
    monkeypatch.setitem(finetuner.api._session, "transport", transport)
    return transport


def describe(service: CalledTrainer, *names: str, **options) -> dict[str, dict]:
    rows = service.result(endpoints.MODELS_DESCRIBE, names=list(names), model_options=options)["models"]
    ModelsDescribed.model_validate({"models": rows})
    return {row["name"]: row for row in rows}


def test_each_name_is_described_with_where_its_weights_would_come_from(service):
    rows = describe(service, "all-MiniLM-L6-v2", "acme/minilm-copy", "acme/absent", "bert-base-en", "/etc", "mlp")
    packaged = rows["all-MiniLM-L6-v2"]
    assert (packaged["where"], packaged["family"], packaged["modality"], packaged["output_dim"]) == (
        "packaged",
        "sentence-transformers",
        "text",
        384,
    )
    assert packaged["parameters"] == "22.7M" and packaged["revision"].startswith("sha256:")
    cached = rows["acme/minilm-copy"]
    assert (cached["where"], cached["revision"], cached["modality"], cached["output_dim"]) == (
        "cached",
        COMMIT,
        "text",
        384,
    )
    absent = rows["acme/absent"]
    assert absent["where"] == "unavailable offline" and "unset HF_HUB_OFFLINE" in absent["detail"]
    alias = rows["bert-base-en"]
    assert (alias["stands_for"], alias["where"], alias["output_dim"]) == ("bert-base-cased", "unavailable offline", 768)
    assert rows["/etc"]["where"] == "not allowed" and "model roots" in rows["/etc"]["detail"]
    assert rows["mlp"]["where"] == "random init" and rows["mlp"]["modality"] == "vector"
    assert {row["where"] for row in rows.values()} <= set(WHERE)


def test_the_catalogue_lists_every_backbone_and_finetuner_name_and_so_does_describe_models(service, capsys):
    rows = service.result(endpoints.MODELS_DESCRIBE)["models"]
    names = [row["name"] for row in rows]
    assert names == [spec.name for spec in list_backbones()] + sorted(
        FINETUNER_ALIASES, key=lambda n: (FINETUNER_ALIASES[n].family, n)
    )
    assert all(row["where"] in WHERE for row in rows)
    shown = finetuner.describe_models(aliases=True)
    assert [row["name"] for row in shown] == names and shown[0]["where"] is not None
    printed = capsys.readouterr().out
    assert "packaged" in printed and "unavailable offline" in printed and "22.7M" in printed


def test_a_model_the_trainer_cannot_use_is_refused_before_any_data_is_read_or_sent(service, tmp_path):
    path = tmp_path / "train.csv"
    path.write_text(TRAIN)
    with pytest.raises(ModelNotAvailableError, match=r"^model 'acme/absent' is not available offline: .*unset HF_HUB"):
        finetuner.fit("acme/absent", train_data=str(tmp_path / "not-there.csv"), quiet=True)
    with pytest.raises(ModelNotAvailableError, match="names a path on the server outside"):
        finetuner.fit("/etc", train_data=str(path), quiet=True)
    with pytest.raises(ModelNotAvailableError, match="'acme/absent' is not available offline"):
        finetuner.check_data(str(path), model="acme/absent")  # a name the catalogue cannot place: the Flow's
    with pytest.raises(ModelNotAvailableError, match="'acme/absent' is not available offline"):
        evaluation.evaluate(service, str(path), "acme/absent")
    assert set(service.called) == {endpoints.CONFIG_CHECK, endpoints.MODELS_DESCRIBE}, "nothing else was asked"


def test_the_flow_says_what_a_hugging_face_id_takes_and_the_data_is_checked_for_it(service, tmp_path):
    path = tmp_path / "train.csv"
    path.write_text(TRAIN)
    assert finetuner.check_data(str(path), model="acme/minilm-copy")["train"] == {
        "items": 4,
        "shape": "text",
        "classes": 2,
    }
    checked = service.result(endpoints.CONFIG_CHECK, config={"model": "acme/minilm-copy"})["config"]
    assert checked["model_modality"] == "text" and checked["loss"] is None
    clip = service.result(endpoints.CONFIG_CHECK, config={"model": "acme/some-clip"})
    assert clip["config"]["model_modality"] == "text-image"
    with pytest.raises(ServerError, match="model_modality: 'acme/some-clip' takes text-image, not text"):
        service.result(endpoints.CONFIG_CHECK, config={"model": "acme/some-clip", "model_modality": "text"})
    with pytest.raises(Exception, match="names no image|image"):  # text,label rows for a CLIP model: refused
        finetuner.check_data(str(path), model="acme/some-clip")


def test_a_request_names_at_most_a_hundred_models_and_no_empty_name():
    with pytest.raises(ValueError):
        DescribeModelsParams.model_validate({"names": ["x"] * 101})
    with pytest.raises(ValueError):
        DescribeModelsParams.model_validate({"names": [""]})
