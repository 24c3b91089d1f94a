"""How a fit spreads over several processes: processes per node, backend, and torchrun's rendezvous settings.

One process (the default on a CPU or a single-GPU machine) trains as before. More than one (several GPUs, or
``num_processes`` set, or ``nnodes > 1``) runs the fit with torchrun: see docs/DISTRIBUTED.md.

The settings that name other machines (``HOST_SETTINGS``) are the operator's: a fit that reaches the trainer
through the Flow may not set them (:func:`for_request`); the trainer takes them from its ``distributed`` setting
or ``$FINETUNER_DISTRIBUTED`` (:func:`operator_settings`).
"""

from __future__ import annotations

import json
import os
from typing import Annotated, Any

import torch
from pydantic import AfterValidator

from finetuner_protocol.distributed import HOST_SETTINGS, DistributedSettings, fits_device

DISTRIBUTED_VARIABLE = "FINETUNER_DISTRIBUTED"


class DistributedOptions(DistributedSettings):
    """The ``distributed`` settings (:class:`~finetuner_protocol.distributed.DistributedSettings`) on the machine
    that trains: how many processes its GPUs give, and the backend its device runs."""

    def processes_per_node(self, device: str) -> int:
        """``num_processes``, else one per visible GPU when ``device`` (auto / cuda) means CUDA, else 1."""
        if self.num_processes is not None:
            return self.num_processes
        if device in ("auto", "cuda") and torch.cuda.is_available():
            return max(1, torch.cuda.device_count())
        return 1

    def world_size(self, device: str) -> int:
        return self.processes_per_node(device) * self.nnodes

    def enabled(self, device: str) -> bool:
        """Whether the fit runs as several processes (torchrun) rather than in the trainer's own thread."""
        return self.world_size(device) > 1

    def check_gpus(self, device: str) -> None:
        """On CUDA with nccl, each process of a node needs a GPU of its own (checked on the node that trains)."""
        if device != "cuda" or self.backend_for(device) != "nccl":
            return
        visible, wanted = torch.cuda.device_count(), self.processes_per_node(device)
        if wanted > visible:
            raise ValueError(f"distributed.num_processes ({wanted}) exceeds the {visible} visible CUDA GPU(s)")

    def backend_for(self, device: str) -> str:
        """The process-group backend for a resolved ``device`` (cpu / cuda)."""
        if self.backend == "nccl" and device != "cuda":
            raise ValueError(f"distributed.backend 'nccl' needs CUDA; the device is {device!r} (use gloo)")
        if self.backend == "auto":
            return "nccl" if device == "cuda" else "gloo"
        return self.backend


def operator_settings(setting: dict[str, Any] | None = None) -> dict[str, Any]:
    """The operator's rendezvous settings (``HOST_SETTINGS`` only): the trainer's ``distributed`` setting, else
    ``$FINETUNER_DISTRIBUTED`` (a JSON object); checked here, when the trainer starts."""
    if not setting and os.environ.get(DISTRIBUTED_VARIABLE):
        try:
            setting = json.loads(os.environ[DISTRIBUTED_VARIABLE])
        except json.JSONDecodeError as exc:
            raise ValueError(f"{DISTRIBUTED_VARIABLE} is not a JSON object: {exc}") from None
    if not isinstance(setting or {}, dict):
        raise ValueError(f"the operator's distributed settings are a mapping, got {setting!r}")
    setting = dict(setting or {})
    unknown = sorted(set(setting) - set(HOST_SETTINGS))
    if unknown:
        raise ValueError(f"the operator's distributed settings take {', '.join(HOST_SETTINGS)}; not {unknown}")
    DistributedOptions.model_validate(setting)
    return setting


def for_request(options: DistributedOptions, operator: dict[str, Any]) -> DistributedOptions:
    """A fit's ``distributed`` settings as the trainer runs them: the fit's own (``num_processes``, ``backend``,
    ``timeout_minutes``) with the operator's rendezvous. A fit that sets another machine's address, port or
    rank is refused: those come from the operator's configuration."""
    defaults = DistributedOptions()
    named = [name for name in HOST_SETTINGS if getattr(options, name) != getattr(defaults, name)]
    if named:
        raise ValueError(
            f"distributed.{named[0]}: settings that name other machines ({', '.join(named)}) are the operator's "
            "(the trainer's distributed setting or $FINETUNER_DISTRIBUTED), not a fit's"
        )
    if not operator:
        return options
    return DistributedOptions.model_validate({**options.model_dump(exclude=set(HOST_SETTINGS)), **operator})


def check_processes(options: DistributedOptions, device: str) -> None:
    """``num_processes`` fits this machine: at most its GPUs on CUDA (``device`` cuda, or auto with CUDA), at most
    its CPU cores otherwise."""
    if options.num_processes is None:
        return
    cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
    available, kind = (torch.cuda.device_count(), "CUDA GPU(s)") if cuda else (os.cpu_count() or 1, "CPU cores")
    if options.num_processes > available:
        raise ValueError(
            f"distributed.num_processes ({options.num_processes}) exceeds this trainer's {available} {kind}"
        )


DistributedSetting = Annotated[DistributedOptions, AfterValidator(fits_device)]
