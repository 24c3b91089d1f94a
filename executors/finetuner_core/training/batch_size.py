"""Choosing the batch size when the configuration leaves it open (``batch_size=None``).

The search tries sizes with ``probe(size)``: one real training step (forward, backward, optimizer step) of the
task at that batch size, returning how many items the batch held (the data may give fewer). The loop restores
the model's weights after the search and trains with the size chosen here.

- On CUDA: the largest power of two, up to :data:`CUDA_CAP` and the data size, whose step fits in GPU memory;
  starting from the largest, a size that runs out of memory (``torch.cuda.OutOfMemoryError``) is halved, with
  the memory freed between tries. A size that fits the search may still run out of memory later (other batches
  can hold longer texts), so the search is a guide, not a guarantee.
- On the CPU: powers of two from :data:`CPU_START` up to :data:`CPU_CAP` and the data size, measuring items per
  second over one timed step (after one untimed step), until throughput stops improving, the data gives no
  larger batch than the previous size (e.g. few classes for the class sampler), or the process's memory at
  twice the size would exceed the budget (its resident memory plus half of the memory available when the
  search starts); the fastest size wins.

Sizes are rounded down to a multiple of ``multiple_of`` (``num_items_per_class`` for the class sampler).
"""

from __future__ import annotations

import gc
import os
import resource
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

CPU_START, CPU_CAP, CUDA_CAP = 8, 128, 512

Probe = Callable[[int], int]


@dataclass
class Choice:
    """The size chosen and how: the items per second of each size tried on the CPU, or the sizes that did not
    fit on CUDA."""

    batch_size: int
    rates: dict[int, float] = field(default_factory=dict)
    too_large: list[int] = field(default_factory=list)

    def note(self) -> str:
        if self.rates:
            rates = ", ".join(f"{size}: {rate:.0f}" for size, rate in self.rates.items())
            return f"batch_size chosen: {self.batch_size}, the fastest on this CPU (items/s by size: {rates})"
        tried = f" ({', '.join(map(str, self.too_large))} ran out of memory)" if self.too_large else ""
        return f"batch_size chosen: {self.batch_size}, the largest power of two that fits in GPU memory{tried}"


def candidate_sizes(start: int, cap: int, data_size: int, multiple_of: int = 1) -> list[int]:
    """Powers of two from ``start`` up to ``min(cap, data_size)``, each rounded down to a multiple of
    ``multiple_of``; at least the smallest valid size (``2 * multiple_of``, or 2)."""
    smallest = max(2, 2 * multiple_of) if multiple_of > 1 else 2
    limit = max(smallest, min(cap, data_size))
    sizes, size = [], start
    while size <= limit:
        rounded = size // multiple_of * multiple_of
        if rounded >= smallest and rounded not in sizes:
            sizes.append(rounded)
        size *= 2
    return sizes or [smallest]


def largest_that_fits(probe: Probe, sizes: list[int]) -> Choice:
    """The largest size whose step does not run out of GPU memory, halving from the largest."""
    too_large = []
    for size in sorted(sizes, reverse=True):
        if _fits(probe, size):
            return Choice(size, too_large=too_large)
        release_memory()  # what the failed step held, before the next try
        too_large.append(size)
    raise RuntimeError(f"a training step runs out of GPU memory even at batch_size={min(sizes)}")


def _fits(probe: Probe, size: int) -> bool:
    """Whether the step runs; the out-of-memory error (and the tensors its traceback holds) is dropped here."""
    try:
        probe(size)
    except torch.cuda.OutOfMemoryError:
        return False
    return True


def release_memory() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def fastest(probe: Probe, sizes: list[int], memory_budget: int | None = None) -> Choice:
    """The size with the most items per second on the CPU, trying sizes in increasing order (see the module
    docstring for when the search stops); ``memory_budget`` in bytes (None: the default budget)."""
    base = resident_memory()
    budget = memory_budget if memory_budget is not None else base + available_memory() // 2
    rates: dict[int, float] = {}
    best = None
    for size in sorted(sizes):
        probe(size)  # the first step at a size pays for allocations
        peak_before, start = peak_memory(), time.perf_counter()
        items = probe(size)
        rates[size] = items / max(time.perf_counter() - start, 1e-9)
        if best is not None and (items <= best or rates[size] <= rates[best]):
            break  # the data gives no larger batch, or it is not faster
        best = size
        used = (peak_memory() if peak_memory() > peak_before else resident_memory()) - base
        if base + 2 * max(used, 0) > budget:
            break
    return Choice(best, rates=rates)


def resident_memory() -> int:
    """The process's resident memory now, in bytes (its peak where /proc is not there)."""
    try:
        with open("/proc/self/statm", encoding="ascii") as file:
            return int(file.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return peak_memory()


def peak_memory() -> int:
    """The process's peak resident memory so far, in bytes."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


def available_memory() -> int:
    """Memory the system can still give, in bytes (MemAvailable; free pages where /proc is not there)."""
    try:
        with open("/proc/meminfo", encoding="ascii") as file:
            for line in file:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
