"""How an evaluation searches and what it shows: typed options, validated where they enter."""

from __future__ import annotations

import inspect
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from finetuner_core.evaluation.errors import EvaluationError
from finetuner_core.evaluation.index import INDEXES, METRIC_TYPES

_NOT_OPTIONS = {"self", "vectors", "metric"}


def index_option_names(kind: str) -> list[str]:
    """The parameters an index of ``kind`` takes (e.g. ``nlist``, ``nprobe`` for ``ivf``)."""
    return [p for p in inspect.signature(INDEXES[kind].__init__).parameters if p not in _NOT_OPTIONS]


class EvaluationOptions(BaseModel):
    """Search and display settings of an evaluation; the defaults are exact search with cosine similarity."""

    model_config = ConfigDict(extra="forbid")

    metric: Literal[METRIC_TYPES] = Field("cosine", description="cosine | inner_product | l2")
    index: Literal[tuple(INDEXES)] = Field("flat", description="flat (exact) | ivf | hnsw (approximate)")
    index_options: dict[str, Any] = Field(default_factory=dict, description="e.g. {'nprobe': 32} for ivf")
    examples: int = Field(3, ge=0, le=100, description="sample queries shown with their top results")
    example_k: int = Field(10, ge=1, le=100, description="results shown per sample query")
    thumbnail_px: int = Field(0, ge=0, le=512, description="example images as PNG thumbnails this big")
    max_depth: int = Field(1000, ge=1, description="deepest ranking retrieved for R-precision (>= max k)")
    batch_size: int = Field(4096, ge=1, description="queries searched at once (bounds memory)")
    exact_check: int = Field(1000, ge=0, description="approximate index: queries also searched exactly")

    @model_validator(mode="after")
    def _known_index_options(self) -> EvaluationOptions:
        allowed = index_option_names(self.index)
        unknown = sorted(set(self.index_options) - set(allowed))
        if unknown:
            raise ValueError(f"unknown {self.index} index options {unknown}; allowed: {', '.join(allowed)}")
        return self


def parse_evaluation_options(options: dict[str, Any] | EvaluationOptions | None) -> EvaluationOptions:
    """Validate ``options``, or raise :class:`EvaluationError` naming each bad field."""
    if isinstance(options, EvaluationOptions):
        return options
    try:
        return EvaluationOptions.model_validate(options or {})
    except ValidationError as exc:
        lines = [f"  {'.'.join(map(str, e['loc'])) or 'evaluation'}: {e['msg']}" for e in exc.errors()]
        raise EvaluationError("invalid evaluation options:\n" + "\n".join(lines)) from None
