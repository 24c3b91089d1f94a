"""A Flow file with its executors as container images: what `jina export` needs (`uses: docker://...`).

An executor given as a local config (``executors/<name>/config.yml``) becomes the image built from that folder,
``<registry>/finetuner-<name>:<tag>``, or ``...:<tag>-cuda`` when it runs on CUDA. An executor runs on CUDA when
its Flow entry says so: ``gpus``, a ``CUDA_VISIBLE_DEVICES`` environment variable, ``device: cuda``, or a
``-cuda`` image. On a cluster the device plugin chooses the GPUs: ``CUDA_VISIBLE_DEVICES`` (host numbering)
becomes a request of that many GPUs (``gpus``). Every executor's workspace is the mounted volume.
"""

from __future__ import annotations

import copy
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

EXECUTORS = ("validator", "trainer", "evaluator")
WORKSPACE_MOUNT = "/workspace"
DOCKER = "docker://"
UNSET = re.compile(r"\$\{*\s*(?:ENV\.)?([A-Za-z_][A-Za-z0-9_]*)")  # what jina leaves of an unset variable


@dataclass(frozen=True)
class Images:
    registry: str
    tag: str

    def image(self, name: str, cuda: bool) -> str:
        return f"{self.registry.rstrip('/')}/finetuner-{name}:{self.tag}{'-cuda' if cuda else ''}"


def read_env_file(path: Path) -> dict[str, str]:
    """``KEY=VALUE`` lines (``#`` comments), as in ``flows/gpu.env``; no file: nothing."""
    if not path.exists():
        return {}
    lines = [line.strip() for line in path.read_text("utf-8").splitlines()]
    return dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))


def load_flow(path: Path) -> dict[str, Any]:
    """A Flow file with its ``${{ ENV.X }}`` variables replaced (jina's substitution) from the environment, else
    from the ``.env`` file next to it (``flows/gpu.yml``: ``flows/gpu.env``)."""
    from jina.jaml import JAML

    defaults = {k: v for k, v in read_env_file(path.with_suffix(".env")).items() if k not in os.environ}
    os.environ.update(defaults)
    try:
        with open(path, encoding="utf-8") as file:
            flow = JAML.load(file, substitute=True)
    finally:
        for name in defaults:
            os.environ.pop(name, None)
    unset = sorted(set(UNSET.findall(yaml.safe_dump(flow))))
    if unset:
        raise ValueError(f"{path}: environment variables not set: {', '.join(unset)}")
    if flow.get("jtype") != "Flow" or not flow.get("executors"):
        raise ValueError(f"{path}: not a Flow file with executors")
    return flow


def gpu_count(executor: dict[str, Any]) -> int:
    """GPUs an executor's Flow entry asks for (0: CPU)."""
    if executor.get("gpus"):
        return int(executor["gpus"])
    visible = str((executor.get("env") or {}).get("CUDA_VISIBLE_DEVICES", "")).strip()
    if visible and visible != "-1":
        return len([device for device in visible.split(",") if device.strip()])
    uses = str(executor.get("uses", ""))
    on_cuda = (executor.get("uses_with") or {}).get("device") == "cuda" or uses.endswith("-cuda")
    return 1 if on_cuda else 0


def containerised(flow: dict[str, Any], images: Images) -> dict[str, Any]:
    """The Flow with ``docker://`` executors, GPU requests, and the workspace at :data:`WORKSPACE_MOUNT`."""
    flow = copy.deepcopy(flow)
    flow.pop("jcloud", None)
    if isinstance(flow.get("gateway"), dict):
        flow["gateway"].pop("jcloud", None)
    for executor in flow["executors"]:
        name = executor.get("name")
        if name not in EXECUTORS:
            raise ValueError(f"unknown executor {name!r}; this Flow has {', '.join(EXECUTORS)}")
        gpus = gpu_count(executor)
        if not str(executor.get("uses", "")).startswith(DOCKER):
            executor["uses"] = DOCKER + images.image(name, cuda=gpus > 0)
        if executor.get("uses_after") and not str(executor["uses_after"]).startswith(DOCKER):
            executor["uses_after"] = DOCKER + images.image(name, cuda=False)  # the evaluator merging the shards
        executor.pop("jcloud", None)
        env = {k: str(v) for k, v in (executor.get("env") or {}).items() if k != "CUDA_VISIBLE_DEVICES"}
        executor["env"] = env | {"FINETUNER_WORKSPACE": WORKSPACE_MOUNT}
        executor["uses_with"] = (executor.get("uses_with") or {}) | {"workspace_dir": WORKSPACE_MOUNT}
        if gpus:
            executor["gpus"] = gpus
    return flow
