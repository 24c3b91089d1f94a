"""Every endpoint refuses parameters of the wrong type or out of bounds with one line naming the parameter, and
refuses models, weights and image paths on the server outside the operator's model roots. The endpoints the
executors serve are the protocol's, each with its parameters and answer model, and the answers read back as typed."""

import pytest
from docarray import DocList
from pydantic import ValidationError

from conftest import user_token
from finetuner_core.evaluation import EvaluationError
from finetuner_protocol import answers, endpoints
from finetuner_protocol.answers import ANSWERS, read_answer
from finetuner_protocol.backbones import ModelSourceError
from finetuner_protocol.params import PARAMS
from finetuner_protocol.runs import RunStatus
from finetuner_protocol.wire import FinetunerDoc
from integration.called import load

RUN = {"run_id": "0" * 16}
BAD = {
    "/datasets/begin": [
        ({"dataset": "abc"}, "parameter dataset: must be a dict"),
        ({"dataset": {"upload_key": "k", "batches": 10**7}}, "parameter dataset.batches: .* 100000"),
        ({"dataset": {"upload_key": "k", "batches": -1}}, "parameter dataset.batches: .* 1"),
        ({"dataset": {"upload_key": "k", "batches": 2.5}}, "parameter dataset.batches: must be an integer"),
        ({"dataset": {"upload_key": "k", "batches": "3"}}, "parameter dataset.batches: must be an integer"),
        ({"dataset": {"batches": 3}}, "parameter dataset.upload_key: required"),
        ({"dataset": {"upload_key": "k", "batches": 3, "extra": 1}}, "parameter dataset.extra: unknown"),
    ],
    "/datasets/upload": [
        ({"dataset": {"id": "x", "index": -1}}, "parameter dataset.index"),
        ({"dataset": {"id": "x", "index": 0}, "config": "abc"}, "parameter config: .*dict"),
        ({"dataset": {"id": ["x"], "index": 0}}, "parameter dataset.id"),
    ],
    "/datasets/commit": [({"dataset": None}, "parameter dataset"), ({"dataset": {"id": 3}}, "parameter dataset.id")],
    "/datasets/delete": [({}, "parameter dataset_id: required"), ({"dataset_id": {"a": 1}}, "parameter dataset_id")],
    "/fit": [
        ({"config": "abc"}, "parameter config: .*dict"),
        ({"config": {}, "train_dataset": 5}, "parameter train_dataset"),
        ({"config": {}, "experiment": ["a"]}, "parameter experiment"),
        ({"config": {}, "epochs": 3}, "parameter epochs: unknown parameter"),
    ],
    "/runs/status": [({}, "parameter run_id: required"), ({"run_id": 7}, "parameter run_id")],
    "/runs/logs": [({**RUN, "since": -1}, "parameter since"), ({**RUN, "since": "all"}, "parameter since")],
    "/runs/list": [
        ({"limit": -1}, "parameter limit: .* 1"),
        ({"limit": 0}, "parameter limit"),
        ({"limit": 10**6}, "parameter limit: .* 500"),
        ({"offset": -5}, "parameter offset"),
        ({"experiment": {"a": 1}}, "parameter experiment"),
    ],
    "/runs/artifact": [
        ({**RUN, "path": "config.json", "offset": -1}, "parameter offset"),
        ({**RUN, "path": 3}, "parameter path"),
        ({**RUN, "path": ""}, "parameter path"),
    ],
    "/runs/cancel": [({"run_id": None}, "parameter run_id")],
    "/experiments/create": [({"name": {"x": 1}}, "parameter name"), ({}, "parameter name: required")],
    "/experiments/delete": [({"name": ""}, "parameter name")],
}
EVALUATE_BAD = [
    ({"config": "abc"}, "parameter config: .*dict"),
    ({"evaluation": "flat"}, "parameter evaluation: .*dict"),
    ({"query_model": "abc"}, "parameter query_model: .*dict"),
    ({"run_id": 5}, "parameter run_id"),
    ({"models": "all-MiniLM-L6-v2"}, "parameter models"),
]


@pytest.fixture(scope="module")
def trainer(workspace):
    trainer = load("trainer", workspace_dir=str(workspace))
    yield trainer
    trainer.close()


@pytest.fixture(scope="module")
def evaluator(workspace):
    return load("evaluator", workspace_dir=str(workspace))


@pytest.fixture(scope="module")
def validator(workspace):
    return load("validator", workspace_dir=str(workspace))


def endpoint(executor, name: str):
    """The method serving ``name`` on ``executor`` (jina's table of endpoints)."""
    return getattr(executor, executor.executor.requests[name].fn.__name__)


def assert_nothing_stored(trainer, token: str) -> None:
    assert trainer.store.count(None) == 0 and not [p for p in trainer.store.root.iterdir() if p.is_dir()]
    assert trainer.datasets.list(trainer.home.users.authenticate(token).id) == []


def text_docs(count: int = 8) -> DocList[FinetunerDoc]:
    return DocList[FinetunerDoc](FinetunerDoc(text=f"text {i}", finetuner_label=str(i % 2)) for i in range(count))


@pytest.mark.parametrize("name", sorted(BAD))
def test_the_trainer_refuses_bad_parameters_naming_them(trainer, token, name):
    for parameters, message in BAD[name]:
        with pytest.raises(ValueError, match=message):
            endpoint(trainer, name)(
                docs=text_docs() if name == "/fit" else None, parameters={"token": token, **parameters}
            )
    assert_nothing_stored(trainer, token)


def test_the_validator_and_evaluator_refuse_bad_parameters_naming_them(validator, evaluator, token):
    docs = DocList[FinetunerDoc](FinetunerDoc(split="eval", text=f"t{i}", finetuner_label=str(i % 2)) for i in range(6))
    for parameters, message in EVALUATE_BAD:
        for executor in (validator, evaluator):
            with pytest.raises(ValueError, match=message):
                executor.evaluate(docs=docs, parameters={"token": token, **parameters})
    with pytest.raises(ValueError, match="parameter search: .*dict"):
        evaluator.search(docs=docs, parameters={"token": token, "search": "k=3"})
    with pytest.raises(ValueError, match="parameter dataset.index"):
        validator.upload(docs=text_docs(), parameters={"token": token, "dataset": {"id": "x", "index": "0"}})


def test_a_server_path_is_refused_as_model_weights_or_image(trainer, validator, evaluator, token, workspace):
    other = user_token(workspace, "mallory")
    refused = [
        ({"model": "/etc/passwd"}, "model '/etc/passwd' names a path on the server outside the operator's model "),
        ({"model": "/etc"}, "outside the operator's model roots \\(none set\\)"),
        ({"model": str(workspace / "runs")}, "names a path on the server"),
        ({"model": "../../etc"}, "names a path on the server"),
        ({"model": "~/.ssh"}, "names a path on the server"),
        ({"model": "timm/resnet50", "model_options": {"weights": "/etc/passwd"}}, "model_options.weights '/etc/pa"),
    ]
    calls = [(trainer.fit, "config"), (validator.fit, "config"), (evaluator.evaluate, "config")]
    calls += [(evaluator.evaluate, "models"), (evaluator.search, "models")]
    for config, message in refused:
        for call, key in calls:
            value = [config] if key == "models" else config
            with pytest.raises(ModelSourceError, match=message):
                call(docs=text_docs(), parameters={"token": other, key: value})
    image = [FinetunerDoc(role="query", uri="/etc/hostname"), FinetunerDoc(role="index", text="x", name="d0")]
    with pytest.raises(EvaluationError, match="the server reads no paths"):
        evaluator.search(docs=DocList[FinetunerDoc](image), parameters={"token": other})
    assert_nothing_stored(trainer, token)


def test_models_under_the_operators_roots_are_allowed_and_no_link_leads_out(tmp_path):
    root = tmp_path / "models"
    (root / "minilm").mkdir(parents=True)
    (root / "outside").symlink_to("/etc")
    validator = load("validator", workspace_dir=str(tmp_path), model_roots=[str(root)])
    token = user_token(tmp_path, "alice")
    for model in (str(root / "outside"), str(root / "minilm" / ".." / ".." / "elsewhere")):
        with pytest.raises(ModelSourceError, match=f"model roots \\({root}\\)"):
            validator.fit(docs=text_docs(), parameters={"token": token, "config": {"model": model}})
    accepted = validator.fit(docs=text_docs(), parameters={"token": token, "config": {"model": str(root / "minilm")}})
    assert len(accepted) == len(text_docs())


def test_a_fit_may_not_name_other_machines_and_processes_are_bounded(trainer, validator, token):
    for distributed, message in [
        ({"master_addr": "10.1.2.3"}, "distributed.master_addr: settings that name other machines"),
        ({"nnodes": 2, "master_addr": "10.0.0.1", "master_port": 29500}, "distributed.nnodes"),
        ({"rdzv_backend": "c10d", "rdzv_endpoint": "evil.example:29400"}, "distributed.rdzv_backend"),
        ({"num_processes": 100000}, "num_processes"),
        ({"num_processes": 64}, "distributed.num_processes \\(64\\) exceeds this trainer's"),
    ]:
        config = {"device": "cpu", "distributed": distributed}
        with pytest.raises(ValueError, match=message):
            trainer.fit(docs=text_docs(), parameters={"token": token, "config": config})
    with pytest.raises(ValueError, match="distributed.master_addr"):
        validator.fit(docs=text_docs(), parameters={"token": token, "config": {"distributed": {"master_addr": "h"}}})
    assert_nothing_stored(trainer, token)


def test_the_executors_serve_the_protocols_endpoints_each_with_its_parameters_and_answer(trainer, validator, evaluator):
    served = {name: set() for name in endpoints.ENDPOINTS}
    for role, executor in (("trainer", trainer), ("validator", validator), ("evaluator", evaluator)):
        for name in executor.executor.requests:
            if name.startswith("/") and name != "/default":  # not jina's own, nor the passthrough of the rest
                assert name in served, f"the {role} serves {name}, an endpoint the protocol does not name"
                served[name].add(role)
    assert not [name for name, roles in served.items() if not roles], "every endpoint is served"
    assert set(PARAMS) == set(ANSWERS) == set(endpoints.ENDPOINTS)
    assert len(set(endpoints.ENDPOINTS)) == len(endpoints.ENDPOINTS), "each endpoint named once"


def test_the_trainers_answers_read_back_as_their_models(trainer, token):
    def call(path: str, /, **parameters):
        docs = endpoint(trainer, path)(docs=DocList[FinetunerDoc](), parameters={"token": token, **parameters})
        return read_answer(ANSWERS[path], docs)

    created = call(endpoints.EXPERIMENTS_CREATE, name="typed")
    assert isinstance(created, answers.ExperimentRecord) and (created.name, created.runs) == ("typed", 0)
    assert [e.name for e in call(endpoints.EXPERIMENTS_LIST).experiments] == ["typed"]
    page = call(endpoints.RUNS_LIST, limit=5)
    assert (page.runs, page.total, page.offset) == ([], 0, 0)
    assert call(endpoints.DATASETS_LIST).datasets == []
    assert call(endpoints.EXPERIMENTS_DELETE, name="typed") == answers.ExperimentDeleted(name="typed", deleted=True)
    record = {**RUN, "name": None, "experiment": "e", "status": "DONE", "created_at": 1.0, "updated_at": 1.0}
    with pytest.raises(ValidationError) as refused:
        answers.RunRecord.model_validate({**record, "started_at": None, "finished_at": None})
    assert [error["loc"] for error in refused.value.errors()] == [("status",)]
    assert RunStatus("CANCELLED").is_final and not RunStatus.STARTED.is_final
