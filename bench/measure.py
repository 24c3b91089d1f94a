"""Measuring: wall-clock runs of alternated variants, their ratios, peak memory, and the machine."""

from __future__ import annotations

import datetime
import os
import platform
import resource
import statistics
import time
from collections.abc import Callable


def timed(fn: Callable[[], object]) -> tuple[float, float, object]:
    """Wall-clock seconds and CPU seconds (all threads of this process) of one call, and what it returned."""
    wall, cpu = time.perf_counter(), time.process_time()
    result = fn()
    return time.perf_counter() - wall, time.process_time() - cpu, result


def alternate(variants: dict[str, Callable[[], object]], rounds: int) -> dict[str, dict[str, list[float]]]:
    """Run the variants in turn (A B A B ...), ``rounds`` times each: ``{name: {"wall": [...], "cpu": [...]}}``."""
    seconds: dict[str, dict[str, list[float]]] = {name: {"wall": [], "cpu": []} for name in variants}
    for _ in range(rounds):
        for name, fn in variants.items():
            wall, cpu, _ = timed(fn)
            seconds[name]["wall"].append(wall)
            seconds[name]["cpu"].append(cpu)
    return seconds


def spread(values: list[float]) -> dict[str, float]:
    """Min / median / max of ``values``."""
    return {"min": min(values), "median": statistics.median(values), "max": max(values)}


def ratios(numerators: list[float], denominators: list[float]) -> list[float]:
    """Run-by-run ratios of two alternated variants."""
    return [a / b for a, b in zip(numerators, denominators, strict=True)]


def load_average() -> list[float]:
    """The 1, 5 and 15 minute load averages: how busy the machine was besides this process."""
    return [round(x, 2) for x in os.getloadavg()]


def resident_gib() -> dict[str, float]:
    """Resident memory now (``rss``) and its peak since the last :func:`reset_peak` (``peak``), in GiB."""
    with open("/proc/self/status", encoding="utf-8") as file:
        fields = dict(line.split(":", 1) for line in file if line.startswith(("VmRSS", "VmHWM")))
    return {"rss": int(fields["VmRSS"].split()[0]) / 2**20, "peak": int(fields["VmHWM"].split()[0]) / 2**20}


def reset_peak() -> None:
    """Start a new peak-memory measurement (Linux: clear_refs 5 resets the process's VmHWM)."""
    with open("/proc/self/clear_refs", "w", encoding="utf-8") as file:
        file.write("5")


def peak_rss_gib() -> float:
    """The process's peak resident memory so far, in GiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def machine() -> dict[str, object]:
    """What the figures were taken on."""
    model = platform.processor()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as file:
            model = next(line.split(":", 1)[1].strip() for line in file if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return {
        "nproc": len(os.sched_getaffinity(0)),
        "cpu": model,
        "memory_gib": round(memory, 1),
        "python": platform.python_version(),
        "date": datetime.date.today().isoformat(),
    }
