"""Images: timm and torchvision CNNs and ViTs with the classifier removed, pooled, projected, normalised.

Head removal is generic and structural, with no forward pass: timm models are built without a classifier
(``num_classes=0, global_pool=""``) and give feature maps or tokens; for torchvision models the last
``nn.Linear`` in registration order is the classifier and becomes ``Identity``, and the last adaptive average
pool can become GeM. Weights come from the packaged EfficientNet-Lite0 checkpoint, from what each library calls
pretrained (``timm/<name>[.<tag>]``: the tag's Hub repo; a torchvision model: its weights enum's ``DEFAULT``, or
``<model>::<ENUM>``; found by ``models.library`` in the library's cache, or downloaded where allowed), from a local
file (``weights=...``), or are random when ``pretrained=False`` is asked for.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import safetensors.torch
import timm
import torch
import torchvision
from torch import nn
from torchvision.transforms import v2

from finetuner_core.models.base import EmbeddingModel
from finetuner_core.models.card_text import SAFETENSORS_USAGE
from finetuner_core.models.families import register_family
from finetuner_core.models.library import timm_name, torchvision_digest, torchvision_enum, torchvision_name
from finetuner_core.models.onnx_export import MODEL_FILE, example_images, export_tensor_model
from finetuner_core.models.pooling import IMAGE_POOLING
from finetuner_core.models.resolve import local_path
from finetuner_protocol.backbones import DEFAULT_IMAGE_MODEL, efficientnet_lite0_path
from finetuner_protocol.data.images import load_image
from finetuner_protocol.model_options import ModelOptions

TOKEN_POOLING = ("cls", "mean")


class ImageEmbeddingModel(EmbeddingModel):
    """What the image families share: a backbone giving feature maps (pooled) or tokens, a transform per image."""

    modality = "image"

    def __init__(
        self,
        name: str,
        options: ModelOptions,
        backbone: nn.Module,
        feature_dim: int,
        transform: Callable[[Any], torch.Tensor],
        num_prefix_tokens: int = 1,
        pool: nn.Module | None = None,
    ):
        super().__init__(name, options)
        self.backbone = backbone
        self._feature_dim = feature_dim
        self.transform = transform
        self.num_prefix_tokens = num_prefix_tokens
        self.pool = pool
        self.add_head()

    def preprocess(self, inputs: list[Any]) -> torch.Tensor:
        """Images (paths, bytes, data URIs, arrays, PIL) -> ``# (batch, 3, size, size)``"""
        return torch.stack([self.transform(load_image(value, f"item {i}")) for i, value in enumerate(inputs)])

    def features(self, batch: torch.Tensor) -> torch.Tensor:
        x = self.backbone(batch)
        if x.ndim == 4 and self.pool is not None:  # (batch, channels, h, w): a CNN's feature maps
            return self.pool(x)
        if x.ndim == 3:  # (batch, tokens, width): a ViT's tokens
            return x[:, 0] if self.options.pooling in (None, "cls") else x[:, self.num_prefix_tokens :].mean(1)
        return x

    @property
    def feature_dim(self) -> int:
        return self._feature_dim

    def backbone_module(self) -> nn.Module:
        return self.backbone

    def export_onnx(self, directory: Path, examples: list[Any] | None = None) -> list[Path]:
        """``model.onnx``, input ``pixel_values`` ``# (batch, 3, size, size)``."""
        return [export_tensor_model(self, examples or example_images(), "pixel_values", directory / MODEL_FILE)]

    @classmethod
    def card_usage(cls) -> str:
        return SAFETENSORS_USAGE


@register_family
class TimmEmbeddingModel(ImageEmbeddingModel):
    """timm: the packaged EfficientNet-Lite0 and ``timm/<name>[.<tag>]``, built without a classifier."""

    family = "timm"
    library = "timm"
    builds_hub_ids = True  # the pretrained tag's repo, from the Hugging Face cache or the Hub

    @classmethod
    def create(cls, name: str, options: ModelOptions, pretrained: bool = True) -> TimmEmbeddingModel:
        if name == DEFAULT_IMAGE_MODEL:
            packaged = str(efficientnet_lite0_path()) if pretrained else None
            return cls._create(name, "tf_efficientnet_lite0", options, packaged, load_efficientnet_lite0)
        hub = pretrained and options.pretrained and options.weights is None  # timm's pretrained tag
        return cls._create(name, timm_name(name), options, hub_file=local_path(name) if hub else None)

    @classmethod
    def _create(
        cls,
        name: str,
        timm_name: str,
        options: ModelOptions,
        weights: str | None = None,
        loader: Callable[[nn.Module, str], None] | None = None,
        hub_file: Path | None = None,
    ) -> TimmEmbeddingModel:
        """A timm backbone: ``hub_file`` (the tag's weights from the Hub) is loaded by timm as its pretrained
        weights; ``weights`` (a file) with ``loader`` or by matching state-dict keys."""
        overlay = {"file": str(hub_file)} if hub_file is not None else None
        model = timm.create_model(
            timm_name, pretrained=overlay is not None, pretrained_cfg_overlay=overlay, num_classes=0, global_pool=""
        )
        weights = _weights_path(options, weights)
        if weights:
            (loader or _load_matching)(model, weights)
        config = timm.data.resolve_data_config({}, model=model)
        size = options.image_size or config["input_size"][-1]
        is_vit = hasattr(model, "patch_embed")
        _check_pooling(options, is_vit)
        transform = _transform(size, config["mean"], config["std"], config.get("crop_pct", 0.875))
        prefix = getattr(model, "num_prefix_tokens", 1)
        pool = None if is_vit else IMAGE_POOLING[options.pooling or "avg"]()
        return cls(name, options, TimmFeatures(model), model.num_features, transform, prefix, pool)


@register_family
class TorchvisionEmbeddingModel(ImageEmbeddingModel):
    """torchvision classification models with the classifier (the last Linear) replaced by Identity; ``name``:
    ``<model>`` (its weights enum's ``DEFAULT``) or ``<model>::<ENUM>``."""

    family = "torchvision"
    builds_hub_ids = True  # the weights enum's file, from the torch hub cache or downloaded

    @classmethod
    def create(cls, name: str, options: ModelOptions, pretrained: bool = True) -> TorchvisionEmbeddingModel:
        architecture, _ = torchvision_name(name)
        member = torchvision_enum(name)
        model = torchvision.models.get_model(architecture, weights=None, **_torchvision_arguments(architecture, member))
        if pretrained and options.pretrained and options.weights is None:
            model.load_state_dict(load_torchvision_file(local_path(name)))
        head_name, head = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Linear)][-1]
        model.set_submodule(head_name, nn.Identity())
        weights = _weights_path(options)
        if weights:
            _load_matching(model, weights)
        pools = [n for n, m in model.named_modules() if isinstance(m, nn.AdaptiveAvgPool2d)]
        _check_pooling(options, is_vit=not pools)
        if options.pooling == "gem":
            model.set_submodule(pools[-1], nn.Sequential(IMAGE_POOLING["gem"](), nn.Unflatten(1, (-1, 1, 1))))
        preset = member.transforms()
        size = options.image_size or preset.crop_size[0]
        transform = _transform(size, preset.mean, preset.std, preset.crop_size[0] / preset.resize_size[0])
        return cls(name, options, model, head.in_features, transform)


class TimmFeatures(nn.Module):
    """A timm model without its classifier: ``forward`` gives feature maps or tokens."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.forward_features(x)


def load_efficientnet_lite0(model: nn.Module, path: str) -> None:
    """The packaged checkpoint's keys differ from timm's, but its tensors line up in order with timm's
    (its classifier comes last and is left out)."""
    own = list(model.state_dict().items())
    theirs = list(torch.load(path, map_location="cpu", weights_only=True).values())[: len(own)]
    if len(theirs) < len(own) or any(a.shape != b.shape for (_, a), b in zip(own, theirs, strict=True)):
        raise ValueError(f"{path} does not line up with tf_efficientnet_lite0")
    model.load_state_dict({k: v for (k, _), v in zip(own, theirs, strict=True)})


def _load_matching(model: nn.Module, path: str) -> None:
    """Load a local checkpoint by key names; classifier keys the model no longer has are ignored."""
    state = _read_checkpoint(path)
    missing, _unexpected = model.load_state_dict(state, strict=False)
    if missing:
        raise ValueError(f"weights file {path} does not fit the model: missing {len(missing)} keys, e.g. {missing[:3]}")


def _read_checkpoint(path: str) -> dict[str, torch.Tensor]:
    if not Path(path).is_file():
        raise FileNotFoundError(f"weights file {path!r} not found")
    if path.endswith(".safetensors"):
        return safetensors.torch.load_file(path)
    state = torch.load(path, map_location="cpu", weights_only=True)
    return state.get("state_dict", state) if isinstance(state, dict) else state


def load_torchvision_file(path: Path) -> dict[str, torch.Tensor]:
    """A torchvision weights file (checked against the sha256 prefix in its name), loaded with weights_only."""
    torchvision_digest(path)
    return torch.load(path, map_location="cpu", weights_only=True)


def _torchvision_arguments(architecture: str, member) -> dict[str, Any]:
    """What torchvision's builder sets from the weights it loads: the classes, and a ViT's image size."""
    arguments: dict[str, Any] = {"num_classes": len(member.meta["categories"])}
    if architecture.startswith("vit_"):
        arguments["image_size"] = member.meta["min_size"][0]
    return arguments


def _weights_path(options: ModelOptions, packaged: str | None = None) -> str | None:
    """A local weights file (``weights``) or the packaged one; None for the library's own or a random init."""
    if not options.pretrained:
        return None
    return options.weights or packaged


def _check_pooling(options: ModelOptions, is_vit: bool) -> None:
    allowed = TOKEN_POOLING if is_vit else tuple(IMAGE_POOLING)
    if options.pooling is not None and options.pooling not in allowed:
        raise ValueError(f"pooling {options.pooling!r} does not apply here; allowed: {', '.join(allowed)}")


def _transform(size: int, mean, std, crop_pct: float) -> Callable[[Any], torch.Tensor]:
    return v2.Compose(
        [
            v2.ToImage(),
            v2.Resize(int(round(size / crop_pct)), interpolation=v2.InterpolationMode.BICUBIC, antialias=True),
            v2.CenterCrop(size),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(list(mean), list(std)),
        ]
    )
