"""CLIP: open_clip architectures, and a LiT-style two-tower model assembled from the packaged encoders.

``select_model="clip-text"`` / ``"clip-vision"`` makes one tower the embedding model (as in Finetuner); without
it the model embeds both texts and images into one space and trains with CLIPLoss on text-image pairs.

- ``openclip/<architecture>`` (its pretrained tag ``openai``, else its first), ``openclip/<architecture>::<tag>``,
  ``<architecture>::<tag>``: any of ``open_clip.list_models()`` with a tag's weights from the Hugging Face cache (or
  downloaded where allowed; ``models.library``), a local checkpoint (``weights``) or random (``pretrained=False``);
  ``hf-hub:<org>/<name>``: a repo with ``open_clip_config.json`` and its weights. The model's config
  (``model_cfg``, ``preprocess_cfg``) is saved with it, so that a saved model rebuilds without the cache (a Hugging
  Face text tower's files excepted).
- ``lit-minilm-efficientnet-lite0``: ``open_clip.CustomTextCLIP`` with the MiniLM folder as its Hugging Face text
  tower and timm's ``tf_efficientnet_lite0`` with the packaged ImageNet weights as its vision tower; both trunks
  are locked by default (LiT), the projections (``output_dim``, default 384) are trained from scratch.

Locking (open_clip's ``--lock-image`` / ``--lock-text``): ``lock_image`` / ``lock_text`` freeze a tower,
``lock_image_unlocked_groups`` / ``lock_text_unlocked_layers`` leave its last N layer groups / layers trainable.
An open_clip architecture is locked by its own ``lock_image_tower`` / ``lock_text_tower``; the two-tower model
locks its trunks by layer groups (``freeze.lock``): the image trunk's groups are timm's (as open_clip groups a
timm tower), the text trunk's are the embeddings and each transformer layer; its projections stay trainable.
Locks apply after ``freeze``. BatchNorm statistics follow ``freeze_batchnorm`` as in every family.
"""

from __future__ import annotations

import json
from copy import deepcopy
from dataclasses import asdict
from pathlib import Path
from typing import Any

import open_clip
import safetensors.torch
import torch
from open_clip.modified_resnet import ModifiedResNet
from open_clip.transform import PreprocessCfg, image_transform_v2, merge_preprocess_dict
from timm.models import group_parameters
from torch import nn

from finetuner_core.models.base import EmbeddingModel, _to_device
from finetuner_core.models.families import register_family
from finetuner_core.models.families.image import load_efficientnet_lite0
from finetuner_core.models.freeze import lock, parameter_groups
from finetuner_core.models.library import OPEN_CLIP_CONFIG, open_clip_name, open_clip_tag
from finetuner_core.models.onnx_export import EXAMPLE_TEXTS, MODEL_FILE, example_images, export_module
from finetuner_core.models.resolve import local_path
from finetuner_protocol.backbones import (
    DEFAULT_CLIP_MODEL,
    ModelNotAvailableError,
    efficientnet_lite0_path,
    minilm_path,
)
from finetuner_protocol.data.images import load_image, looks_like_image_reference
from finetuner_protocol.model_options import ModelOptions

WEIGHTS_FILE = "open_clip_model.safetensors"
CLIP_CONFIG_FILE = OPEN_CLIP_CONFIG
LIT_TRUNKS = {"image": "visual.trunk", "text": "text.transformer"}
TOWERS = {"clip-text": "text", "clip-vision": "image", None: "text-image"}


@register_family
class ClipEmbeddingModel(EmbeddingModel):
    family = "open_clip"
    library = "open_clip"
    modality = "text-image"  # the whole model; select_model makes one tower of it the embedding model
    onnx_text_inputs = "`input_ids`"  # what an exported text tower takes, as the model card says it
    builds_hub_ids = True  # a tag's weights or an hf-hub: repo, from the Hugging Face cache or the Hub

    def __init__(self, name: str, options: ModelOptions, clip: nn.Module, tokenizer, transform, clip_config: dict):
        super().__init__(name, options)
        self.clip = clip
        self.tokenizer = tokenizer
        self.transform = transform
        self.clip_config = clip_config
        self.modality = TOWERS[options.select_model]
        self.add_head()

    @classmethod
    def create(cls, name: str, options: ModelOptions, pretrained: bool = True) -> ClipEmbeddingModel:
        if name == DEFAULT_CLIP_MODEL:
            return build_lit(name, options, load=pretrained)
        return build_open_clip(name, options, load=pretrained)

    @classmethod
    def load(cls, directory: Path, config: dict[str, Any]) -> ClipEmbeddingModel:
        """A saved model, rebuilt from the config saved with it (``open_clip_config.json``) where it has one."""
        saved = directory / CLIP_CONFIG_FILE
        clip_config = json.loads(saved.read_text("utf-8")) if saved.is_file() else {}
        if "model_cfg" not in clip_config:
            return super().load(directory, config)
        options = ModelOptions.model_validate(config["options"]).model_copy(update={"pretrained": False})
        model = build_open_clip(config["name"], options, load=False, saved=clip_config)
        model.load_weights(directory)
        return model

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
        """Freeze ``groups`` (see ``EmbeddingModel.apply_freeze``), then lock the towers as the options say.

        A tower whose ``lock_*`` option is None is locked when the model is the two-tower one and ``groups`` is
        None (LiT's default). Safe to call again. Returns the number of trainable backbone parameters.
        """
        lit = bool(self.clip_config.get("lit"))
        super().apply_freeze(False if groups is None else groups)
        default = lit and groups is None
        for tower in ("image", "text"):
            locked = getattr(self.options, f"lock_{tower}")
            if locked or (locked is None and default):
                self._lock(tower, lit)
            elif self._unlocked(tower):
                raise ValueError(f"{self._unlocked_option(tower)} needs lock_{tower}=True for {self.name!r}")
        return sum(p.numel() for p in self.clip.parameters() if p.requires_grad)

    def _lock(self, tower: str, lit: bool) -> None:
        unlocked = self._unlocked(tower)
        if lit:
            trunk = self.clip.get_submodule(LIT_TRUNKS[tower])
            lock(trunk, self._lit_groups(tower, trunk), unlocked, f"{tower} tower of {self.name}")
        elif tower == "text":
            self.clip.lock_text_tower(unlocked_layers=unlocked)
        elif unlocked and isinstance(self.clip.visual, ModifiedResNet):
            raise ValueError(
                f"lock_image_unlocked_groups: the ResNet image tower of {self.name!r} can only be locked whole"
            )
        else:
            self.clip.lock_image_tower(unlocked_groups=unlocked, freeze_bn_stats=False)

    @staticmethod
    def _lit_groups(tower: str, trunk: nn.Module) -> list[list[str]]:
        """timm's layer groups of the image trunk; the embeddings and each layer of the text trunk."""
        if tower == "image":
            return [names for _, names in sorted(group_parameters(trunk, trunk.group_matcher()).items())]
        return parameter_groups(trunk, ["embeddings", *(f"encoder.layer.{i}" for i in range(len(trunk.encoder.layer)))])

    def _unlocked(self, tower: str) -> int:
        return getattr(self.options, self._unlocked_option(tower))

    @staticmethod
    def _unlocked_option(tower: str) -> str:
        return "lock_image_unlocked_groups" if tower == "image" else "lock_text_unlocked_layers"

    # --- inputs and towers (a subclass with another library overrides these) -------------------------------
    def tokenize(self, texts: list[str]) -> torch.Tensor:
        return self.tokenizer(texts)

    def text_inputs(self, texts: list[str]) -> dict[str, torch.Tensor]:
        """The text tower's inputs for ``texts`` (named as the ONNX export names them)."""
        return {"input_ids": self.tokenize(texts)}

    def encode_text(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        """The text tower on :meth:`text_inputs`. ``# (batch, embed_dim)``"""
        return self.clip.encode_text(inputs["input_ids"])

    def encode_image(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """The image tower. ``# (batch, embed_dim)``"""
        return self.clip.encode_image(pixel_values)

    def preprocess(self, inputs: list[Any]) -> dict[str, torch.Tensor]:
        """The batch of one tower: ``input_ids`` for texts, ``pixel_values`` for images (see :meth:`embed`)."""
        is_text = self._is_text(inputs)
        if self.modality == "text-image" and any(is_text) and not all(is_text):
            raise ValueError("a batch of both texts and images goes through two towers: embed it with embed()")
        if self.modality == "text" or (self.modality == "text-image" and all(is_text)):
            return self.text_inputs(list(inputs))
        return {"pixel_values": self.images(list(inputs))}

    def features(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """A tower's embeddings of a batch of :meth:`preprocess`. ``# (batch, embed_dim)``"""
        if "pixel_values" in batch:
            return self.encode_image(batch["pixel_values"])
        return self.encode_text(batch)

    def images(self, values: list[Any]) -> torch.Tensor:
        return torch.stack([self.transform(load_image(value, f"item {i}")) for i, value in enumerate(values)])

    def embed_text(self, texts: list[str]) -> torch.Tensor:
        """``# (batch, dim)``"""
        return self._head(self.encode_text(_to_device(self.text_inputs(list(texts)), self.device)))

    def embed_image(self, values: list[Any]) -> torch.Tensor:
        """``# (batch, dim)``"""
        return self._head(self.encode_image(_to_device(self.images(list(values)), self.device)))

    def embed(self, inputs: list[Any]) -> torch.Tensor:
        """Texts go through the text tower, everything else through the vision tower. ``# (batch, dim)``"""
        inputs = list(inputs)
        is_text = self._is_text(inputs)
        if self.modality == "text" or (self.modality == "text-image" and all(is_text)):
            return self.embed_text(inputs)
        if self.modality == "image" or not any(is_text):
            return self.embed_image(inputs)
        texts = self.embed_text([v for v, t in zip(inputs, is_text, strict=True) if t])
        images = self.embed_image([v for v, t in zip(inputs, is_text, strict=True) if not t])
        order = torch.tensor([i for i, t in enumerate(is_text) if t] + [i for i, t in enumerate(is_text) if not t])
        return torch.cat([texts, images])[torch.argsort(order)]

    @staticmethod
    def _is_text(inputs: list[Any]) -> list[bool]:
        return [isinstance(value, str) and not looks_like_image_reference(value) for value in inputs]

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

    # --- ONNX and the model card --------------------------------------------------------------------------
    def export_onnx(self, directory: Path, examples: list[Any] | None = None) -> list[Path]:
        """One file per tower: ``model.onnx`` for a one-tower model, else ``text.onnx`` and ``image.onnx``."""
        if self.modality != "text-image":
            return [self._export_tower(self.modality, directory / MODEL_FILE, examples)]
        return [self._export_tower(tower, directory / f"{tower}.onnx", examples) for tower in ("text", "image")]

    def _export_tower(self, tower: str, path: Path, examples: list[Any] | None) -> Path:
        if tower == "text":
            inputs = self.text_inputs(EXAMPLE_TEXTS)
            forward = _TowerForward(self, "text", list(inputs))
            return export_module(forward, tuple(inputs.values()), list(inputs), {1: "tokens"}, path)
        images = self.images(examples or example_images())
        return export_module(_TowerForward(self, "image"), (images,), ["pixel_values"], {}, path)

    @classmethod
    def card_usage(cls) -> str:
        return _OPEN_CLIP_USAGE

    @classmethod
    def card_onnx_usage(cls, files: list[str]) -> str:
        listed = ", ".join(f"`{f}`" for f in files)
        return (
            f"With ONNX Runtime ({listed}; output `embedding`): a text tower takes {cls.onnx_text_inputs} "
            "(`finetuner.get_model(path).tokenize(texts)`), an image tower `pixel_values` (`.images(images)`).\n"
        )


class _TowerForward(nn.Module):
    def __init__(self, model: ClipEmbeddingModel, tower: str, names: list[str] | None = None):
        super().__init__()
        self.model = model
        self.tower = tower
        self.names = names or []

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        if self.tower == "text":
            return self.model._head(self.model.encode_text(dict(zip(self.names, inputs, strict=True))))
        return self.model._head(self.model.encode_image(inputs[0]))


def build_open_clip(
    name: str, options: ModelOptions, load: bool = True, saved: dict[str, Any] | None = None
) -> ClipEmbeddingModel:
    """An open_clip model: ``openclip/<architecture>[::<tag>]``, ``<architecture>::<tag>`` or ``hf-hub:<repo>``
    (or a Hugging Face id whose folder is an open_clip one); ``saved``: the config saved with a model, which
    rebuilds it as it was. Weights: ``options.weights``, else the tag's or the repo's (``load``), else random."""
    architecture, tag, repo = open_clip_name(name)
    if architecture is not None and "/" in architecture:  # a Hugging Face id found to hold an open_clip folder
        architecture, repo = None, architecture
    checkpoint = options.weights if (load and options.pretrained) else None
    preprocess = {}
    if saved is not None:
        model_cfg, preprocess = saved["model_cfg"], saved.get("preprocess_cfg", {})
    elif repo is not None:
        folder = local_path(name)  # the repo's folder: its config (a random init needs it too) and weights
        repo_config = json.loads((folder / CLIP_CONFIG_FILE).read_text("utf-8"))
        model_cfg, preprocess = repo_config["model_cfg"], repo_config.get("preprocess_cfg", {})
        if load and options.pretrained and checkpoint is None:
            checkpoint = next(str(p) for p in (folder / n for n in _REPO_WEIGHTS) if p.is_file())
    else:
        if architecture not in open_clip.list_models():
            raise ModelNotAvailableError(
                f"unknown open_clip architecture {architecture!r}; see open_clip.list_models()"
            )
        model_cfg = open_clip.get_model_config(architecture)
        if (load and options.pretrained and checkpoint is None) or tag is not None:
            tag_cfg = open_clip.get_pretrained_cfg(architecture, open_clip_tag(architecture, tag))
            preprocess = {k: tag_cfg[k] for k in ("mean", "std", "interpolation", "resize_mode") if k in tag_cfg}
            model_cfg["quick_gelu"] = bool(tag_cfg.get("quick_gelu", model_cfg.get("quick_gelu", False)))
            if load and options.pretrained and checkpoint is None:
                checkpoint = str(local_path(name))
    clip, tokenizer, transform = _open_clip_parts(architecture, model_cfg, preprocess, checkpoint)
    config = {
        "architecture": architecture or f"hf-hub:{repo}",
        "embed_dim": model_cfg["embed_dim"],
        "model_cfg": model_cfg,
        "preprocess_cfg": preprocess,
    }
    return ClipEmbeddingModel(name, options, clip, tokenizer, transform, config)


_REPO_WEIGHTS = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")


def _open_clip_parts(architecture: str | None, model_cfg: dict[str, Any], preprocess: dict, checkpoint: str | None):
    """The open_clip model of ``model_cfg`` (as ``open_clip.create_model`` builds it, nothing downloaded: a Hugging
    Face text tower from the local folder the resolver finds), its tokenizer and image transform."""
    cfg = deepcopy(model_cfg)
    text = cfg.setdefault("text_cfg", {})
    for key in ("hf_model_name", "hf_tokenizer_name"):
        if text.get(key):
            text[key] = str(local_path(text[key]))
    if "hf_model_name" in text:
        text["hf_model_pretrained"] = checkpoint is None
    if "timm_model_name" in cfg.get("vision_cfg", {}):
        cfg["vision_cfg"]["timm_model_pretrained"] = False
    custom_text = cfg.pop("custom_text", False) or "hf_model_name" in text
    model_class = (
        (open_clip.CoCa if "multimodal_cfg" in cfg else open_clip.CustomTextCLIP) if custom_text else open_clip.CLIP
    )
    clip = model_class(**cfg)
    if checkpoint:
        open_clip.load_checkpoint(clip, checkpoint, strict=True, weights_only=True)
    preprocess_cfg = merge_preprocess_dict(asdict(PreprocessCfg()), preprocess)
    preprocess_cfg["size"] = clip.visual.image_size
    open_clip.set_model_preprocess_cfg(clip, preprocess_cfg)
    transform = image_transform_v2(PreprocessCfg(**clip.visual.preprocess_cfg), is_train=False)
    context = text.get("context_length", 77)
    if text.get("hf_tokenizer_name"):
        tokenizer = open_clip.tokenizer.HFTokenizer(
            text["hf_tokenizer_name"],
            context_length=context,
            tokenizer_mode=text.get("tokenizer_mode"),
            **text.get("tokenizer_kwargs", {}),
        )
    elif architecture is not None:
        try:
            tokenizer = open_clip.get_tokenizer(architecture)
        except Exception as exc:  # tokenizers that live on a hub cannot be fetched here
            raise ModelNotAvailableError(f"the tokenizer of {architecture} is not available offline: {exc}") from None
    else:
        tokenizer = open_clip.tokenizer.SimpleTokenizer(context_length=context, **text.get("tokenizer_kwargs", {}))
    return clip, tokenizer, transform


def build_lit(name: str, options: ModelOptions, load: bool = True) -> ClipEmbeddingModel:
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
    return ClipEmbeddingModel(name, options, clip, tokenizer, transform, config)


_OPEN_CLIP_USAGE = """With open_clip: the CLIP weights are the entries of `open_clip_model.safetensors` under `clip.`
(the others are the embedding head); `open_clip_config.json` names the architecture and holds its config
(`model_cfg`):

```python
import json

import open_clip
import safetensors.torch

config = json.load(open("path/to/model/open_clip_config.json"))
state = safetensors.torch.load_file("path/to/model/open_clip_model.safetensors")
clip = open_clip.create_model(config["architecture"], pretrained=None)  # two-tower models: open_clip.CustomTextCLIP
clip.load_state_dict({k.removeprefix("clip."): v for k, v in state.items() if k.startswith("clip.")})
```
"""
