"""ONNX export of an embedding model: the same inputs a batch has after preprocessing, the same embeddings out.

Each family exports itself (``EmbeddingModel.export_onnx``) with the helpers here: text models take
``input_ids``, ``attention_mask`` (and ``token_type_ids`` when the tokenizer makes them); image models take
``pixel_values`` ``# (batch, 3, size, size)``; MLPs take ``vectors``; a CLIP model is exported as one file per
tower. Batch (and token) axes are dynamic. The output is ``embedding``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from finetuner_core.models.base import EmbeddingModel

OPSET = 18
EXAMPLE_TEXTS = ["an example sentence", "another, somewhat longer example sentence"]
MODEL_FILE = "model.onnx"


def export_onnx(model: EmbeddingModel, directory: str | Path, example_images: list | None = None) -> list[Path]:
    """Write ``model.onnx`` (or ``text.onnx`` + ``image.onnx`` for a two-tower CLIP) into ``directory``."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    return model.cpu().eval().export_onnx(directory, example_images)


def example_images() -> list[torch.Tensor]:
    """Two small images to trace an image model with."""
    return [torch.zeros(3, 32, 32, dtype=torch.uint8)] * 2


class TensorForward(nn.Module):
    """A model whose preprocessed batch is one tensor: features -> projection -> (L2)."""

    def __init__(self, model: EmbeddingModel):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        embeddings = self.model.projection(self.model.features(x))
        return nn.functional.normalize(embeddings, dim=-1) if self.model.options.normalize else embeddings


def export_tensor_model(model: EmbeddingModel, inputs: list[Any], input_name: str, path: Path) -> Path:
    """Export a model whose preprocessed batch is one tensor, traced with ``inputs`` (raw)."""
    return export_module(TensorForward(model), (model.preprocess(inputs),), [input_name], {}, path)


def export_module(module: nn.Module, args: tuple, names: list[str], extra_axes: dict, path: Path) -> Path:
    """Trace ``module`` on ``args`` (named ``names``; batch axis and ``extra_axes`` dynamic) into ``path``."""
    axes = {name: {0: "batch", **extra_axes} for name in names}
    axes["embedding"] = {0: "batch"}
    with torch.no_grad():
        torch.onnx.export(
            module,
            args,
            str(path),
            input_names=names,
            output_names=["embedding"],
            dynamic_axes=axes,
            opset_version=OPSET,
            dynamo=False,
        )
    return path
