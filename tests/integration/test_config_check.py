"""A fit's settings that only the service can check (an optimizer's options against its signature ...) are refused
before the client sends any data: the trainer's ``/config/check``, which ``finetuner.fit`` asks first."""

import csv

import pytest
from docarray import DocList

import finetuner
from conftest import banking77_slice
from finetuner.errors import ServerError
from finetuner_protocol import endpoints
from finetuner_protocol.answers import ConfigChecked, read_answer
from finetuner_protocol.settings import ConfigError
from finetuner_protocol.wire import FinetunerDoc, read_result
from integration.called import load

MISSPELT = {"optimizer_options": {"momentom": 0.9}}  # FitSettings takes any dict here: AdamW's signature refuses it


@pytest.fixture(scope="module")
def trainer(workspace):
    return load("trainer", workspace_dir=str(workspace))


class CalledTrainer:
    """The client's Transport with the trainer's endpoints called in this process; a refused request reaches the
    client as jina hands it on: the reason and the name of the exception. Records the endpoints called."""

    host = "in-process"

    def __init__(self, trainer, token: str):
        self.trainer, self.token, self.called = trainer, token, []

    def result(self, endpoint: str, docs=None, **parameters):
        self.called.append(endpoint)
        method = getattr(self.trainer, self.trainer.executor.requests[endpoint].fn.__name__)
        try:
            answer = method(docs=DocList[FinetunerDoc](docs or []), parameters={**parameters, "token": self.token})
        except Exception as exc:
            raise ServerError(str(exc), executor="trainer", kind=type(exc).__name__) from None
        return read_result(answer)


def test_the_trainer_answers_a_fits_settings_with_every_default_or_refuses_them(trainer, token):
    def check(config: dict):
        docs = DocList[FinetunerDoc]()
        return trainer.check_config(docs=docs, parameters={"token": token, "config": config})

    checked = read_answer(ConfigChecked, check({"device": "cpu", "max_steps": 3}))
    assert (checked.config["max_steps"], checked.config["optimizer"], checked.config["device"]) == (3, "AdamW", "cpu")
    assert "distributed" not in checked.config, "the operator's settings stay with the operator"
    with pytest.raises(ConfigError, match=r"optimizer_options: AdamW has no option\(s\) momentom"):
        check(MISSPELT)
    with pytest.raises(PermissionError, match="invalid token"):
        trainer.check_config(docs=DocList[FinetunerDoc](), parameters={"token": "ft_wrong", "config": {}})


def test_fit_refuses_a_setting_only_the_service_checks_before_it_uploads_anything(
    trainer, token, data_dir, tmp_path, monkeypatch
):
    path = tmp_path / "train.csv"
    with open(path, "w", newline="", encoding="utf-8") as file:
        csv.writer(file).writerows([("text", "label"), *banking77_slice(data_dir, "train", classes=4, per_class=8)])
    transport = CalledTrainer(trainer, token)
    monkeypatch.setitem(finetuner.api._session, "transport", transport)
    with pytest.raises(ConfigError, match=r"optimizer_options: AdamW has no option\(s\) momentom"):
        finetuner.fit(train_data=str(path), device="cpu", quiet=True, **MISSPELT)
    assert transport.called == [endpoints.CONFIG_CHECK], "refused before any upload"
    assert transport.result(endpoints.DATASETS_LIST)["datasets"] == []
