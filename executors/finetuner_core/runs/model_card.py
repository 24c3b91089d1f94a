"""The model card of a run's artifact: ``README.md`` with Hugging Face model-card front matter (library_name,
tags, base_model, pipeline_tag), the base model (its id, where its weights came from, their revision, the licence
its metadata declares; the run it continues), the data sizes and label counts, the loss and the
hyperparameters, the metrics before and after training, and how to load the model with each library that can.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from finetuner_core.config import FitConfig
from finetuner_core.models.base import CONFIG_FILE, EmbeddingModel
from finetuner_core.models.families import FAMILIES
from finetuner_core.models.source import CACHE, HUB
from finetuner_core.runs.continuation import RUN
from finetuner_protocol.data.records import LABELED
from finetuner_protocol.shapes import CORRELATION, SHAPES, Shape

CARD_FILE = "README.md"
HUB_IDS = {"all-MiniLM-L6-v2": "sentence-transformers/all-MiniLM-L6-v2"}
PIPELINES = {
    "text": "sentence-similarity",
    "image": "image-feature-extraction",
    "text-image": "zero-shot-image-classification",
}
COUNTS = ("queries", "queries_without_relevant")
HYPERPARAMETERS = (
    "loss_options",
    "miner",
    "miner_options",
    "sampler",
    "optimizer",
    "optimizer_options",
    "learning_rate",
    "scheduler",
    "warmup_ratio",
    "epochs",
    "max_steps",
    "batch_size",
    "num_items_per_class",
    "gradient_accumulation_steps",
    "max_grad_norm",
    "precision",
    "seed",
)


def data_summary(splits: Mapping[str, Sequence[Any]]) -> dict[str, dict[str, int]]:
    """Per split (``train``, ``eval``): the number of items and of distinct labels, texts or queries (the shape's
    ``card_counts``). Takes the records of ``data.records``."""
    summary = {}
    for split, records in splits.items():
        if not records:
            continue
        key, field = SHAPES[records[0].shape].card_counts
        summary[split] = {"items": len(records), key: len({getattr(r, field, None) for r in records})}
    return summary


def write_model_card(
    artifact_dir: str | Path,
    config: FitConfig | Mapping[str, Any],
    metrics: Mapping[str, Mapping[str, float]],
    data_summary: Mapping[str, Mapping[str, int]],
    training: Mapping[str, Any] | None = None,
    shape: str = LABELED,
) -> Path:
    """Write ``README.md`` into ``artifact_dir`` (after the model is saved there); its path.

    ``metrics``: the run's ``{"before": {...}, "step N": {...}, "after": {...}}``; ``data_summary``: see
    :func:`data_summary`; ``training`` (optional): ``steps``, ``loss`` (the last), ``seconds``; ``shape``: the
    training data's shape (its ``card_evaluation`` says how the metrics were measured).
    """
    directory = Path(artifact_dir)
    config = config if isinstance(config, FitConfig) else FitConfig.model_validate(config)
    model = _saved_model(directory)
    sections = [
        _front_matter(config, model, directory),
        _intro(config, model),
        _source_section(_source(config, model)),
        _data_section(data_summary),
        _training_section(config, training),
        _metrics_section(metrics, SHAPES[shape]),
        _usage_section(model, directory),
    ]
    path = directory / CARD_FILE
    path.write_text("\n".join(section for section in sections if section), encoding="utf-8")
    return path


def _saved_model(directory: Path) -> dict[str, Any]:
    """``finetuner.json`` of the artifact: name, family, modality, dim (empty when not saved yet)."""
    path = directory / CONFIG_FILE
    return json.loads(path.read_text("utf-8")) if path.exists() else {}


def base_model_id(name: str, source: Mapping[str, Any] | None = None) -> str | None:
    """The Hugging Face id of a base model, when it has one (a local folder has none): the id its ``source``
    resolved to (the base of a continued run's), else what its name says."""
    base = _base(source)
    if base and base.get("kind") in (CACHE, HUB):
        return base.get("id")
    name = str((base or {}).get("id") or name)
    if name in HUB_IDS:
        return HUB_IDS[name]
    if name.startswith(("timm/", "hf-hub:")):
        return name.removeprefix("hf-hub:")
    return None


def _source(config: FitConfig, model: Mapping[str, Any]) -> dict[str, Any] | None:
    """Where the model's weights came from: the saved model's record, else the run's config."""
    return model.get("source") or config.model_source


def _base(source: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
    """The base model's source: a continued run's base, else ``source`` itself."""
    if source and source.get("kind") == RUN:
        return source.get("base")
    return source


def _source_section(source: Mapping[str, Any] | None) -> str:
    if not source:
        return ""
    lines = ["## Base model", "", "| | |", "|---|---|"]
    if source.get("kind") == RUN:
        lines.append(f"| continued from run | `{source.get('id')}` (artifact `{source.get('revision')}`) |")
    base = _base(source) or {}
    hub_id = base_model_id(str(base.get("id") or ""), base)
    rows = {
        "model": base.get("id"),
        "Hugging Face id": hub_id if hub_id != base.get("id") else None,
        "source": base.get("kind"),
        "revision": base.get("revision"),
        "licence (as its metadata declares)": base.get("license"),
    }
    lines += [f"| {name} | `{value}` |" for name, value in rows.items() if value]
    return "\n".join(lines) + "\n"


def _onnx_files(directory: Path) -> list[str]:
    return sorted(path.relative_to(directory).as_posix() for path in (directory / "onnx").glob("*.onnx"))


def _front_matter(config: FitConfig, model: Mapping[str, Any], directory: Path) -> str:
    family, modality = model.get("family", ""), model.get("modality", config.modality)
    tags = ["finetuner", "embeddings", "metric-learning", config.loss_name]
    tags += [family] if family and family not in tags else []
    tags += ["onnx"] if _onnx_files(directory) else []
    matter: dict[str, Any] = {"library_name": _family(model).library, "tags": tags}
    if base := base_model_id(config.model, _source(config, model)):
        matter["base_model"] = base
    matter["pipeline_tag"] = PIPELINES.get(modality, "feature-extraction")
    return f"---\n{yaml.safe_dump(matter, sort_keys=False)}---\n"


def _intro(config: FitConfig, model: Mapping[str, Any]) -> str:
    title = config.run_name or f"{Path(config.model).name} fine-tuned"
    dim = f", {model['dim']}-d embeddings" if model.get("dim") else ""
    family = f" ({model['family']}, {model.get('modality', config.modality)}{dim})" if model.get("family") else ""
    return (
        f"# {title}\n\nAn embedding model fine-tuned from `{config.model}`{family} with metric learning "
        f"({config.loss_name}) by Finetuner, self-hosted.\n"
    )


def _data_section(summary: Mapping[str, Mapping[str, int]]) -> str:
    if not summary:
        return ""
    columns = list(dict.fromkeys(key for counts in summary.values() for key in counts))
    lines = ["## Data", "", "| split | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
    lines += [f"| {split} | " + " | ".join(str(c.get(k, "")) for k in columns) + " |" for split, c in summary.items()]
    return "\n".join(lines) + "\n"


def _training_section(config: FitConfig, training: Mapping[str, Any] | None) -> str:
    settings = {"loss": config.loss_name, **{name: getattr(config, name) for name in HYPERPARAMETERS}}
    if not config.uses_miner:
        del settings["miner"], settings["miner_options"]
    lines = ["## Training", "", "| setting | value |", "|---|---|"]
    lines += [f"| {name} | `{_value(value)}` |" for name, value in settings.items() if value not in (None, {}, [])]
    if training:
        done = {"steps": training.get("steps"), "final loss": training.get("loss"), "seconds": training.get("seconds")}
        lines += ["", "| training | value |", "|---|---|"]
        lines += [f"| {name} | {_value(value)} |" for name, value in done.items() if value is not None]
    return "\n".join(lines) + "\n"


def _value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, dict | list):
        return json.dumps(value)
    return str(value)


def _metrics_section(metrics: Mapping[str, Mapping[str, float]], shape: Shape) -> str:
    before, after = metrics.get("before", {}), metrics.get("after", {})
    names = [n for n in dict.fromkeys([*before, *after]) if n not in COUNTS and not n.endswith("_queries")]
    if not names:
        return "## Evaluation\n\nNo evaluation data was given.\n"
    counted = "pairs" if shape.metrics == CORRELATION else "queries"  # what the evaluation counts
    names = [name for name in names if name != counted]
    count = after.get(counted, before.get(counted))
    lines = ["## Evaluation", "", shape.card_evaluation.format(count=count), ""]
    lines += ["| metric | before | after | change |", "|---|---|---|---|"]
    for name in names:
        b, a = before.get(name), after.get(name)
        change = f"{a - b:+.4f}" if a is not None and b is not None else ""
        lines.append(f"| {name} | {_metric(b)} | {_metric(a)} | {change} |")
    return "\n".join(lines) + "\n"


def _metric(value: float | None) -> str:
    return "" if value is None else f"{value:.4f}"


def _family(model: Mapping[str, Any]) -> type[EmbeddingModel]:
    """The saved model's family class (the base class, whose card text is generic, when there is none)."""
    return FAMILIES.get(model.get("family", ""), EmbeddingModel)


def _usage_section(model: Mapping[str, Any], directory: Path) -> str:
    family = _family(model)
    example = '["first sentence", "second sentence"]' if model.get("modality") == "text" else "[...]  # your inputs"
    parts = ["## Usage", "", _FINETUNER.replace("INPUTS", example)]
    parts += [family.card_usage()] if family is not EmbeddingModel else []
    files = _onnx_files(directory)
    parts.append(family.card_onnx_usage(files) if files else _NO_ONNX)
    return "\n".join(parts)


_NO_ONNX = "ONNX: fine-tune with `to_onnx=True` to add `onnx/model.onnx` to the artifact.\n"

_FINETUNER = """With Finetuner (any family; the same preprocessing, pooling, projection and normalisation):

```python
import finetuner

model = finetuner.get_model("path/to/model")
inputs = INPUTS
embeddings = finetuner.encode(model, inputs)
```
"""
