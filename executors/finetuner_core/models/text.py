"""Text: a sentence-transformers chain (transformer -> pooling -> [dense] -> [normalise]), saved natively.

Any sentence-transformers folder or Hugging Face encoder folder works (a plain encoder gets mean pooling).
The head options become sentence-transformers modules, so the saved folder loads with
``SentenceTransformer(path)`` as it is.

A batch is tokenised once, padded to its longest text, then run as groups of texts of similar length, each
group trimmed to its own longest text (:func:`length_groups`): short texts no longer pay for the longest one's
padding. Padded positions are masked out of attention and pooling, so every text's embedding is the one it has
in a batch of its own (up to float rounding); only the amount of padding computed changes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from sentence_transformers import SentenceTransformer
from sentence_transformers.sentence_transformer.modules import Dense, Normalize, Pooling
from torch import nn

from finetuner_core.models.base import EmbeddingModel, _to_device, pick_device
from finetuner_core.models.options import ModelOptions
from finetuner_core.models.pooling import TEXT_POOLING

FAMILY = "sentence-transformers"
GROUP_OVERHEAD_TOKENS = 96  # the fixed cost of one more forward pass, in padded tokens (measured on 2 CPU cores)


class TextEmbeddingModel(EmbeddingModel):
    modality = "text"

    def __init__(self, st: SentenceTransformer, name: str, options: ModelOptions):
        super().__init__(name, FAMILY, options)
        self.st = st
        self.length_groups = True  # False: one forward pass over the batch padded to its longest text

    @classmethod
    def build(cls, name: str, path: Path, options: ModelOptions, device: str = "auto") -> TextEmbeddingModel:
        if options.pooling is not None and options.pooling not in TEXT_POOLING:
            raise ValueError(f"text pooling must be one of {', '.join(TEXT_POOLING)}, got {options.pooling!r}")
        st = SentenceTransformer(str(path), device="cpu", local_files_only=True)
        model = cls(SentenceTransformer(modules=_chain(st, options), device="cpu"), name, options)
        model.apply_freeze(options.freeze)
        return model.to(pick_device(device))

    @classmethod
    def load(cls, directory: Path, name: str, options: ModelOptions, device: str = "auto") -> TextEmbeddingModel:
        st = SentenceTransformer(str(directory), device="cpu", local_files_only=True)
        return cls(st, name, options).to(pick_device(device))

    def preprocess(self, inputs: list[Any]) -> dict[str, Any]:
        bad = next((i for i, text in enumerate(inputs) if not isinstance(text, str)), None)
        if bad is not None:
            raise TypeError(f"item {bad}: a text model takes strings, got {type(inputs[bad]).__name__}")
        return self.st.preprocess(inputs)

    def embed(self, inputs: list[Any]) -> torch.Tensor:
        """Embeddings with gradients. ``# (batch, dim)``; normalised by the chain's Normalize module."""
        return self.embed_features(_to_device(self.preprocess(list(inputs)), self.device))

    def embed_features(self, features: dict[str, Any]) -> torch.Tensor:
        """Embeddings of a tokenised batch, run in groups of similar length. ``# (batch, dim)``"""
        mask = features.get("attention_mask")
        if not self.length_groups or not isinstance(mask, torch.Tensor) or mask.dim() != 2:
            return self.st(features)["sentence_embedding"]
        groups = length_groups(mask.sum(dim=1).tolist())
        if len(groups) == 1:
            return self.st(_trimmed(features, mask))["sentence_embedding"]
        parts = []
        for rows in groups:
            index = torch.tensor(rows, device=mask.device)
            parts.append(self.st(_trimmed(_rows(features, index, len(mask)), mask[index]))["sentence_embedding"])
        order = torch.tensor([row for rows in groups for row in rows], device=mask.device)
        return torch.cat(parts).index_select(0, torch.argsort(order))

    @property
    def feature_dim(self) -> int:
        return self.st[0].get_embedding_dimension()

    @property
    def dim(self) -> int:
        return self.st.get_embedding_dimension()

    def backbone_module(self) -> nn.Module:
        return self.st[0]

    def save_weights(self, directory: Path) -> None:
        self.st.save(str(directory))


def _chain(st: SentenceTransformer, options: ModelOptions) -> list[nn.Module]:
    """The folder's modules with the requested pooling, projection and normalisation."""
    transformer, *head = list(st)
    head = [module for module in head if not isinstance(module, Normalize)]
    if options.pooling is not None:
        head = [Pooling(transformer.get_embedding_dimension(), pooling_mode=options.pooling)] + [
            module for module in head if not isinstance(module, Pooling)
        ]
    if not any(isinstance(module, Pooling) for module in head):
        head.insert(0, Pooling(transformer.get_embedding_dimension(), pooling_mode="mean"))
    if options.output_dim:
        current = SentenceTransformer(modules=[transformer, *head], device="cpu").get_embedding_dimension()
        head.append(Dense(current, options.output_dim, activation_function=nn.Identity()))
    if options.normalize:
        head.append(Normalize())
    return [transformer, *head]


def length_groups(lengths: list[int], overhead: int = GROUP_OVERHEAD_TOKENS) -> list[list[int]]:
    """Batch positions in groups of similar length, the fewest padded tokens plus ``overhead`` per group.

    The positions are sorted by length and cut into consecutive groups; a group costs its size times its
    longest length plus ``overhead``. The best cuts are found exactly (dynamic programming, O(n^2)).
    """
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    ordered = np.asarray([lengths[i] for i in order], dtype=np.int64)
    best = np.zeros(len(order) + 1, dtype=np.int64)
    cut = np.zeros(len(order) + 1, dtype=np.int64)
    for end in range(1, len(order) + 1):  # the best cost of the first `end` sorted positions
        starts = np.arange(end)
        costs = best[:end] + (end - starts) * ordered[end - 1] + overhead
        cut[end] = int(np.argmin(costs))
        best[end] = costs[cut[end]]
    groups, end = [], len(order)
    while end > 0:
        groups.append(order[cut[end] : end])
        end = int(cut[end])
    return groups[::-1]


def _rows(features: dict[str, Any], index: torch.Tensor, size: int) -> dict[str, Any]:
    """The features of the batch positions ``index`` (per-item tensors indexed; anything else kept)."""
    return {
        key: value.index_select(0, index)
        if isinstance(value, torch.Tensor) and value.dim() and len(value) == size
        else value
        for key, value in features.items()
    }


def _trimmed(features: dict[str, Any], mask: torch.Tensor) -> dict[str, Any]:
    """Token tensors cut to the columns some text of the batch uses (its own longest text, either padding side)."""
    used = torch.nonzero(mask.any(dim=0)).flatten()
    if not len(used):
        return features
    first, last = int(used[0]), int(used[-1]) + 1
    if first == 0 and last == mask.shape[1]:
        return features
    width = mask.shape[1]
    return {
        key: value[:, first:last]
        if isinstance(value, torch.Tensor) and value.dim() == 2 and value.shape[1] == width
        else value
        for key, value in features.items()
    }
