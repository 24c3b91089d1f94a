"""A fit's (or an evaluation's) settings from a model name and keyword options, checked here before anything is
sent."""

from __future__ import annotations

from typing import Any

from finetuner_protocol.model_options import ModelOptions
from finetuner_protocol.settings import FitSettings, parse_settings


def settings_of(model: str, options: dict[str, Any]) -> FitSettings:
    """The fit's settings; model options given by name (Finetuner's ``freeze=``, ``output_dim=`` ...) go into
    ``model_options``."""
    model_options = dict(options.pop("model_options", None) or {})
    for name in list(options):
        if name in ModelOptions.model_fields:
            model_options[name] = options.pop(name)
    return parse_settings({"model": model, "model_options": model_options, **options})
