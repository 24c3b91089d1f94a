"""The Quality section of docs/BENCHMARKS.md and its plot, rendered from bench/results/quality_*.json; the
machine description every benchmark of this kind records; putting a section between its markers."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from measure import load_average, machine  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "BENCHMARKS.md"
RESULTS = ROOT / "bench" / "results"
BEGIN, END = "<!-- quality:begin -->", "<!-- quality:end -->"


def lscpu() -> dict[str, str]:
    """``lscpu``'s fields (empty where lscpu is missing)."""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return {}
    return {k.strip(): v.strip() for k, _, v in (line.partition(":") for line in out.splitlines()) if v}


def describe_machine() -> dict:
    """measure.machine() plus lscpu's model name, CPU count and threads per core, and the load average now."""
    described = machine()
    fields = lscpu()
    described["lscpu"] = {k: fields[k] for k in ("Model name", "CPU(s)", "Thread(s) per core", "Flags") if k in fields}
    if "Flags" in described["lscpu"]:  # keep only what bears on speed: the vector instructions
        flags = described["lscpu"].pop("Flags").split()
        described["lscpu"]["vector flags"] = " ".join(f for f in flags if f.startswith(("avx", "amx")))
    described["load_average"] = load_average()
    return described


def put_section(path: Path, begin: str, end: str, body: str) -> None:
    """Replace (or append) the text between ``begin`` and ``end`` in ``path``; the rest is left as it is."""
    text = path.read_text(encoding="utf-8") if path.exists() else "# Benchmarks\n"
    section = f"{begin}\n{body}{end}"
    if begin in text and end in text:
        text = text[: text.index(begin)] + section + text[text.index(end) + len(end) :]
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def machine_line(m: dict) -> str:
    cpu = m.get("lscpu", {}).get("Model name", m["cpu"])
    return (
        f"{m['nproc']} CPU cores ({cpu}, {m['memory_gib']} GiB), Python {m['python']}, {m['date']}, "
        f"load average {m.get('load_average')}"
    )


NOT_SHOWN = """What these figures do not show:

- Converged quality: each budget is a few minutes of CPU (tens of steps), far from a full fine-tuning; longer
  training, other learning rates or losses give other figures. The settings are the FitConfig defaults except
  those listed; none was tuned on these evaluation sets.
- Variance: one seed, one run per trainer. Differences in the third decimal are within what another seed moves.
- CIFAR-10 text-to-image has only 10 queries (one caption per class), so its metrics move in steps of 0.1.
- Large evaluation sets: Banking77 is a fixed stratified subset of the test set, not all 3,080 rows; CIFAR-10
  uses JPEG copies of the 32x32 test images (upscaled), not the original training set.
- sentence-transformers at its own best: it runs the same budget as ours (steps, batch size, learning rate,
  warm-up, weight decay, seed, fp32, no gradient clipping) with its standard loss and batch sampler for the
  data, not its own tuned recipe; its images and CLIP paths are not compared (its trainer has none here).
- Speed: the machine is shared and busy; the seconds are recorded in the JSON but are not a speed figure
  (bench/train_speed.py measures speed).
"""


def write_section(path: Path, results: dict, plot_name: str | None) -> None:
    put_section(path, BEGIN, END, render(results, plot_name))


def render(results: dict, plot_name: str | None) -> str:
    first = next(iter(results.values()))
    commands = sorted({r["command"] for r in results.values()})
    quick = [n for n, r in results.items() if r["quick"]]
    lines = [
        "## Quality: before -> after fine-tuning (default recipe) and against sentence-transformers",
        "",
        f"`{'`, `'.join(commands)}` on {machine_line(first['machine'])}. Raw figures in "
        "`bench/results/quality_<name>.json`. Each benchmark trains through the project's core (`build_model`, "
        "the data's default loss, `training.loop.train`, `evaluate_labeled` / `evaluate_pairs`), as a run on the "
        "Flow does; k = 20.",
    ]
    if quick:
        lines += ["", f"**Reduced budget (`--quick`)** for: {', '.join(quick)}; not the documented budget."]
    lines += ["", _summary(results), ""]
    for result in results.values():
        lines += [_table(result), ""]
    if plot_name:
        lines += [f"![before and after]({'../bench/results/' + plot_name})", ""]
    lines.append(NOT_SHOWN)
    return "\n".join(lines)


def _summary(results: dict) -> str:
    """The two targets per benchmark: every metric improves; ours >= sentence-transformers on every metric."""
    rows = [
        "| benchmark | budget | headline | before | ours after | ST after | every metric improves? | ours >= ST? |",
        "| --- " * 8 + "|",
    ]
    for r in results.values():
        ours, st, metric = r["ours"], r["st"].get("after"), r["metrics"][0]
        worse = [m for m in r["metrics"] if ours["after"][m] < ours["before"][m]]
        improves = "yes" if not worse else f"**no: {', '.join(worse)} degrade**"
        versus = "n/a"
        if st is not None:
            behind = [m for m in r["metrics"] if ours["after"][m] < st[m]]
            versus = "yes" if not behind else f"**no: {', '.join(behind)}**"
        st_cell = f"{st[metric]:.4f}" if st is not None else "n/a"
        budget = "quick" if r["quick"] else "documented"
        rows.append(
            f"| {r['name']} | {budget} | {metric} | {ours['before'][metric]:.4f} | {ours['after'][metric]:.4f} | "
            f"{st_cell} | {improves} | {versus} |"
        )
    return "\n".join(rows)


def _table(r: dict) -> str:
    ours, st = r["ours"], r["st"]
    settings = ", ".join(f"{k}={v}" for k, v in r["settings"].items())
    has_st = "after" in st
    header = "| metric | before | ours after | change |" + (" ST after | ours - ST |" if has_st else "")
    lines = [
        f"### {r['title']}",
        "",
        f"Model `{r['model']}`; train: {r['data']['train']}; eval: {r['data']['eval']}.",
        f"Ours: loss {ours['loss']} (the data's default), {ours['steps']} steps of batch {ours['batch_size']}; "
        f"settings besides the FitConfig defaults: {settings}.",
        f"sentence-transformers: {st.get('loss') or st.get('reason', 'not run')}"
        + (f", {st['steps']} steps." if has_st else "."),
        "",
        header,
        "| --- " * (6 if has_st else 4) + "|",
    ]
    for metric in r["metrics"]:
        before, after = ours["before"][metric], ours["after"][metric]
        row = f"| {metric} | {before:.4f} | {after:.4f} | {after - before:+.4f} |"
        if has_st:
            row += f" {st['after'][metric]:.4f} | {after - st['after'][metric]:+.4f} |"
        lines.append(row)
    return "\n".join(lines)


def plot(results: dict, path: Path) -> None:
    """One panel per benchmark: before, ours after and (where run) sentence-transformers after, per metric."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not results:
        return
    fig, axes = plt.subplots(1, len(results), figsize=(4.2 * len(results), 3.8), squeeze=False)
    for axis, r in zip(axes[0], results.values(), strict=True):
        bars = {"before": r["ours"]["before"], "ours after": r["ours"]["after"]}
        if "after" in r["st"]:
            bars["ST after"] = r["st"]["after"]
        width = 0.8 / len(bars)
        for i, (label, values) in enumerate(bars.items()):
            xs = [j + i * width for j in range(len(r["metrics"]))]
            axis.bar(xs, [values[m] for m in r["metrics"]], width, label=label)
        axis.set_xticks([j + width * (len(bars) - 1) / 2 for j in range(len(r["metrics"]))], r["metrics"], fontsize=8)
        axis.set_title(r["name"] + (" (quick)" if r["quick"] else ""), fontsize=10)
        axis.set_ylim(0, 1)
        axis.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
