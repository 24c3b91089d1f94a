"""Text: a sentence-transformers chain (transformer -> pooling -> [dense] -> [normalise]), saved natively.

Any sentence-transformers folder or Hugging Face encoder folder works (a plain encoder gets mean pooling), and so
does a Hugging Face id of one: the resolver (``models.resolve``) finds it packaged, in a folder, in the Hugging Face
cache, or downloads it where that is allowed.
The head options become sentence-transformers modules, so the saved folder loads with
``SentenceTransformer(path)`` as it is.

A batch is tokenised once (padded to its longest text), and the transformer then computes as little padding
as the architecture allows (``TextEmbeddingModel.batching``):

- ``packed`` (the default for BERT-type encoders with SDPA attention, e.g. the packaged MiniLM): the texts are
  packed end to end into rows as wide as the longest text (:func:`pack_rows`), each with its own positions
  (0, 1, ...) and token types, and a block-diagonal attention mask keeps every text to its own tokens; one
  forward pass, about as many tokens as the texts hold. The token embeddings go back to the padded layout for
  the chain's own pooling, projection and normalisation.
- ``grouped`` (any other encoder): groups of texts of similar length, each trimmed to its own longest text
  (:func:`length_groups`), one forward pass per group.
- ``padded``: one forward pass over the batch padded to its longest text, as sentence-transformers runs it.

Each text attends only to its own tokens at its own positions in every mode, so its embedding is the one it has
in a batch of its own (up to float rounding); only the padding computed changes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from sentence_transformers import SentenceTransformer
from sentence_transformers.base.modules import Transformer
from sentence_transformers.sentence_transformer.modules import Dense, Normalize, Pooling
from torch import nn

from finetuner_core.models.base import EmbeddingModel, _to_device
from finetuner_core.models.card_text import onnx_runtime_usage
from finetuner_core.models.families import register_family
from finetuner_core.models.onnx_export import EXAMPLE_TEXTS, MODEL_FILE, export_module
from finetuner_core.models.pooling import TEXT_POOLING
from finetuner_core.models.resolve import local_path
from finetuner_protocol.model_options import ModelOptions

GROUP_OVERHEAD_TOKENS = 96  # the fixed cost of one more forward pass, in padded tokens (measured on 2 CPU cores)
BATCHING = ("auto", "packed", "grouped", "padded")
PACKABLE_MODEL_TYPES = ("bert",)  # absolute positions from 0, given by position_ids; a 4D attention mask is honoured


@register_family
class TextEmbeddingModel(EmbeddingModel):
    """A sentence-transformers chain: the packaged MiniLM, or any sentence-transformers / Hugging Face folder."""

    family = "sentence-transformers"
    library = "sentence-transformers"
    modality = "text"
    builds_hub_ids = True  # any sentence-transformers folder or transformers encoder, from the cache or the Hub
    adds_projection = True  # a continued run may train its saved model at another size

    def __init__(self, st: SentenceTransformer, name: str, options: ModelOptions):
        super().__init__(name, options)
        self.st = st
        self.batching = "auto"  # see the module docstring; auto: packed where the architecture allows, else grouped

    @classmethod
    def create(cls, name: str, options: ModelOptions, pretrained: bool = True) -> TextEmbeddingModel:
        """The folder the resolver finds for ``name`` (packaged, a folder, the Hugging Face cache, the Hub)."""
        if options.pooling is not None and options.pooling not in TEXT_POOLING:
            raise ValueError(f"text pooling must be one of {', '.join(TEXT_POOLING)}, got {options.pooling!r}")
        st = SentenceTransformer(str(local_path(name)), device="cpu", local_files_only=True)
        model = cls(SentenceTransformer(modules=_chain(st, options), device="cpu"), name, options)
        model.apply_freeze(options.freeze)
        return model

    @classmethod
    def load(cls, directory: Path, config: dict[str, Any]) -> TextEmbeddingModel:
        """A saved model is a sentence-transformers folder (its head included)."""
        st = SentenceTransformer(str(directory), device="cpu", local_files_only=True)
        return cls(st, config["name"], ModelOptions.model_validate(config["options"]))

    def add_projection(self, output_dim: int) -> None:
        """A new linear projection from the embeddings to ``output_dim``, before normalisation (a saved model
        trained further at another size)."""
        modules = list(self.st)
        at = next((i for i, module in enumerate(modules) if isinstance(module, Normalize)), len(modules))
        dense = Dense(self.st.get_embedding_dimension(), output_dim, activation_function=nn.Identity())
        self.st = SentenceTransformer(modules=[*modules[:at], dense, *modules[at:]], device="cpu")
        self.options = self.options.model_copy(update={"output_dim": output_dim})

    def preprocess(self, inputs: list[Any]) -> dict[str, Any]:
        bad = next((i for i, text in enumerate(inputs) if not isinstance(text, str)), None)
        if bad is not None:
            raise TypeError(f"item {bad}: a text model takes strings, got {type(inputs[bad]).__name__}")
        return self.st.preprocess(inputs)

    def embed(self, inputs: list[Any]) -> torch.Tensor:
        """Embeddings with gradients. ``# (batch, dim)``; normalised by the chain's Normalize module."""
        return self.embed_features(_to_device(self.preprocess(list(inputs)), self.device))

    def embed_features(self, features: dict[str, Any]) -> torch.Tensor:
        """Embeddings of a tokenised batch, with as little padding as :meth:`batching_mode` allows.
        ``# (batch, dim)``"""
        mode = self.batching_mode(features)
        if mode == "padded":
            return self.st(features)["sentence_embedding"]
        mask = features["attention_mask"]
        if mode == "packed":
            return self._packed(features, mask.sum(dim=1).tolist())
        groups = length_groups(mask.sum(dim=1).tolist())
        if len(groups) == 1:
            return self.st(_trimmed(features, mask))["sentence_embedding"]
        parts = []
        for rows in groups:
            index = torch.tensor(rows, device=mask.device)
            parts.append(self.st(_trimmed(_rows(features, index, len(mask)), mask[index]))["sentence_embedding"])
        order = torch.tensor([row for rows in groups for row in rows], device=mask.device)
        return torch.cat(parts).index_select(0, torch.argsort(order))

    def batching_mode(self, features: dict[str, Any] | None = None) -> str:
        """How a batch runs: ``packed``, ``grouped`` or ``padded`` (``self.batching``; ``auto`` resolved)."""
        if self.batching not in BATCHING:
            raise ValueError(f"batching must be one of {', '.join(BATCHING)}, got {self.batching!r}")
        mask = (features or {}).get("attention_mask", torch.ones(1, 1))
        if self.batching == "padded" or not isinstance(mask, torch.Tensor) or mask.dim() != 2:
            return "padded"
        if self.batching == "auto":
            return "packed" if self.packable() else "grouped"
        if self.batching == "packed" and not self.packable():
            raise ValueError(
                f"batching='packed' needs a {' / '.join(PACKABLE_MODEL_TYPES)} encoder with sdpa attention"
            )
        return self.batching

    def packable(self) -> bool:
        """Whether texts can share a row: an encoder that takes position ids and a 4D mask, right padding."""
        transformer = self.st[0]
        if (
            not isinstance(transformer, Transformer)
            or transformer.modality_config.get("text", {}).get("method") != "forward"
        ):
            return False
        config, tokenizer = transformer.auto_model.config, transformer.tokenizer
        return (
            config.model_type in PACKABLE_MODEL_TYPES
            and config._attn_implementation == "sdpa"
            and getattr(tokenizer, "padding_side", "right") == "right"
        )

    def forward_shapes(self, lengths: list[int]) -> list[tuple[int, int]]:
        """(rows, tokens per row) of each forward pass a batch of texts with these token counts runs as."""
        mode = self.batching_mode()
        if mode == "padded" or not lengths:
            return [(len(lengths), max(lengths, default=0))]
        if mode == "packed":
            return [(len(pack_rows(lengths, max(lengths))), max(lengths))]
        return [(len(group), max(lengths[i] for i in group)) for group in length_groups(lengths)]

    def _packed(self, features: dict[str, Any], lengths: list[int]) -> torch.Tensor:
        """One forward pass over the texts packed into rows; token embeddings back in the padded layout."""
        width = max(lengths)
        packed, (item, position), (row, column) = pack_tokens(features, lengths, pack_rows(lengths, width), width)
        hidden = self.st[0].auto_model(**packed, return_dict=True).last_hidden_state  # (rows, width, hidden)
        tokens = hidden.new_zeros(len(lengths), width, hidden.shape[-1]).index_put(
            (item, position), hidden[row, column]
        )
        out = {**_trimmed(features, features["attention_mask"]), self.st[0].module_output_name: tokens}
        for module in list(self.st)[1:]:
            out = module(out)
        return out["sentence_embedding"]

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

    def features(self, batch: dict[str, Any]) -> torch.Tensor:
        """The chain's embeddings (the projection and normalisation are modules of the chain). ``# (batch, dim)``"""
        return self.embed_features(batch)

    def export_onnx(self, directory: Path, examples: list[Any] | None = None) -> list[Path]:
        """``model.onnx``, inputs ``input_ids``, ``attention_mask`` (and ``token_type_ids``), tokens dynamic."""
        batch = self.preprocess(EXAMPLE_TEXTS)
        names = [name for name in ("input_ids", "attention_mask", "token_type_ids") if name in batch]
        args = tuple(batch[name] for name in names)
        return [export_module(_TextForward(self, names), args, names, {1: "tokens"}, directory / MODEL_FILE)]

    @classmethod
    def card_usage(cls) -> str:
        return _SENTENCE_TRANSFORMERS_USAGE

    @classmethod
    def card_onnx_usage(cls, files: list[str]) -> str:
        return onnx_runtime_usage(files, _ONNX_SETUP, _ONNX_FEED)


class _TextForward(nn.Module):
    """The chain on named token tensors (ONNX takes them positionally)."""

    def __init__(self, model: TextEmbeddingModel, names: list[str]):
        super().__init__()
        self.model = model
        self.names = names

    def forward(self, *tensors: torch.Tensor) -> torch.Tensor:
        return self.model.st(dict(zip(self.names, tensors, strict=True)))["sentence_embedding"]


_SENTENCE_TRANSFORMERS_USAGE = """With sentence-transformers:

```python
from sentence_transformers import SentenceTransformer

model = SentenceTransformer("path/to/model")
embeddings = model.encode(["first sentence", "second sentence"], normalize_embeddings=True)
```
"""
_ONNX_SETUP = 'from transformers import AutoTokenizer\n\ntokenizer = AutoTokenizer.from_pretrained("path/to/model")\n'
_ONNX_FEED = (
    'texts = ["first sentence", "second sentence"]\ninputs = dict(tokenizer(texts, padding=True, return_tensors="np"))'
)


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


def pack_rows(lengths: list[int], capacity: int) -> list[list[int]]:
    """Batch positions in rows of at most ``capacity`` tokens, first fit in order of decreasing length (a text is
    never split; one longer than ``capacity`` gets a row of its own)."""
    rows: list[list[int]] = []
    free: list[int] = []
    for index in sorted(range(len(lengths)), key=lambda i: -lengths[i]):
        fits = next((r for r, space in enumerate(free) if lengths[index] <= space), None)
        if fits is None:
            rows.append([index])
            free.append(capacity - lengths[index])
        else:
            rows[fits].append(index)
            free[fits] -= lengths[index]
    return rows


def pack_tokens(features: dict[str, Any], lengths: list[int], rows: list[list[int]], width: int):
    """The model inputs of the packed rows, and where each token comes from and goes to.

    Returns ``(inputs, (item, position), (row, column))``: ``inputs`` holds ``input_ids``, ``position_ids``
    (0, 1, ... within each text), ``token_type_ids`` (when the batch has them) and a boolean attention mask
    ``# (rows, 1, width, width)`` that lets a token see the tokens of its own text only (a padding position sees
    itself, so that no softmax row is empty); token ``k`` of the batch is text ``item[k]``'s token
    ``position[k]``, put at ``(row[k], column[k])``.
    """
    item, position, row, column = [], [], [], []
    for r, members in enumerate(rows):
        offset = 0
        for index in members:
            count = lengths[index]
            item += [index] * count
            position += range(count)
            row += [r] * count
            column += range(offset, offset + count)
            offset += count
    device = features["input_ids"].device
    item, position, row, column = (torch.tensor(v, device=device) for v in (item, position, row, column))
    inputs = {"position_ids": torch.zeros(len(rows), width, dtype=torch.long, device=device)}
    inputs["position_ids"][row, column] = position
    for key in ("input_ids", "token_type_ids"):
        if key in features:
            inputs[key] = features[key].new_zeros(len(rows), width)
            inputs[key][row, column] = features[key][item, position]
    segment = torch.zeros(len(rows), width, dtype=torch.long, device=device)
    segment[row, column] = item + 1
    same = (segment[:, :, None] == segment[:, None, :]) & (segment[:, None, :] > 0)
    inputs["attention_mask"] = (same | torch.eye(width, dtype=torch.bool, device=device))[:, None]
    return inputs, (item, position), (row, column)


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
