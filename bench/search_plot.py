"""The search benchmark's plot, drawn from its JSON: the exact variants' seconds per round, and each approximate
index setting's speed-up against its recall of the exact neighbours."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

EXACT = {
    "evaluate": "evaluate (FAISS Flat + every metric)",
    "faiss_search": "FAISS Flat search",
    "matmul": "bare matmul",
}
MARKERS = {"far": "o", "near": "^"}


def plot(results: dict, path: Path) -> Path:
    """Write the two panels to ``path`` (PNG)."""
    figure, (left, right) = plt.subplots(1, 2, figsize=(13, 4.5))
    _exact(left, results["exact"]["seconds"])
    _approximate(right, results)
    config = results["config"]
    figure.suptitle(f"{config['queries']:,} queries x {config['corpus']:,} vectors x {config['dim']} (k = 10)")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def _exact(axis, seconds: dict) -> None:
    rounds = len(next(iter(seconds.values()))["wall"])
    width = 0.8 / len(EXACT)
    for position, (key, label) in enumerate(EXACT.items()):
        if key in seconds:
            xs = [r + (position - 1) * width for r in range(1, rounds + 1)]
            axis.bar(xs, seconds[key]["wall"], width, label=label)
    axis.set_xticks(range(1, rounds + 1), [f"round {r}" for r in range(1, rounds + 1)])
    axis.set_ylabel("wall seconds")
    axis.set_title("exact: the evaluation against a bare matrix multiply")
    axis.legend(fontsize=8)


def _approximate(axis, results: dict) -> None:
    exact = results["exact"]["query_sets"]
    for kind, setting in (("ivf", "nprobe"), ("hnsw", "ef_search")):
        for queries, marker in MARKERS.items():
            runs = [run for run in results[kind]["runs"] if run["queries"] == queries]
            speed = [exact[queries]["search_s"] / run["search_s"] for run in runs]
            recall = [run["recall_vs_flat@10"] for run in runs]
            axis.plot(recall, speed, marker=marker, label=f"{kind.upper()} ({queries} queries)")
            for run, x, y in zip(runs, recall, speed, strict=True):
                label = f"{setting} {run[setting]}"
                axis.annotate(label, (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
    axis.set_xlabel("recall@10 of the exact neighbours")
    axis.set_ylabel("speed-up against Flat search")
    axis.set_title("approximate indexes")
    axis.legend(fontsize=8)
