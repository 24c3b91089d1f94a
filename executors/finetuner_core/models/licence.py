"""The licence a model's own metadata declares: the model card's front matter ``license:`` (the ``README.md`` of a
Hugging Face, sentence-transformers or open_clip folder), else a ``license`` field of its ``config.json`` or
``open_clip_config.json``. None when the metadata declares none (nothing is guessed)."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

CARD_FILE = "README.md"
CONFIG_FILES = ("config.json", "open_clip_config.json")


def model_licence(path: Path | None) -> str | None:
    """The licence declared in the model folder ``path`` (None for a single weights file or no folder)."""
    if path is None or not Path(path).is_dir():
        return None
    folder = Path(path)
    declared = _front_matter(folder / CARD_FILE).get("license")
    for name in CONFIG_FILES:
        if declared:
            break
        declared = _json(folder / name).get("license")
    if isinstance(declared, list):
        declared = ", ".join(str(item) for item in declared)
    return str(declared).strip() or None if declared else None


def _front_matter(path: Path) -> dict:
    """The YAML block between the first two ``---`` lines of a model card ({} when there is none)."""
    try:
        text = path.read_text("utf-8")
    except (OSError, UnicodeDecodeError):
        return {}
    if not text.startswith("---"):
        return {}
    end = text.find("\n---", 3)
    try:
        matter = yaml.safe_load(text[3:end]) if end > 0 else None
    except yaml.YAMLError:
        return {}
    return matter if isinstance(matter, dict) else {}


def _json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text("utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}
