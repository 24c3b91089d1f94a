"""A run's report: ``index.html`` with PNG plots (loss per step, each metric per evaluation, before/after), the
metric table and sample queries with their top results; and rich tables of metrics and examples for a terminal.

Plots are drawn with matplotlib's object API (``Figure``, saved by the Agg canvas): no pyplot, no display.
"""

from __future__ import annotations

import base64
import html
import io
import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from PIL import Image
from rich.console import Console
from rich.table import Table

from finetuner.progress import StepLine, step_lines

COUNTS = ("queries", "queries_without_relevant")
STAGE_STEP = re.compile(r"^step (\d+)$")
THUMBNAIL_PX = 96
PLOTS = {
    "loss": ("loss.png", "Training loss"),
    "metrics": ("metrics.png", "Metrics per evaluation"),
    "before_after": ("before_after.png", "Before and after training"),
}


# --- metrics -------------------------------------------------------------------------------------------------
def is_count(name: str) -> bool:
    """Counts (queries, queries without relevant items, ...) are reported, not plotted."""
    return name in COUNTS or name.endswith("_queries")


def metric_names(metrics: Mapping[str, Mapping[str, float]]) -> list[str]:
    """Every metric of any stage, counts last, in first-seen order."""
    names = list(dict.fromkeys(name for stage in metrics.values() for name in stage))
    return [n for n in names if not is_count(n)] + [n for n in names if is_count(n)]


def stage_steps(metrics: Mapping[str, Any], last_step: int | None) -> dict[str, int]:
    """The training step each stage was measured at: ``before`` 0, ``step N`` N, ``after`` the last step."""
    periodic = [int(m[1]) for stage in metrics if (m := STAGE_STEP.match(stage))]
    end = last_step if last_step is not None else max(periodic, default=0) + 1
    steps = {}
    for stage in metrics:
        match = STAGE_STEP.match(stage)
        steps[stage] = 0 if stage == "before" else int(match[1]) if match else end
    return steps


def _kind(name: str) -> tuple[str, int]:
    """``precision@10`` -> (``precision``, 10); ``r_precision`` -> (``r_precision``, 0)."""
    kind, _, k = name.partition("@")
    return kind, int(k) if k.isdigit() else 0


def _format(name: str, value: Any) -> str:
    """Counts as whole numbers, metrics to four decimals."""
    if isinstance(value, int | float) and is_count(name):
        return str(int(value))
    return f"{value:.4f}" if isinstance(value, int | float) else str(value)


def _change(metrics: Mapping[str, Mapping[str, float]], name: str) -> str:
    before, after = metrics.get("before", {}).get(name), metrics.get("after", {}).get(name)
    if before is None or after is None or is_count(name):
        return ""
    return f"{after - before:+.4f}"


# --- plots ---------------------------------------------------------------------------------------------------
def plot_loss(steps: Sequence[StepLine], path: Path) -> Path:
    figure = Figure(figsize=(7, 3.5), dpi=100, layout="constrained")
    axes = figure.add_subplot()
    axes.plot([s.step for s in steps], [s.loss for s in steps], marker="o" if len(steps) < 30 else None)
    axes.set(xlabel="step", ylabel="loss", title="training loss")
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.grid(alpha=0.3)
    figure.savefig(path, format="png")
    return path


def plot_metrics(metrics: Mapping[str, Mapping[str, float]], steps: Mapping[str, int], path: Path) -> Path:
    """One panel per metric kind (precision, recall, mrr ...), one line per cut-off k, over the evaluations."""
    kinds: dict[str, list[str]] = {}
    for name in metric_names(metrics):
        if not is_count(name):
            kinds.setdefault(_kind(name)[0], []).append(name)
    columns = min(3, max(1, len(kinds)))
    rows = math.ceil(len(kinds) / columns) or 1
    figure = Figure(figsize=(4 * columns, 2.8 * rows), dpi=100, layout="constrained")
    for index, (kind, names) in enumerate(kinds.items()):
        axes = figure.add_subplot(rows, columns, index + 1)
        for name in sorted(names, key=lambda n: _kind(n)[1]):
            points = sorted((steps[s], v[name]) for s, v in metrics.items() if name in v)
            axes.plot(*zip(*points, strict=True), marker="o", label=name)
        axes.set(title=kind, xlabel="step")
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
        axes.grid(alpha=0.3)
        axes.legend(fontsize="small")
    figure.savefig(path, format="png")
    return path


def plot_before_after(metrics: Mapping[str, Mapping[str, float]], path: Path) -> Path:
    """Bars of every metric before and after training, but the counts and kinds that exceed 1 (DCG)."""
    before, after = metrics["before"], metrics["after"]
    names = [n for n in metric_names(metrics) if not is_count(n) and n in before and n in after]
    unbounded = {_kind(n)[0] for n in names if max(before[n], after[n]) > 1}
    names = [n for n in names if _kind(n)[0] not in unbounded]
    figure = Figure(figsize=(max(6.0, 0.45 * len(names) + 2), 4), dpi=100, layout="constrained")
    axes = figure.add_subplot()
    positions = range(len(names))
    axes.bar([p - 0.2 for p in positions], [before[n] for n in names], width=0.4, label="before")
    axes.bar([p + 0.2 for p in positions], [after[n] for n in names], width=0.4, label="after")
    axes.set_xticks(list(positions), names, rotation=60, ha="right", fontsize="small")
    axes.set(title="before and after training", ylim=(0, 1.05))
    axes.grid(alpha=0.3, axis="y")
    axes.legend(loc="upper left", bbox_to_anchor=(1.01, 1))
    figure.savefig(path, format="png")
    return path


# --- examples ------------------------------------------------------------------------------------------------
def sample_queries(run, eval_data: Any, examples: int = 3, example_k: int = 5) -> dict[str, Any]:
    """The run's tuned model on ``eval_data``: the evaluator's whole answer, with ``examples`` sample queries and
    their top ``example_k`` results."""
    from finetuner.api import evaluate

    ks = run.info()["config"]["eval_ks"]
    options = {"examples": examples, "example_k": example_k}
    return evaluate(eval_data, run_id=run.id, full=True, eval_ks=ks, evaluation=options)


def local_inputs(eval_data: Any, config: Mapping[str, Any]) -> tuple[list[Any], list[Any]]:
    """The query and index inputs of ``eval_data`` in the evaluator's order, read here (for thumbnails)."""
    from finetuner.data import to_wire_docs
    from finetuner_core.config import FitConfig
    from finetuner_core.evaluation.dataset import records_set
    from finetuner_protocol.data.intake import parse_data

    fit = FitConfig.model_validate(config)
    docs = to_wire_docs(eval_data, "eval", fit.modality)
    eval_set = records_set(parse_data(docs, fit.modality, fit.csv_options, 1, required=("eval",))["eval"])
    return eval_set.queries, eval_set.index_inputs


def thumbnail_uri(image: Image.Image, size: int = THUMBNAIL_PX) -> str:
    """A PNG data URI of ``image`` shrunk to fit ``size`` pixels."""
    small = image.convert("RGB")
    small.thumbnail((size, size))
    buffer = io.BytesIO()
    small.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _content_html(entry: Mapping[str, Any], inputs: Sequence[Any] | None) -> str:
    position = entry.get("position")
    known = inputs is not None and isinstance(position, int) and 0 <= position < len(inputs)
    value = inputs[position] if known else None
    if isinstance(value, Image.Image):
        alt = html.escape(str(entry.get("name") or entry.get("content") or "image"))
        return f'<img class="thumbnail" src="{thumbnail_uri(value)}" alt="{alt}">'
    return html.escape(str(entry.get("content") if entry.get("content") is not None else entry.get("name", "")))


def examples_html(examples: Sequence[Mapping[str, Any]], queries=None, index=None) -> str:
    parts = []
    for example in examples:
        query = example["query"]
        rows = "".join(
            f'<tr class="result{" relevant" if r["relevance"] > 0 else ""}"><td>{r["rank"]}</td>'
            f"<td>{_content_html(r, index)}</td><td>{r['score']:.4f}</td>"
            f"<td>{'yes' if r['relevance'] > 0 else 'no'}</td></tr>"
            for r in example["results"]
        )
        parts.append(
            f'<div class="example"><h3>query: {_content_html(query, queries)}</h3>'
            f"<p>{example['relevant_in_index']} relevant in the index</p>"
            f'<table class="results"><tr><th>rank</th><th>result</th><th>score</th><th>relevant</th></tr>{rows}'
            "</table></div>"
        )
    return "".join(parts)


# --- the page ------------------------------------------------------------------------------------------------
STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 72em; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left; vertical-align: top; }
td.number { text-align: right; font-variant-numeric: tabular-nums; }
img.plot { display: block; max-width: 100%; margin: 0.5em 0 1.5em; }
img.thumbnail { max-width: 96px; max-height: 96px; }
tr.relevant td { background: #eaf6ea; }
.note { color: #777; }
"""


def summary_html(info: Mapping[str, Any]) -> str:
    config = info.get("config", {})
    rows = {
        "run": info.get("run_id"),
        "name": info.get("name"),
        "experiment": info.get("experiment"),
        "status": info.get("status"),
        "error": info.get("error"),
        "model": config.get("model"),
        "loss": loss_name(config),
        "epochs": config.get("epochs"),
        "batch size": config.get("batch_size"),
        "learning rate": config.get("learning_rate"),
    }
    cells = "".join(f"<tr><th>{k}</th><td>{html.escape(str(v))}</td></tr>" for k, v in rows.items() if v is not None)
    return f'<table id="summary">{cells}</table>'


def loss_name(config: Mapping[str, Any]) -> str | None:
    """The loss a run trains with (its ``loss``, or the default for its data)."""
    from finetuner_core.config import FitConfig

    return FitConfig.model_validate(config).loss_name if config else None


def metric_table_html(metrics: Mapping[str, Mapping[str, float]]) -> str:
    stages = list(metrics)
    head = "".join(f"<th>{html.escape(s)}</th>" for s in stages)
    body = "".join(
        f"<tr><td>{html.escape(name)}</td>"
        + "".join(
            f'<td class="number">{_format(name, metrics[s][name]) if name in metrics[s] else ""}</td>' for s in stages
        )
        + f'<td class="number">{_change(metrics, name)}</td></tr>'
        for name in metric_names(metrics)
    )
    return f'<table id="metric-table"><tr><th>metric</th>{head}<th>change</th></tr>{body}</table>'


def _section(title: str, body: str) -> str:
    return f"<h2>{html.escape(title)}</h2>\n{body}\n"


def _plot_img(key: str) -> str:
    file, title = PLOTS[key]
    return f'<img class="plot" id="plot-{key}" src="{file}" alt="{html.escape(title)}">'


def write_plots(metrics, steps: Sequence[StepLine], directory: Path) -> dict[str, str]:
    """The plots the data allow, each as ``key -> <img>``, or a note saying why it is missing."""
    last = steps[-1].step if steps else None
    shown = {}
    if steps:
        plot_loss(steps, directory / PLOTS["loss"][0])
        shown["loss"] = _plot_img("loss")
    else:
        shown["loss"] = '<p class="note">no training steps in the logs</p>'
    if metrics:
        plot_metrics(metrics, stage_steps(metrics, last), directory / PLOTS["metrics"][0])
        shown["metrics"] = _plot_img("metrics")
    else:
        shown["metrics"] = '<p class="note">no evaluation data: no metrics</p>'
    if "before" in metrics and "after" in metrics:
        plot_before_after(metrics, directory / PLOTS["before_after"][0])
        shown["before_after"] = _plot_img("before_after")
    else:
        shown["before_after"] = '<p class="note">needs metrics before and after training</p>'
    return shown


def write_report(run, directory: str | Path, eval_data: Any = None, examples: int = 3, example_k: int = 5) -> Path:
    """Write ``directory/index.html`` (and its PNG plots) for ``run``; the path of ``index.html``.

    With ``eval_data`` (what ``fit`` takes), a finished run's tuned model is evaluated on it in the Flow to show
    ``examples`` sample queries with their top ``example_k`` results (images as thumbnails)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    info, metrics = run.info(), run.metrics()
    plots = write_plots(metrics, step_lines(run.logs().splitlines()), directory)
    sections = [summary_html(info)]
    sections += [_section(PLOTS[key][1], plots[key]) for key in PLOTS]
    table = metric_table_html(metrics) if metrics else '<p class="note">no metrics</p>'
    sections.append(_section("Metrics", table))
    sections.append(_section("Sample queries", _examples_section(run, info, eval_data, examples, example_k)))
    title = html.escape(f"Run {info.get('name') or run.id}")
    page = (
        f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8"><title>{title}</title>'
        f"<style>{STYLE}</style></head>\n<body>\n<h1>{title}</h1>\n{''.join(sections)}</body></html>\n"
    )
    path = directory / "index.html"
    path.write_text(page, encoding="utf-8")
    return path


def _examples_section(run, info, eval_data, examples: int, example_k: int) -> str:
    if eval_data is None:
        return '<p class="note">pass evaluation data to see sample queries with their top results</p>'
    if info.get("status") != "FINISHED":
        return f'<p class="note">the run is {html.escape(str(info.get("status")))}: no tuned model to query</p>'
    answer = sample_queries(run, eval_data, examples, example_k)
    queries = index = None
    if _takes_images(info["config"]):
        queries, index = local_inputs(eval_data, info["config"])
    return f'<div id="examples">{examples_html(answer["examples"], queries, index)}</div>'


def _takes_images(config: Mapping[str, Any]) -> bool:
    from finetuner_core.config import FitConfig

    return FitConfig.model_validate(config).modality in ("image", "text-image")


# --- terminal ------------------------------------------------------------------------------------------------
def display_metrics(run_or_metrics, console: Console | None = None) -> Table:
    """Print (and return) a table of a run's metrics (a Run, or its ``metrics()``): before, after, change."""
    metrics = run_or_metrics.metrics() if hasattr(run_or_metrics, "metrics") else run_or_metrics
    stages = [s for s in ("before", "after") if s in metrics] or list(metrics)[-1:]
    table = Table("metric", *stages, *(["change"] if len(stages) == 2 else []), title="metrics")
    for name in metric_names(metrics):
        values = [_format(name, metrics[s][name]) if name in metrics[s] else "" for s in stages]
        table.add_row(name, *values, *([_change(metrics, name)] if len(stages) == 2 else []))
    (console or Console()).print(table)
    return table


def display_examples(examples: Sequence[Mapping[str, Any]], console: Console | None = None) -> list[Table]:
    """Print (and return) one table per sample query (``evaluate(..., full=True)["examples"]``)."""
    console = console or Console()
    tables = []
    for example in examples:
        query = example["query"]
        table = Table("rank", "result", "score", "relevant", title=f"query: {query.get('content') or query['name']}")
        for result in example["results"]:
            content = str(result.get("content") or result.get("name", ""))
            relevant = "yes" if result["relevance"] > 0 else "no"
            table.add_row(str(result["rank"]), content, f"{result['score']:.4f}", relevant)
        console.print(table)
        tables.append(table)
    return tables
