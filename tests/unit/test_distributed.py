"""Data-parallel training: two gloo processes on the CPU train as one process does on the same global batch.

Tolerances, for float32 sums taken in another order (a shard's gradient, then DDP's all-reduce, against one
sum over the batch), which agree to rounding, not bit for bit: gathered embeddings to a relative 1e-5; each
gradient tensor to 1e-5 of its norm; losses to a relative 1e-4; each weight tensor after a few AdamW steps to
1e-3 of how far training moved it (AdamW divides each element's step by that element's gradient size, so where
a gradient is close to AdamW's eps, rounding noise becomes a visible part of a step); the trained models'
embeddings to a relative 1e-4. Dropout is switched off (a shard draws other masks than the whole batch), and
training runs in fp32.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from conftest import banking77_slice, cifar10_files, unused_port
from finetuner_core.callbacks.base import Callback
from finetuner_core.config import ConfigError, FitConfig, parse_fit_config
from finetuner_core.models import build_model
from finetuner_core.models.build import load_model
from finetuner_core.runs import RunStatus, RunStore
from finetuner_core.runs.artifact import read_manifest
from finetuner_core.runs.context import RunContext
from finetuner_core.runs.distributed import WORKERS_LOG, first_error, run_folder, torchrun_command
from finetuner_core.runs.execute import execute_run
from finetuner_core.training.distributed import (
    LEAD_NODE,
    DistributedModel,
    Ranks,
    SharedStop,
    ranks_from_env,
    shard_bounds,
    shared_batch_size,
    start_process_group,
    stop_process_group,
)
from finetuner_core.training.distributed_options import DistributedOptions
from finetuner_core.training.loop import train
from finetuner_core.training.optimizers import build_optimizer
from finetuner_core.training.tasks import make_task
from finetuner_protocol.data import LabeledItem
from finetuner_protocol.data.images import load_image
from finetuner_protocol.data.records import PairItem

WORLD = 2
MLP_OPTIONS = {"input_dim": 8, "hidden_dims": [16], "output_dim": 8}
EXACT = {"device": "cpu", "precision": "fp32", "warmup_ratio": 0.0, "log_every": 1}
SHIFT_INVARIANT = "attention.self.key.bias"


# --- the cases: a model, its data, a config ---------------------------------------------------------------------


def vectors(n: int = 64, classes: int = 8) -> list[LabeledItem]:
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(classes, 8))
    return [
        LabeledItem((centres[i % classes] + 0.5 * rng.normal(size=8)).tolist(), f"c{i % classes}") for i in range(n)
    ]


def banking77_items(data_dir: Path) -> list[LabeledItem]:
    return [LabeledItem(t, label) for t, label in banking77_slice(data_dir, "train", classes=16, per_class=4)]


def cifar_pairs(data_dir: Path) -> list[PairItem]:
    files = cifar10_files(data_dir, classes=4, per_class=4)
    return [
        PairItem(f"a photo of a {label}, number {i}", load_image(str(path), f"file {path.name}"))
        for i, (path, label) in enumerate(files)
    ]


@dataclass(frozen=True)
class Case:
    model: str
    options: dict
    config: dict
    data: str  # vectors | banking77 | cifar-pairs
    gradients: bool = False  # also compare the gathered embeddings and the gradient of one batch


CASES = {
    "mlp-triplet": Case(
        "mlp",
        MLP_OPTIONS,
        dict(model="mlp", model_options=MLP_OPTIONS, batch_size=16, learning_rate=1e-2, max_steps=4),
        "vectors",
        gradients=True,
    ),
    "mlp-infonce": Case(  # 15 items a batch: shards of 7 and 8
        "mlp",
        MLP_OPTIONS,
        dict(
            model="mlp",
            model_options=MLP_OPTIONS,
            loss="InfoNCELoss",
            sampler="random",
            batch_size=15,
            learning_rate=1e-2,
            max_steps=4,
        ),
        "vectors",
    ),
    "minilm-triplet": Case(  # the word embeddings stay fixed: the six transformer layers train
        "all-MiniLM-L6-v2",
        {"freeze": ["model.embeddings"]},
        dict(model_options={"freeze": ["model.embeddings"]}, batch_size=16, learning_rate=1e-4, max_steps=2),
        "banking77",
    ),
    "clip-pairs": Case(  # two embeddings a step (images, texts) and the logit scale outside the forward
        "lit-minilm-efficientnet-lite0",
        {"image_size": 64},
        dict(
            model="lit-minilm-efficientnet-lite0",
            model_options={"image_size": 64},
            sampler="random",
            batch_size=8,
            learning_rate=1e-3,
            max_steps=2,
        ),
        "cifar-pairs",
        gradients=True,
    ),
}


def case_data(case: Case, data_dir: Path) -> list:
    return {"vectors": vectors, "banking77": banking77_items, "cifar-pairs": cifar_pairs}[case.data](
        *([] if case.data == "vectors" else [data_dir])
    )


def fresh_model(case: Case) -> nn.Module:
    """The case's model, the same on every rank, without dropout."""
    torch.manual_seed(0)
    model = build_model(case.model, case.options, "cpu")
    for module in model.modules():
        if isinstance(module, nn.Dropout):
            module.p = 0.0
    return model


class Losses(Callback):
    def __init__(self):
        self.values: list[float] = []

    def on_step_end(self, state):
        self.values.append(state.loss)


def train_case(case: Case, records: list, ranks: Ranks | None = None) -> dict:
    """Train the case for its steps (in one process, or as one of ``ranks``); the losses and the final weights."""
    model = fresh_model(case)
    losses = Losses()
    callbacks = [losses] if ranks is None else [losses, SharedStop(ranks.lead_rank)]
    train(model if ranks is None else DistributedModel(model), records, FitConfig(**EXACT, **case.config), callbacks)
    return {"losses": losses.values, "weights": {k: v.detach().clone() for k, v in model.state_dict().items()}}


def gradient_case(case: Case, records: list, ranks: Ranks | None = None) -> dict:
    """The embeddings of a 7-item and a 1-item list (uneven shards, an empty one) and the gradient of one batch."""
    model = fresh_model(case)
    view = model if ranks is None else DistributedModel(model)
    config = FitConfig(**EXACT, **case.config)
    task = make_task(records, config, view)
    pairs = isinstance(records[0], PairItem)
    contents = [r.image if pairs else r.content for r in records]
    embed = view.embed_image if pairs else view.embed
    view.train()  # as the loop trains: BatchNorm statistics fixed (freeze_batchnorm), the rest in training mode
    with torch.no_grad():
        embeddings = [embed(contents[:7]), embed(contents[:1])]
    task.backward(view, next(iter(task.sampler)), 1.0)
    grads = {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}
    return {"embeddings": embeddings, "grads": grads}


class StopOnLead(Callback):
    """The lead alone decides to stop after ``step`` (as cancellation or early stopping do)."""

    def __init__(self, lead: bool, step: int):
        self.lead, self.step = lead, step

    def on_step_end(self, state):
        if self.lead and state.step == self.step:
            state.request_stop("stopped by the lead")


def _two_process_worker(rank: int, port: int, payload: dict[str, list], out: str) -> None:
    # each process plays a node of its own (local rank 0), and the second one started the run: rank 1 leads
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(WORLD))
    os.environ.update(LOCAL_RANK="0", **({LEAD_NODE: "1"} if rank == 1 else {}))
    torch.set_num_threads(1)
    ranks = start_process_group("gloo", "cpu")
    try:
        results = {"lead": ranks.lead_rank}
        for name, records in payload.items():
            case = CASES[name]
            results[name] = {"train": train_case(case, records, ranks)}
            if case.gradients:
                results[name]["gradients"] = gradient_case(case, records, ranks)
        searched = FitConfig(**EXACT, **{**CASES["mlp-triplet"].config, "batch_size": None})
        config, note = shared_batch_size(fresh_model(CASES["mlp-triplet"]), payload["mlp-triplet"], searched, ranks)
        results["batch size"] = {"size": config.batch_size, "per class": config.num_items_per_class, "note": note}
        model, stop = fresh_model(CASES["mlp-triplet"]), [StopOnLead(ranks.lead, 2), SharedStop(ranks.lead_rank)]
        state = train(
            DistributedModel(model), payload["mlp-triplet"], searched.model_copy(update={"batch_size": 16}), stop
        )
        results["stopped"] = (state.step, state.stop_reason)
        torch.save(results, Path(out) / f"{rank}.pt")
    finally:
        stop_process_group()


@pytest.fixture(scope="module")
def records(data_dir):
    return {name: case_data(case, data_dir) for name, case in CASES.items()}


@pytest.fixture(scope="module")
def two_processes(records, tmp_path_factory) -> list[dict]:
    """Every case trained (and its gradient taken) by two gloo processes, in one spawn: a result per rank."""
    out = tmp_path_factory.mktemp("two-processes")
    port = unused_port()
    mp.spawn(_two_process_worker, (port, records, str(out)), nprocs=WORLD)
    return [torch.load(out / f"{rank}.pt") for rank in range(WORLD)]


def relative_difference(a: torch.Tensor, b: torch.Tensor, scale: torch.Tensor) -> float:
    """``||a - b|| / ||scale||`` (0 when both are equal, however small ``scale``)."""
    difference = float(torch.linalg.vector_norm((a - b).double()))
    return difference / float(torch.linalg.vector_norm(scale.double())) if difference else 0.0


def assert_same_weights(one: dict, two: dict, start: dict) -> None:
    """The two runs' weights differ by at most 1e-3 of how far training moved them, over the whole model, and by at
    most 5e-3 in any one tensor; training moved them.

    Float rounding differs between the runs (each process embeds its own share of the batch, packed into rows of
    its own), and AdamW scales a parameter's step by its own gradient's size, so a tensor whose gradient is small
    (a bias) turns the same rounding into a larger share of its change than the model as a whole. Attention key
    biases are left out: softmax ignores a shift shared by every key, so their gradient is zero in exact
    arithmetic and AdamW turns its rounding noise into steps of up to the learning rate; the embeddings the two
    models give are compared instead (:func:`assert_same_embeddings`).
    """
    assert one.keys() == two.keys()
    moved = [name for name in one if not torch.equal(one[name], start[name])]
    assert moved, "training changed no weight"
    compared = [name for name in moved if not name.endswith(SHIFT_INVARIANT)]
    for name in compared:
        ratio = relative_difference(two[name], one[name], one[name] - start[name])
        assert ratio <= 5e-3, f"{name}: the runs differ by {ratio:.2e} of the training's change"
    flat = {run: torch.cat([weights[name].flatten() for name in compared]) for run, weights in (("1", one), ("2", two))}
    change = torch.cat([(one[name] - start[name]).flatten() for name in compared])
    ratio = relative_difference(flat["2"], flat["1"], change)
    assert ratio <= 1e-3, f"the runs differ by {ratio:.2e} of the training's change over the whole model"
    for name in set(one) - set(moved):
        assert torch.equal(two[name], start[name]), f"{name} is fixed in one process, not in two"


def assert_same_embeddings(case: Case, one: dict, two: dict, records: list) -> None:
    """The two trained models embed the first 8 items (texts and images of pairs) alike."""
    models = []
    for weights in (one, two):
        model = fresh_model(case)
        model.load_state_dict(weights)
        models.append(model.eval())
    pairs = isinstance(records[0], PairItem)
    with torch.no_grad():
        for column in ["text", "image"] if pairs else ["content"]:
            inputs = [getattr(r, column) for r in records[:8]]
            method = {"text": "embed_text", "image": "embed_image", "content": "embed"}[column]
            a, b = (getattr(model, method)(inputs) for model in models)
            torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-5)


# --- (a) the same loss curve and final weights as one process ------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("name", list(CASES))
def test_two_processes_train_as_one_on_the_same_global_batch(name, records, two_processes):
    case = CASES[name]
    one = train_case(case, records[name])
    start = fresh_model(case).state_dict()
    for rank in range(WORLD):
        two = two_processes[rank][name]["train"]
        assert len(two["losses"]) == len(one["losses"]) == case.config["max_steps"]
        np.testing.assert_allclose(two["losses"], one["losses"], rtol=1e-4, atol=1e-6)
        assert_same_weights(one["weights"], two["weights"], start)
    assert_same_embeddings(case, one["weights"], two_processes[0][name]["train"]["weights"], records[name])


# --- (b) the gathered embeddings and the gradient ---------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("name", [name for name, case in CASES.items() if case.gradients])
def test_every_rank_gathers_the_batch_embeddings_and_gets_the_one_process_gradient(name, records, two_processes):
    one = gradient_case(CASES[name], records[name])
    assert one["grads"], "the batch gave no gradient to compare"
    for rank in range(WORLD):
        two = two_processes[rank][name]["gradients"]
        for gathered, alone in zip(two["embeddings"], one["embeddings"], strict=True):
            assert gathered.shape == alone.shape
            torch.testing.assert_close(gathered, alone, rtol=1e-5, atol=1e-6)
        assert two["grads"].keys() == one["grads"].keys()
        for key, grad in one["grads"].items():
            ratio = relative_difference(two["grads"][key], grad, grad)
            assert ratio <= 1e-5, f"{key}: the gradients differ by {ratio:.2e} of their size"
    if name == "clip-pairs":  # used outside the DDP forward, reduced all the same
        assert "clip.logit_scale" in one["grads"]


@pytest.mark.slow
def test_the_lead_decides_to_stop_and_every_rank_stops_after_the_same_step(two_processes):
    assert [result["lead"] for result in two_processes] == [1, 1]
    assert [result["stopped"] for result in two_processes] == [(2, "stopped by the lead")] * WORLD


@pytest.mark.slow
def test_a_searched_batch_size_is_searched_on_the_lead_and_shared(two_processes):
    first, second = (two_processes[rank]["batch size"] for rank in range(WORLD))
    assert first["size"] == second["size"] and first["size"] % (WORLD * first["per class"]) == 0
    assert first["note"] == second["note"] and f"{first['size'] // WORLD} a process" in first["note"]


# --- (c) a stored run through the launcher ---------------------------------------------------------------------


def stored_run(tmp_path: Path, **fields) -> tuple[RunStore, str]:
    store = RunStore(tmp_path / "runs")
    config = FitConfig(
        **{**EXACT, **CASES["mlp-triplet"].config, "eval_ks": [1, 5], "log_every": 1, **fields},
    )
    items = vectors()
    return store, store.create(config, items, items[:24])


@pytest.mark.slow
def test_a_stored_run_on_two_processes_is_written_once_by_the_lead(tmp_path):
    store, run_id = stored_run(tmp_path, distributed={"num_processes": 2})
    execute_run(RunContext(store, run_id))
    status = store.status(run_id)
    assert status["status"] == RunStatus.FINISHED, status.get("error")
    messages = [entry["message"] for entry in store.logs(run_id)]
    assert len(messages) == len(set(messages)), "a message was logged more than once"
    assert sum(m.startswith("model saved") for m in messages) == 1
    assert any(m.startswith("training on 2 processes (gloo)") for m in messages)
    assert [m.split()[1] for m in messages if m.startswith("step ")] == [f"{i}/4" for i in range(1, 5)]
    assert set(store.metrics(run_id)) == {"before", "after"}
    files = {entry["path"] for entry in read_manifest(store.artifact_dir(run_id))}
    assert {"finetuner.json", "model.safetensors"} <= files
    assert "[rank1]" not in (store.path(run_id) / WORKERS_LOG).read_text()  # no traceback from rank 1
    # the same run in one process gives the same model
    alone_store, alone = stored_run(tmp_path / "alone")
    execute_run(RunContext(alone_store, alone))
    two = load_model(store.artifact_dir(run_id), "cpu").state_dict()
    one = load_model(alone_store.artifact_dir(alone), "cpu").state_dict()
    for key in one:
        assert relative_difference(two[key], one[key], one[key]) <= 1e-5, key


@pytest.mark.slow
def test_cancelling_a_run_stops_every_rank_after_the_same_step(tmp_path):
    store, run_id = stored_run(tmp_path, distributed={"num_processes": 2}, max_steps=None, epochs=50)
    # the cancel file is written before the first step ends
    execute_run(RunContext(store, run_id, should_stop=lambda: True))
    assert store.status(run_id)["status"] == RunStatus.CANCELLED
    messages = [entry["message"] for entry in store.logs(run_id)]
    done = [int(m.split()[2]) for m in messages if m.startswith("training done:")]
    assert "cancelled" in messages and len(done) == 1 and 1 <= done[0] < 50 * 4  # 4 batches an epoch
    assert not store.artifact_dir(run_id).exists()  # and every rank ended: torchrun returned


@pytest.mark.slow
def test_a_run_failing_in_the_workers_is_recorded_as_failed(tmp_path):
    store, run_id = stored_run(tmp_path, distributed={"num_processes": 2}, model=str(tmp_path / "missing"))
    execute_run(RunContext(store, run_id))
    status = store.status(run_id)
    assert status["status"] == RunStatus.FAILED and "not available offline" in status["error"]


@pytest.mark.slow
def test_two_nodes_meet_at_the_c10d_rendezvous_and_only_the_starting_node_writes(tmp_path, free_port):
    rendezvous = {"num_processes": 1, "nnodes": 2, "rdzv_backend": "c10d", "rdzv_endpoint": f"127.0.0.1:{free_port}"}
    store, run_id = stored_run(tmp_path, distributed=rendezvous)
    other = tmp_path / "other-node"
    shutil.copytree(store.path(run_id), other / run_id)  # the other node's copy of the run folder, no database
    command = [sys.executable, "-m", "finetuner_core.runs.distributed", "--root", str(other), "--run-id", run_id]
    with open(tmp_path / "other-node.log", "wb") as output:
        joined = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT)
        execute_run(RunContext(store, run_id))
        assert joined.wait(timeout=600) == 0, (tmp_path / "other-node.log").read_text()
    status = store.status(run_id)
    assert status["status"] == RunStatus.FINISHED, status.get("error")
    messages = [entry["message"] for entry in store.logs(run_id)]
    assert len(messages) == len(set(messages)) and sum(m.startswith("model saved") for m in messages) == 1
    assert any(m.startswith("training on 2 processes") for m in messages)
    assert sorted(path.name for path in other.iterdir()) == [run_id]
    assert not (other / run_id / "model").exists()


# --- settings, commands, shards (no processes) -----------------------------------------------------------------


def test_one_process_is_the_default_on_the_cpu_and_changes_nothing():
    options = FitConfig(device="cpu").distributed
    assert options.processes_per_node("cpu") == 1 and not options.enabled("cpu")
    assert options.backend_for("cpu") == "gloo"
    assert (
        DistributedOptions(num_processes=3, nnodes=2, master_addr="10.0.0.1", master_port=1234).world_size("cpu") == 6
    )


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"backend": "nccl"}, "backend 'nccl' needs CUDA"),
        ({"nnodes": 2}, "need master_port"),
        ({"nnodes": 2, "master_port": 29500}, "node 0's address"),
        ({"nnodes": 2, "node_rank": 2, "master_addr": "10.0.0.1", "master_port": 29500}, "node_rank (2) must be below"),
        ({"rdzv_backend": "c10d", "nnodes": 2}, "need rdzv_endpoint"),
        ({"rdzv_backend": "c10d", "rdzv_endpoint": "host:port"}, "must be host:port"),
        ({"rdzv_endpoint": "host:29400"}, "belong to rdzv_backend='c10d'"),
        ({"num_processes": 0}, "greater than or equal to 1"),
        ({"processes": 2}, "Extra inputs are not permitted"),
    ],
)
def test_distributed_settings_are_checked_where_they_enter(settings, message):
    with pytest.raises(ConfigError, match="distributed") as error:
        parse_fit_config({"device": "cpu", "distributed": settings})
    assert message in str(error.value)


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        ({"num_processes": 2}, {"standalone": True, "nnodes": "1"}),
        (
            {"num_processes": 2, "nnodes": 2, "master_addr": "10.0.0.1", "master_port": 29500, "node_rank": 0},
            {"standalone": False, "node_rank": 0, "master_addr": "10.0.0.1", "master_port": 29500, "nnodes": "2"},
        ),
        (
            {"num_processes": 4, "nnodes": 3, "rdzv_backend": "c10d", "rdzv_endpoint": "head:29400"},
            {"rdzv_backend": "c10d", "rdzv_endpoint": "head:29400", "rdzv_id": "0123456789abcdef", "nnodes": "3"},
        ),
    ],
)
def test_the_torchrun_command_is_one_torchrun_accepts(settings, expected):
    from torch.distributed.run import get_args_parser

    options = DistributedOptions(**settings)
    command = torchrun_command(options, "cpu", "/runs", "0123456789abcdef")
    assert command[:3] == [sys.executable, "-m", "torch.distributed.run"]
    args = get_args_parser().parse_args(command[3:])
    assert args.nproc_per_node == str(settings["num_processes"]) and args.max_restarts == 0
    assert args.module and args.training_script == "finetuner_core.runs.distributed_worker"
    assert args.training_script_args == ["--root", "/runs", "--run-id", "0123456789abcdef"]
    for key, value in expected.items():
        assert getattr(args, key) == value, key


def test_another_node_joins_with_its_own_rank(tmp_path):
    store, run_id = stored_run(
        tmp_path, distributed={"num_processes": 1, "nnodes": 2, "master_addr": "10.0.0.1", "master_port": 29500}
    )
    from finetuner_core.runs.distributed import join

    with pytest.raises(ValueError, match="--node-rank must be 1 .. 1"):
        join(store.root, run_id, node_rank=0)
    command = torchrun_command(store.config(run_id).distributed, "cpu", store.root, run_id, node_rank=1)
    assert "--node-rank=1" in command


def test_a_rank_that_does_not_lead_reads_what_the_store_holds(tmp_path):
    store, run_id = stored_run(tmp_path)
    folder = run_folder(store.root, run_id)
    assert folder.config(run_id) == store.config(run_id)
    read, stored = folder.data(run_id, "train"), store.data(run_id, "train")
    assert [r.label for r in read] == [r.label for r in stored] and len(read) == 64
    assert all(np.array_equal(a.content, b.content) for a, b in zip(read, stored, strict=True))
    with pytest.raises(ValueError, match="not a run id"):
        run_folder(store.root, "../elsewhere")


def test_a_failure_in_the_workers_is_reported_by_its_first_error():
    output = (
        "I1123 torch.distributed.run: starting\n"
        "[rank1]: Traceback (most recent call last):\n"
        '[rank1]:   File "worker.py", line 3, in <module>\n'
        "[rank1]: finetuner_protocol.backbones.ModelNotAvailableError: model 'x' is not available offline\n"
        "RuntimeError: [gloo/transport/tcp/pair.cc:561] Connection closed by peer\n"
        "torch.distributed.elastic.multiprocessing.errors.ChildFailedError: \n"
    )
    assert first_error(output) == (
        "finetuner_protocol.backbones.ModelNotAvailableError: model 'x' is not available offline"
    )
    assert first_error("Killed\n") == "Killed"


@pytest.mark.parametrize(("size", "world"), [(16, 2), (15, 2), (7, 3), (1, 2), (3, 4)])
def test_shards_are_contiguous_cover_the_batch_and_differ_by_at_most_one(size, world):
    bounds = shard_bounds(size, world)
    assert bounds[0][0] == 0 and bounds[-1][1] == size
    assert all(end == start for (_, end), (start, _) in zip(bounds, bounds[1:], strict=False))
    sizes = [end - start for start, end in bounds]
    assert max(sizes) - min(sizes) <= 1


def test_a_process_not_started_by_torchrun_is_told_what_is_missing(monkeypatch):
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("RANK", "0")
    with pytest.raises(RuntimeError, match="WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT not set"):
        ranks_from_env("gloo")


@pytest.fixture
def one_process_group(free_port, monkeypatch):
    for name, value in dict(RANK=0, WORLD_SIZE=1, LOCAL_RANK=0, MASTER_ADDR="127.0.0.1", MASTER_PORT=free_port).items():
        monkeypatch.setenv(name, str(value))
    yield start_process_group("gloo", "cpu")
    stop_process_group()


def test_the_distributed_model_shows_the_model_as_the_loop_and_optimizer_see_it(one_process_group):
    model = build_model("mlp", MLP_OPTIONS, "cpu")
    view = DistributedModel(model)
    assert one_process_group.lead and dist.get_world_size() == 1
    assert [n for n, _ in view.named_parameters()] == [n for n, _ in model.named_parameters()]
    config = FitConfig(**EXACT, **CASES["mlp-triplet"].config, layer_lr_decay=0.5)
    groups = [(g["layer"], g["lr"]) for g in build_optimizer(view, config).param_groups]
    assert groups == [(g["layer"], g["lr"]) for g in build_optimizer(model, config).param_groups]
    assert view.state_dict().keys() == model.state_dict().keys()
    assert (view.dim, view.device, view.options) == (model.dim, model.device, model.options)
    view.eval()
    assert not model.training
    view.train()
    assert model.training
    items = [item.content for item in vectors(5)]
    torch.testing.assert_close(view.embed(items), model.embed(items))
