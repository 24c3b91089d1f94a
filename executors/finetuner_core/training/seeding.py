"""Seeds, deterministic algorithms, and the random generators' states as plain tensors, numbers and lists.

``seed_everything`` seeds Python's ``random``, NumPy's global generator and torch (the CPU and every CUDA device).
``deterministic_mode(True)`` also makes torch use deterministic algorithms (an operation without one raises),
cuDNN deterministic without benchmarking, and cuBLAS a fixed workspace (``CUBLAS_WORKSPACE_CONFIG=:4096:8``,
unless already set); the previous settings come back when the block ends. The environment variable only
takes effect for cuBLAS handles created after it is set, so a process that must be deterministic from its
first CUDA call sets it before starting.
"""

from __future__ import annotations

import os
import random
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch

CUBLAS_WORKSPACE = "CUBLAS_WORKSPACE_CONFIG"


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)  # every device, CUDA included


@contextmanager
def deterministic_mode(enabled: bool = True) -> Iterator[None]:
    """Deterministic algorithms inside the block (when ``enabled``); the global settings are restored after."""
    if not enabled:
        yield
        return
    saved = (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
        torch.backends.cudnn.deterministic,
        torch.backends.cudnn.benchmark,
        os.environ.get(CUBLAS_WORKSPACE),
    )
    os.environ.setdefault(CUBLAS_WORKSPACE, ":4096:8")
    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    try:
        yield
    finally:
        algorithms, warn_only, cudnn_deterministic, benchmark, workspace = saved
        torch.use_deterministic_algorithms(algorithms, warn_only=warn_only)
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = cudnn_deterministic, benchmark
        if workspace is None:
            os.environ.pop(CUBLAS_WORKSPACE, None)


def rng_state() -> dict[str, Any]:
    """Every generator's state, loadable with ``torch.load(..., weights_only=True)``."""
    version, internal, gauss = random.getstate()
    name, keys, position, has_gauss, cached = np.random.get_state()
    return {
        "python": {"version": version, "internal": torch.tensor(internal, dtype=torch.int64), "gauss": gauss},
        "numpy": {
            "name": name,
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "position": int(position),
            "has_gauss": int(has_gauss),
            "cached": float(cached),
        },
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` captured (CUDA generators only where the same number of devices is present)."""
    python = state["python"]
    random.setstate((python["version"], tuple(python["internal"].tolist()), python["gauss"]))
    numpy = state["numpy"]
    keys = numpy["keys"].numpy().astype(np.uint32)
    np.random.set_state((numpy["name"], keys, numpy["position"], numpy["has_gauss"], numpy["cached"]))
    torch.set_rng_state(state["torch"])
    cuda = state["cuda"]
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)
