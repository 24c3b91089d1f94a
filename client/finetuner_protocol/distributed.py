"""How a fit spreads over several processes: processes per node, backend, and torchrun's rendezvous settings.

One process (the default on a CPU or a single-GPU machine) trains as before. More than one (several GPUs, or
``num_processes`` set, or ``nnodes > 1``) runs the fit with torchrun: see docs/DISTRIBUTED.md. The settings that
name other machines (``HOST_SETTINGS``) are the operator's, not a fit's. What needs the trainer's hardware (GPUs
per node, the backend a device runs) is the core's: ``finetuner_core.training.distributed_options``.
"""

from __future__ import annotations

import ipaddress
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

LOOPBACK_NAMES = ("localhost", "localhost.localdomain")
MAX_PROCESSES = 64
HOST_SETTINGS = (
    "nnodes",
    "node_rank",
    "master_addr",
    "master_port",
    "rdzv_backend",
    "rdzv_endpoint",
    "rdzv_id",
    "rdzv_timeout_s",
)


class DistributedSettings(BaseModel):
    """Settings of data-parallel training (torch DistributedDataParallel, launched with torchrun)."""

    model_config = ConfigDict(extra="forbid")

    num_processes: int | None = Field(
        None,
        ge=1,
        le=MAX_PROCESSES,
        description="processes on each node (None: one per visible CUDA GPU when the device is cuda, else 1)",
    )
    backend: Literal["auto", "nccl", "gloo"] = Field("auto", description="auto: nccl on CUDA, gloo on the CPU")
    nnodes: int = Field(1, ge=1, description="machines taking part; each runs the same run with its own node rank")
    node_rank: int = Field(0, ge=0, description="static rendezvous: the rank of the node the run is started on")
    master_addr: str = Field(
        "127.0.0.1", min_length=1, max_length=253, description="static rendezvous: address of node 0, seen by all"
    )
    master_port: int | None = Field(
        None, ge=1, le=65535, description="static rendezvous: port on node 0 (None: a free port, one node only)"
    )
    rdzv_backend: Literal["static", "c10d"] = Field(
        "static", description="static: master_addr / master_port and node ranks; c10d: torchrun's dynamic rendezvous"
    )
    rdzv_endpoint: str | None = Field(None, description="c10d rendezvous: host:port that every node reaches")
    rdzv_id: str | None = Field(
        None,
        pattern=r"^[A-Za-z0-9_.-]{1,100}$",
        description="c10d rendezvous: job id shared by the nodes (None: run id)",
    )
    rdzv_timeout_s: int = Field(
        600, ge=10, le=24 * 3600, description="how long the nodes wait for each other to join the rendezvous"
    )
    timeout_minutes: float = Field(
        30.0,
        gt=0,
        le=24 * 60,
        description="how long a collective waits for the other processes (e.g. while rank 0 evaluates)",
    )

    @field_validator("rdzv_endpoint")
    @classmethod
    def _host_port(cls, value: str | None) -> str | None:
        if value is None:
            return None
        host, _, port = value.rpartition(":")
        if not host or not port.isdigit() or not 0 <= int(port) <= 65535:
            raise ValueError(f"rdzv_endpoint must be host:port, got {value!r}")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> DistributedSettings:
        if self.node_rank >= self.nnodes:
            raise ValueError(f"node_rank ({self.node_rank}) must be below nnodes ({self.nnodes})")
        if self.rdzv_backend == "static":
            if self.rdzv_endpoint is not None or self.rdzv_id is not None:
                raise ValueError("rdzv_endpoint and rdzv_id belong to rdzv_backend='c10d'")
            if self.nnodes > 1 and self.master_port is None:
                raise ValueError("several nodes with the static rendezvous need master_port (a port open on node 0)")
            if self.nnodes > 1 and _is_loopback(self.master_addr):
                raise ValueError(
                    f"several nodes need master_addr to be node 0's address that the others reach, "
                    f"not {self.master_addr!r}"
                )
        else:
            if self.nnodes > 1 and self.rdzv_endpoint is None:
                raise ValueError("several nodes with the c10d rendezvous need rdzv_endpoint (host:port)")
            if self.node_rank or self.master_port is not None:
                raise ValueError("node_rank and master_port belong to rdzv_backend='static' (c10d assigns ranks)")
        return self


def _is_loopback(host: str) -> bool:
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def fits_device(options: DistributedSettings, info: ValidationInfo) -> DistributedSettings:
    """Checked against the config's ``device`` (a field declared before ``distributed``)."""
    if options.backend == "nccl" and info.data.get("device") == "cpu":
        raise ValueError("backend 'nccl' needs CUDA; device is 'cpu' (use backend 'gloo' or 'auto')")
    return options


DistributedSetting = Annotated[DistributedSettings, AfterValidator(fits_device)]
