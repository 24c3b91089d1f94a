"""Data-parallel training over several processes (torch DistributedDataParallel), torchrun-compatible.

Every rank draws the same global batch (the samplers are seeded alike on every rank), embeds its contiguous
shard of it through the DDP-wrapped model, and all-gathers the shards' embeddings with their gradients, so that
every rank computes the same full-batch loss (miners included) with negatives from every rank.
:class:`DistributedModel` does this behind the model's own interface, so :func:`training.loop.train` and the
tasks run unchanged.

Why the gradient is the one-process gradient of the global batch: let ``L(e_1 .. e_B)`` be the loss of the
batch and rank ``r`` of ``N`` embed the items ``S_r``. The all-gather's backward sums, into rank ``r``'s rows,
``dL/de_i`` from each of the ``N`` ranks; all of them computed the same ``L``, so rank ``r``'s parameters get
``N * sum_{i in S_r} dL/de_i * de_i/dθ``. DDP averages over the ranks: ``1/N * sum_r N * sum_{i in S_r} ...``
``= sum_i dL/de_i * de_i/dθ``, the gradient one process computes on the whole batch. A parameter used outside
the embedding (CLIP's logit scale) gets the same full gradient on every rank, which DDP's average keeps. A
loss's own parameters (class centres) are outside DDP: every rank computes the same full-batch gradient for
them, so their optimizers stay in step without communication. Every rank is seeded alike (``config.seed``), so
dropout draws the same masks for the same positions of each rank's share.

Only the lead (rank 0, or local rank 0 of the node the run was started on) logs, evaluates and writes;
:class:`SharedStop` gives every rank the lead's decision to stop (cancellation, early stopping, a failure), so
all of them stop after the same step.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist
import torch.distributed._functional_collectives as functional
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from finetuner_core.callbacks.base import Callback
from finetuner_core.callbacks.state import TrainState
from finetuner_core.training.loop import choose_batch_size
from finetuner_protocol.settings import FitSettings

ENVIRONMENT = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
LEAD_NODE = "FINETUNER_LEAD_NODE"
EMBEDDINGS = ("embed", "embed_text", "embed_image")


@dataclass(frozen=True)
class Ranks:
    """This process's place among the processes of a run, as torchrun describes it, and which rank leads."""

    rank: int
    world_size: int
    local_rank: int
    backend: str
    lead_rank: int = 0

    @property
    def lead(self) -> bool:
        """The lead logs, evaluates and writes; the others train silently."""
        return self.rank == self.lead_rank


def ranks_from_env(backend: str) -> Ranks:
    """The ranks torchrun sets in the environment (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT);
    rank 0 leads until :func:`start_process_group` finds the lead."""
    missing = [name for name in ENVIRONMENT if not os.environ.get(name)]
    if missing:
        raise RuntimeError(f"not started by torchrun: {', '.join(missing)} not set in the environment")
    values = {name: os.environ[name] for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    if not all(value.isdigit() for value in values.values()):
        raise RuntimeError(f"RANK, WORLD_SIZE and LOCAL_RANK must be non-negative integers, got {values}")
    rank, world_size, local_rank = (int(value) for value in values.values())
    if not rank < world_size:
        raise RuntimeError(f"RANK ({rank}) must be below WORLD_SIZE ({world_size})")
    return Ranks(rank, world_size, local_rank, backend)


def start_process_group(backend: str, device: str, timeout_minutes: float = 30.0) -> Ranks:
    """Join the run's process group from torchrun's environment; on CUDA, take GPU ``LOCAL_RANK``.

    The lead is local rank 0 of the node whose processes carry ``FINETUNER_LEAD_NODE=1`` (the node the run was
    started on, which holds the run's records), else rank 0. With the c10d rendezvous, global rank 0 may be on
    any node.
    """
    ranks = ranks_from_env(backend)
    if device == "cuda":
        if ranks.local_rank >= torch.cuda.device_count():
            raise RuntimeError(f"LOCAL_RANK {ranks.local_rank} has no GPU: {torch.cuda.device_count()} visible")
        torch.cuda.set_device(ranks.local_rank)
    dist.init_process_group(backend, init_method="env://", timeout=timedelta(minutes=timeout_minutes))
    flags: list[bool | None] = [None] * ranks.world_size
    dist.all_gather_object(flags, os.environ.get(LEAD_NODE) == "1" and ranks.local_rank == 0)
    leads = [rank for rank, flag in enumerate(flags) if flag]
    if len(leads) > 1:
        stop_process_group()
        raise RuntimeError(f"several nodes claim to lead the run ({LEAD_NODE}=1): ranks {leads}")
    return replace(ranks, lead_rank=leads[0] if leads else 0)


def stop_process_group() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def shard_bounds(size: int, world_size: int) -> list[tuple[int, int]]:
    """Contiguous ``[start, end)`` of each rank's share of ``size`` items, in rank order; sizes differ by at most 1."""
    return [(rank * size // world_size, (rank + 1) * size // world_size) for rank in range(world_size)]


def gather(local: torch.Tensor, sizes: list[int]) -> torch.Tensor:
    """Every rank's rows in rank order, with gradients: the backward sums each row's gradient over the ranks.

    ``local`` holds this rank's ``sizes[rank]`` rows (or one stand-in row, dropped here, when that is 0).
    ``# (sum(sizes), ...)``
    """
    width = max(sizes)
    padded = torch.cat([local, local.new_zeros((width - local.shape[0], *local.shape[1:]))])
    # torch's replacement for the deprecated torch.distributed.nn.functional.all_gather, with the same backward
    # (a reduce-scatter that sums the ranks' gradients into each rank's rows)
    everything = functional.all_gather_single(padded.contiguous(), 0, dist.group.WORLD)
    return torch.cat([everything[rank * width : rank * width + size] for rank, size in enumerate(sizes)])


class _Embedder(nn.Module):
    """What DDP wraps: one forward for each kind of embedding a task asks for (two per step for CLIP pairs)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, kind: str, inputs: list[Any]) -> torch.Tensor:
        if kind not in EMBEDDINGS:
            raise ValueError(f"unknown embedding {kind!r}; one of {', '.join(EMBEDDINGS)}")
        return getattr(self.model, kind)(inputs)


class DistributedModel:
    """An :class:`EmbeddingModel` as the training loop, the tasks and ``build_optimizer`` see it, trained with DDP.

    ``embed`` / ``embed_text`` / ``embed_image`` take the whole global batch, embed this rank's shard through
    DDP and return every rank's embeddings (with gradients), in batch order. Everything else (parameters with
    their own names, ``dim``, ``device``, ``logit_scale``, ``train`` / ``eval``, ``state_dict``) is the model's.
    DDP runs with ``static_graph=True``: CLIP pairs call two forwards before one backward, the logit scale is
    used outside the forward, and a single tower of a CLIP leaves the other tower unused; all of which the
    static graph allows, as the set of parameters used does not change from step to step.
    """

    def __init__(self, model: nn.Module):
        if not dist.is_initialized():
            raise RuntimeError("DistributedModel needs an initialised process group (start_process_group)")
        self.module = model
        device = model.device
        device_ids = None
        if device.type == "cuda":
            device_ids = [device.index if device.index is not None else torch.cuda.current_device()]
        self.ddp = DistributedDataParallel(_Embedder(model), device_ids=device_ids, static_graph=True)
        self.rank, self.world_size = dist.get_rank(), dist.get_world_size()

    # --- embeddings: sharded through DDP, gathered with gradients -----------------------------------------
    def embed(self, inputs: list[Any]) -> torch.Tensor:
        return self._gathered("embed", inputs)

    def embed_text(self, texts: list[str]) -> torch.Tensor:
        return self._gathered("embed_text", texts)

    def embed_image(self, values: list[Any]) -> torch.Tensor:
        return self._gathered("embed_image", values)

    def _gathered(self, kind: str, inputs: list[Any]) -> torch.Tensor:
        inputs = list(inputs)
        if not inputs:
            raise ValueError("an empty batch cannot be embedded")
        bounds = shard_bounds(len(inputs), self.world_size)
        start, end = bounds[self.rank]
        # a rank whose share is empty (a batch smaller than the world) embeds a stand-in item, so that every rank
        # runs the same graph; its row is dropped by gather and gets no gradient
        local = self.ddp(kind, inputs[start:end] or inputs[:1])
        return gather(local, [end - start for start, end in bounds])

    # --- the model's own ------------------------------------------------------------------------------------
    @property
    def logit_scale(self) -> nn.Parameter:
        return self.module.logit_scale

    @property
    def dim(self) -> int:
        return self.module.dim

    @property
    def device(self) -> torch.device:
        return self.module.device

    @property
    def options(self):
        return self.module.options

    @property
    def modality(self) -> str:
        return self.module.modality

    @property
    def training(self) -> bool:
        return self.module.training

    def train(self, mode: bool = True) -> DistributedModel:
        self.ddp.train(mode)
        return self

    def eval(self) -> DistributedModel:
        return self.train(False)

    def parameters(self, recurse: bool = True):
        return self.module.parameters(recurse)

    def named_parameters(self, *args, **kwargs):
        return self.module.named_parameters(*args, **kwargs)

    def state_dict(self, *args, **kwargs):
        return self.module.state_dict(*args, **kwargs)

    def load_state_dict(self, *args, **kwargs):
        return self.module.load_state_dict(*args, **kwargs)


def shared_batch_size(model: nn.Module, records: list, config: FitSettings, ranks: Ranks) -> tuple[FitSettings, str]:
    """``config`` with a batch size every rank shares, and a note on how it was chosen ("" when it was given).

    ``batch_size=None`` is searched on the lead alone (``training.loop.choose_batch_size`` on its model, before
    DDP wraps it), as the batch one process handles; every rank trains with that many items per process. A
    search on every rank could choose differently (timings, memory) and the ranks would fall out of step.
    """
    if config.batch_size is not None:
        return config, ""
    found = choose_batch_size(model, records, config) if ranks.lead else None
    choice = [(found.batch_size, found.note()) if found else None]
    dist.broadcast_object_list(choice, src=ranks.lead_rank)
    (per_process, how), size = choice[0], choice[0][0] * ranks.world_size
    return config.model_copy(update={"batch_size": size}), f"batch size {size}, {per_process} a process: {how}"


class SharedStop(Callback):
    """Gives every rank the lead's decision to stop (and why), after each step and epoch. Put it last."""

    def __init__(self, lead_rank: int = 0):
        self.lead_rank = lead_rank

    def on_step_end(self, state: TrainState) -> None:
        self._share(state)

    def on_epoch_end(self, state: TrainState) -> None:
        self._share(state)

    def _share(self, state: TrainState) -> None:
        decision = [(state.stop, state.stop_reason, state.failed)]
        dist.broadcast_object_list(decision, src=self.lead_rank)
        state.stop, state.stop_reason, state.failed = decision[0]
