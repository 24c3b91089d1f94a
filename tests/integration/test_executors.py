"""The executors loaded from their config.yml and called directly, without a Flow."""

import json
import time

import pytest
from docarray import DocList

from conftest import banking77_slice, user_token
from finetuner_core.config import ConfigError
from finetuner_core.models import ModelNotAvailableError
from finetuner_core.runs import RunNotFoundError
from finetuner_protocol.data import DataError
from finetuner_protocol.wire import FinetunerDoc, read_result
from integration.called import load

CONFIG = {"batch_size": 16, "max_steps": 2, "eval_ks": [1, 5], "device": "cpu"}


def csv_doc(rows, split="train", name="train.csv"):
    body = "text,label\n" + "".join(f'"{text}",{label}\n' for text, label in rows)
    return FinetunerDoc(kind="csv", split=split, name=name, blob=body.encode())


@pytest.fixture(scope="module")
def train_rows(data_dir):
    return banking77_slice(data_dir, "train", classes=4, per_class=8)


@pytest.fixture(scope="module")
def eval_rows(data_dir):
    return banking77_slice(data_dir, "test", classes=4, per_class=5)


def test_validator_turns_csv_files_into_validated_items(tmp_path, train_rows):
    token = user_token(tmp_path, "alice")
    validator = load("validator", workspace_dir=str(tmp_path))
    docs = validator.fit(
        docs=DocList[FinetunerDoc]([csv_doc(train_rows)]), parameters={"token": token, "config": CONFIG}
    )
    assert len(docs) == len(train_rows)
    assert (docs[0].kind, docs[0].split, docs[0].text, docs[0].finetuner_label) == (
        "item",
        "train",
        *train_rows[0],
    )


def test_validator_refuses_bad_rows_and_bad_config(tmp_path, train_rows):
    token = user_token(tmp_path, "alice")
    validator = load("validator", workspace_dir=str(tmp_path))
    bad = csv_doc([*train_rows, ("   ", "card_arrival")])
    with pytest.raises(DataError, match=f"train.csv row {len(train_rows) + 2}: text is empty"):
        validator.fit(docs=DocList[FinetunerDoc]([bad]), parameters={"token": token, "config": CONFIG})
    with pytest.raises(ConfigError, match="loss: unknown loss"):
        validator.fit(
            docs=DocList[FinetunerDoc]([csv_doc(train_rows)]), parameters={"token": token, "config": {"loss": "x"}}
        )


def test_trainer_answers_at_once_and_trains_in_the_background(tmp_path, train_rows, eval_rows):
    token = user_token(tmp_path, "alice")
    trainer = load("trainer", workspace_dir=str(tmp_path))
    docs = [FinetunerDoc(text=t, finetuner_label=lab) for t, lab in train_rows]
    docs += [FinetunerDoc(split="eval", text=t, finetuner_label=lab) for t, lab in eval_rows]
    answer = read_result(trainer.fit(docs=DocList[FinetunerDoc](docs), parameters={"token": token, "config": CONFIG}))
    assert answer["status"] in {"QUEUED", "STARTED"}
    run_id = answer["run_id"]
    status = _wait(trainer, run_id, token)
    assert status == "FINISHED", read_result(trainer.logs(docs=None, parameters={"token": token, "run_id": run_id}))
    metrics = read_result(trainer.metrics(docs=None, parameters={"token": token, "run_id": run_id}))
    assert set(metrics) == {"before", "after"}
    files = read_result(trainer.artifact(docs=None, parameters={"token": token, "run_id": run_id}))["files"]
    config_file = next(f for f in files if f["path"] == "config.json")
    chunk = trainer.artifact(
        docs=None, parameters={"token": token, "run_id": run_id, "path": "config.json", "offset": 0}
    )
    assert len(chunk[0].blob) == config_file["size"] and json.loads(chunk[0].blob)
    runs = read_result(trainer.list_runs(docs=None, parameters={"token": token}))["runs"]
    assert [r["run_id"] for r in runs] == [run_id]

    evaluator = load("evaluator", workspace_dir=str(tmp_path))
    eval_docs = DocList[FinetunerDoc](d for d in docs if d.split == "eval")
    by_run = read_result(
        evaluator.evaluate(docs=eval_docs, parameters={"token": token, "run_id": run_id, "config": CONFIG})
    )
    assert by_run["metrics"]["precision@1"] == pytest.approx(metrics["after"]["precision@1"])
    base = read_result(evaluator.evaluate(docs=eval_docs, parameters={"token": token, "config": CONFIG}))
    assert base["metrics"]["precision@1"] == pytest.approx(metrics["before"]["precision@1"])
    trainer.close()


def test_trainer_refuses_unavailable_models_and_unknown_runs(tmp_path, train_rows):
    token = user_token(tmp_path, "alice")
    trainer = load("trainer", workspace_dir=str(tmp_path))
    docs = DocList[FinetunerDoc](FinetunerDoc(text=t, finetuner_label=lab) for t, lab in train_rows)
    with pytest.raises(ModelNotAvailableError, match="not available offline"):
        trainer.fit(docs=docs, parameters={"token": token, "config": {"model": "org/not-here"}})
    assert not [p for p in (tmp_path / "runs").iterdir() if p.is_dir()], "nothing is stored for a refused fit"
    with pytest.raises(RunNotFoundError):
        trainer.status(docs=None, parameters={"token": token, "run_id": "0" * 16})
    trainer.close()


def _wait(trainer, run_id, token, timeout_s=300):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        status = read_result(trainer.status(docs=None, parameters={"token": token, "run_id": run_id}))["status"]
        if status in {"FINISHED", "FAILED", "CANCELLED"}:
            return status
        time.sleep(0.5)
    raise TimeoutError(run_id)
