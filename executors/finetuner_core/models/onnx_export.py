"""ONNX export of an embedding model: the same inputs a batch has after preprocessing, the same embeddings out.

Text models take ``input_ids``, ``attention_mask`` (and ``token_type_ids`` when the tokenizer makes them);
image models take ``pixel_values`` ``# (batch, 3, size, size)``; MLPs take ``vectors``; a CLIP model is
exported as one file per tower. Batch (and token) axes are dynamic. The output is ``embedding``.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from finetuner_core.models.base import EmbeddingModel

OPSET = 18
EXAMPLE_TEXTS = ["an example sentence", "another, somewhat longer example sentence"]


class _TextForward(nn.Module):
    def __init__(self, model: EmbeddingModel, names: list[str]):
        super().__init__()
        self.model = model
        self.names = names

    def forward(self, *tensors: torch.Tensor) -> torch.Tensor:
        return self.model.st(dict(zip(self.names, tensors, strict=True)))["sentence_embedding"]


class _TowerForward(nn.Module):
    def __init__(self, model: EmbeddingModel, tower: str):
        super().__init__()
        self.model = model
        self.tower = tower

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        clip = self.model.clip
        return self.model._head(clip.encode_text(x) if self.tower == "text" else clip.encode_image(x))


class _TensorForward(nn.Module):
    def __init__(self, model: EmbeddingModel):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        embeddings = self.model.projection(self.model.features(x))
        return nn.functional.normalize(embeddings, dim=-1) if self.model.options.normalize else embeddings


def export_onnx(model: EmbeddingModel, directory: str | Path, example_images: list | None = None) -> list[Path]:
    """Write ``model.onnx`` (or ``text.onnx`` + ``image.onnx`` for a two-tower CLIP) into ``directory``."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    model = model.cpu().eval()
    images = example_images or [torch.zeros(3, 32, 32, dtype=torch.uint8)] * 2
    if model.family == "open_clip":
        towers = {"text": "text", "image": "image", "text-image": None}[model.modality]
        names = [towers] if towers else ["text", "image"]
        return [
            _export_tower(model, tower, directory / f"{tower if not towers else 'model'}.onnx", images)
            for tower in names
        ]
    if model.modality == "text":
        batch = model.preprocess(EXAMPLE_TEXTS)
        names = [name for name in ("input_ids", "attention_mask", "token_type_ids") if name in batch]
        args = tuple(batch[name] for name in names)
        return [_export(_TextForward(model, names), args, names, {1: "tokens"}, directory / "model.onnx")]
    example = model.preprocess(images if model.modality == "image" else [[0.0] * model.options.input_dim] * 2)
    name = "pixel_values" if model.modality == "image" else "vectors"
    return [_export(_TensorForward(model), (example,), [name], {}, directory / "model.onnx")]


def _export_tower(model: EmbeddingModel, tower: str, path: Path, images: list) -> Path:
    if tower == "text":
        return _export(
            _TowerForward(model, "text"), (model.tokenize(EXAMPLE_TEXTS),), ["input_ids"], {1: "tokens"}, path
        )
    return _export(_TowerForward(model, "image"), (model.images(images),), ["pixel_values"], {}, path)


def _export(module: nn.Module, args: tuple, names: list[str], extra_axes: dict, path: Path) -> Path:
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
