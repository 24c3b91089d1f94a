"""A run's report: ``index.html`` with PNG plots (loss per step, each metric per evaluation, before/after), the
metric table and the sample queries whose top results changed most in training, before and after side by side
with their labels (images as thumbnails); and rich tables of metrics and examples for a terminal.

Everything is read from the run's structured records and answers (``finetuner_protocol``), never from text.

Plots are drawn with matplotlib's object API (``Figure``, saved by the Agg canvas): no pyplot, no display.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from itertools import zip_longest
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from rich.console import Console
from rich.table import Table

from finetuner.progress import steps as step_records
from finetuner_protocol.logs import Step
from finetuner_protocol.runs import STAGE_AFTER, STAGE_BEFORE, stage_step
from finetuner_protocol.settings import FitSettings

COUNTS = ("queries", "queries_without_relevant")
THUMBNAIL_PX = 160  # images among the sample queries and their results
MODEL_BEFORE, MODEL_AFTER = "before training", "after training"
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
    periodic = [step for stage in metrics if (step := stage_step(stage)) is not None]
    end = last_step if last_step is not None else max(periodic, default=0) + 1
    steps = {}
    for stage in metrics:
        step = stage_step(stage)
        steps[stage] = 0 if stage == STAGE_BEFORE else step if step is not None else end
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
    before, after = metrics.get(STAGE_BEFORE, {}).get(name), metrics.get(STAGE_AFTER, {}).get(name)
    if before is None or after is None or is_count(name):
        return ""
    return f"{after - before:+.4f}"


# --- plots ---------------------------------------------------------------------------------------------------
def plot_loss(steps: Sequence[Step], path: Path) -> Path:
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
    before, after = metrics[STAGE_BEFORE], metrics[STAGE_AFTER]
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
    config = run.info()["config"]
    options = {"examples": examples, "example_k": example_k}
    return run.evaluate(eval_data, full=True, eval_ks=config["eval_ks"], evaluation=options)


def changed_queries(run, eval_data: Any, examples: int = 3, example_k: int = 5) -> list[dict[str, Any]]:
    """The run's base model and its tuned model on ``eval_data``: the ``examples`` queries whose top ``example_k``
    results changed most in training, each with both rankings (labels, relevance, image thumbnails)."""
    config = run.info()["config"]
    base = {"name": MODEL_BEFORE, "model": config["model"], "model_options": config["model_options"]}
    models = [base, {"name": MODEL_AFTER, "run_id": run.id}]
    options = {"examples": examples, "example_k": example_k, "thumbnail_px": THUMBNAIL_PX}
    answer = run.evaluate(eval_data, models=models, full=True, eval_ks=config["eval_ks"], evaluation=options)
    return answer["changes"]


def _content_html(entry: Mapping[str, Any]) -> str:
    """An item as the report shows it: its thumbnail (images), else its content (texts), else its name."""
    if entry.get("thumbnail"):
        alt = html.escape(str(entry.get("name") or entry.get("content") or "image"))
        return f'<img class="thumbnail" src="{html.escape(entry["thumbnail"])}" alt="{alt}">'
    return html.escape(str(entry.get("content") if entry.get("content") is not None else entry.get("name", "")))


def _result_cells(result: Mapping[str, Any] | None) -> str:
    """A result's cells: content, label (marked when relevant; without labels, whether it is) and score."""
    if result is None:
        return "<td></td><td></td><td></td>"
    relevant = result["relevance"] > 0
    label = html.escape(str(result["label"])) if "label" in result else ("relevant" if relevant else "")
    mark = ' class="relevant">&#10003; ' if relevant else ">"
    return f'<td>{_content_html(result)}</td><td{mark}{label}</td><td class="number">{result["score"]:.4f}</td>'


def examples_html(changes: Sequence[Mapping[str, Any]]) -> str:
    """One table per query: its top results before and after training side by side, with their labels."""
    parts = []
    for change in changes:
        query = change["query"]
        label = f' <span class="label">{html.escape(str(query["label"]))}</span>' if "label" in query else ""
        rows = "".join(
            f'<tr class="result"><td>{rank}</td>{_result_cells(before)}{_result_cells(after)}</tr>'
            for rank, (before, after) in enumerate(zip_longest(change["before"], change["after"]), start=1)
        )
        parts.append(
            f'<div class="example"><h3>query: {_content_html(query)}{label}</h3>'
            f"<p>{change['relevant_in_index']} relevant in the index; relevant results shown: "
            f"{change['relevant_before']} before training, {change['relevant_after']} after</p>"
            '<table class="results"><tr><th>rank</th><th>before training</th><th>label</th><th>score</th>'
            f"<th>after training</th><th>label</th><th>score</th></tr>{rows}</table></div>"
        )
    return "".join(parts)


# --- the page ------------------------------------------------------------------------------------------------
STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 72em; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left; vertical-align: top; }
td.number { text-align: right; font-variant-numeric: tabular-nums; }
img.plot { display: block; max-width: 100%; margin: 0.5em 0 1.5em; }
img.thumbnail { max-width: 160px; max-height: 160px; }
td.relevant { background: #eaf6ea; }
span.label { font-weight: normal; color: #555; margin-left: 0.5em; }
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
    if not config:
        return None
    settings = {name: value for name, value in config.items() if name in FitSettings.model_fields}  # not the service's
    return FitSettings.model_validate(settings).loss_name


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


def write_plots(metrics, steps: Sequence[Step], directory: Path) -> dict[str, str]:
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
    if STAGE_BEFORE in metrics and STAGE_AFTER in metrics:
        plot_before_after(metrics, directory / PLOTS["before_after"][0])
        shown["before_after"] = _plot_img("before_after")
    else:
        shown["before_after"] = '<p class="note">needs metrics before and after training</p>'
    return shown


def write_report(run, directory: str | Path, eval_data: Any = None, examples: int = 3, example_k: int = 5) -> Path:
    """Write ``directory/index.html`` (and its PNG plots) for ``run``; the path of ``index.html``.

    With ``eval_data`` (what ``fit`` takes), a finished run's base and tuned models are evaluated on it in the
    Flow to show the ``examples`` queries whose top ``example_k`` results changed most in training, before and
    after side by side with their labels (images as thumbnails)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    info, metrics = run.info(), run.metrics()
    plots = write_plots(metrics, step_records(run.records()), directory)
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
    changes = changed_queries(run, eval_data, examples, example_k)
    intro = (
        '<p class="note">the queries whose top results changed most in training: the base model\'s results and '
        "the tuned model's, side by side (relevant results marked &#10003;)</p>"
    )
    return f'{intro}<div id="examples">{examples_html(changes)}</div>'


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
