"""A request's fit configuration as the service reads it: parsed whole, its model and weights file from allowed
places only."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from finetuner_core.config import FitConfig, parse_fit_config
from finetuner_protocol.backbones import check_model_source


def fit_config(raw: dict[str, Any], model_roots: Iterable[Path]) -> FitConfig:
    """A request's fit configuration (ConfigError naming each bad field), its model and weights file from allowed
    places only (``finetuner_protocol.backbones.check_model_source``)."""
    config = parse_fit_config(raw)
    check_model_source(config.model, config.model_options.weights, model_roots)
    return config
