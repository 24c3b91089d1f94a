"""CLIP: open_clip architectures, and a LiT-style two-tower model assembled from the packaged encoders.

``select_model="clip-text"`` / ``"clip-vision"`` makes one tower the embedding model (as in Finetuner); without
it the model embeds both texts and images into one space and trains with CLIPLoss on text-image pairs.

- ``openclip/<architecture>``: any of ``open_clip.list_models()``, weights from a local checkpoint (``weights``)
  or random (``pretrained=False``).
- ``lit-minilm-efficientnet-lite0``: ``open_clip.CustomTextCLIP`` with the MiniLM folder as its Hugging Face text
  tower and timm's ``tf_efficientnet_lite0`` with the packaged ImageNet weights as its vision tower; both trunks
  are frozen by default (LiT), the projections (``output_dim``, default 384) are trained from scratch.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import open_clip
import safetensors.torch
import torch
from torch import nn

from finetuner_core.data.images import load_image, looks_like_image_reference
from finetuner_core.models.base import EmbeddingModel, _to_device, pick_device
from finetuner_core.models.image import load_efficientnet_lite0
from finetuner_core.models.options import ModelOptions
from finetuner_core.models.registry import ModelNotAvailableError, efficientnet_lite0_path, minilm_path

WEIGHTS_FILE = "open_clip_model.safetensors"
CLIP_CONFIG_FILE = "open_clip_config.json"
LIT_TRUNKS = ["visual.trunk", "text.transformer"]
TOWERS = {"clip-text": "text", "clip-vision": "image", None: "text-image"}


class ClipEmbeddingModel(EmbeddingModel):
    def __init__(self, name: str, options: ModelOptions, clip: nn.Module, tokenizer, transform, clip_config: dict):
        super().__init__(name, "open_clip", options)
        self.clip = clip
        self.tokenizer = tokenizer
        self.transform = transform
        self.clip_config = clip_config
        self.modality = TOWERS[options.select_model]
        self.add_head()

    @property
    def feature_dim(self) -> int:
        return int(self.clip_config["embed_dim"])

    def backbone_module(self) -> nn.Module:
        return self.clip

    def add_head(self) -> None:
        """The two-tower model's own projections already map to ``output_dim``: no extra projection there."""
        if self.clip_config.get("lit"):
            self.apply_freeze(self.options.freeze)
        else:
            super().add_head()

    def apply_freeze(self, groups: bool | list[str] | None) -> int:
        default = LIT_TRUNKS if self.clip_config.get("lit") else None
        return super().apply_freeze(default if groups is None else groups)

    # --- inputs -------------------------------------------------------------------------------------------
    def tokenize(self, texts: list[str]) -> torch.Tensor:
        return self.tokenizer(texts)

    def images(self, values: list[Any]) -> torch.Tensor:
        return torch.stack([self.transform(load_image(value, f"item {i}")) for i, value in enumerate(values)])

    def embed_text(self, texts: list[str]) -> torch.Tensor:
        """``# (batch, dim)``"""
        return self._head(self.clip.encode_text(_to_device(self.tokenize(list(texts)), self.device)))

    def embed_image(self, values: list[Any]) -> torch.Tensor:
        """``# (batch, dim)``"""
        return self._head(self.clip.encode_image(_to_device(self.images(list(values)), self.device)))

    def embed(self, inputs: list[Any]) -> torch.Tensor:
        """Texts go through the text tower, everything else through the vision tower. ``# (batch, dim)``"""
        inputs = list(inputs)
        is_text = [isinstance(value, str) and not looks_like_image_reference(value) for value in inputs]
        if self.modality == "text" or (self.modality == "text-image" and all(is_text)):
            return self.embed_text(inputs)
        if self.modality == "image" or not any(is_text):
            return self.embed_image(inputs)
        texts = self.embed_text([v for v, t in zip(inputs, is_text, strict=True) if t])
        images = self.embed_image([v for v, t in zip(inputs, is_text, strict=True) if not t])
        order = torch.tensor([i for i, t in enumerate(is_text) if t] + [i for i, t in enumerate(is_text) if not t])
        return torch.cat([texts, images])[torch.argsort(order)]

    @property
    def logit_scale(self) -> nn.Parameter:
        return self.clip.logit_scale

    def _head(self, embeddings: torch.Tensor) -> torch.Tensor:
        embeddings = self.projection(embeddings)
        return nn.functional.normalize(embeddings, dim=-1) if self.options.normalize else embeddings

    # --- saving -------------------------------------------------------------------------------------------
    def save_weights(self, directory: Path) -> None:
        state = {k: v.contiguous() for k, v in self.state_dict().items()}
        safetensors.torch.save_file(state, str(directory / WEIGHTS_FILE))
        (directory / CLIP_CONFIG_FILE).write_text(json.dumps(self.clip_config, indent=2), encoding="utf-8")

    def load_weights(self, directory: Path) -> None:
        self.load_state_dict(safetensors.torch.load_file(str(directory / WEIGHTS_FILE)))


def build_open_clip(name: str, options: ModelOptions, device: str = "auto", load: bool = True) -> ClipEmbeddingModel:
    """``openclip/<architecture>`` with weights from ``options.weights`` or at random init."""
    architecture = name.removeprefix("openclip/")
    if architecture not in open_clip.list_models():
        raise ModelNotAvailableError(f"unknown open_clip architecture {architecture!r}; see open_clip.list_models()")
    weights = options.weights if (options.pretrained and load) else None
    model, _, transform = open_clip.create_model_and_transforms(architecture, pretrained=weights)
    try:
        tokenizer = open_clip.get_tokenizer(architecture)
    except Exception as exc:  # tokenizers that live on a hub cannot be fetched here
        raise ModelNotAvailableError(f"the tokenizer of {architecture} is not available offline: {exc}") from None
    config = {
        "architecture": architecture,
        "embed_dim": open_clip.get_model_config(architecture)["embed_dim"],
    }
    return ClipEmbeddingModel(name, options, model, tokenizer, transform, config).to(pick_device(device))


def build_lit(name: str, options: ModelOptions, device: str = "auto", load: bool = True) -> ClipEmbeddingModel:
    """The two-tower model: MiniLM text tower + EfficientNet-Lite0 vision tower, new projections."""
    text_folder = str(minilm_path())
    embed_dim = options.output_dim or 384
    config = {
        "lit": True,
        "embed_dim": embed_dim,
        "vision_cfg": {
            "timm_model_name": "tf_efficientnet_lite0",
            "timm_model_pretrained": False,
            "timm_pool": "avg",
            "timm_proj": "linear",
            "image_size": options.image_size or 224,
        },
        "text_cfg": {
            "hf_model_name": text_folder,
            "hf_tokenizer_name": text_folder,
            "hf_model_pretrained": load,
            "hf_proj_type": "linear",
            "hf_pooler_type": "mean_pooler",
            "context_length": 64,
        },
    }
    clip = open_clip.CustomTextCLIP(embed_dim, config["vision_cfg"], config["text_cfg"])
    if load:
        load_efficientnet_lite0(clip.visual.trunk, str(efficientnet_lite0_path()))
    tokenizer = open_clip.tokenizer.HFTokenizer(text_folder, context_length=64)
    transform = open_clip.image_transform(options.image_size or 224, is_train=False, mean=(0.5,) * 3, std=(0.5,) * 3)
    model = ClipEmbeddingModel(name, options, clip, tokenizer, transform, config)
    return model.to(pick_device(device))
