"""CLIP checkpoints in the transformers format (``model_type: clip``: ``openai/clip-vit-base-patch32``, the
Finetuner names clip-base-en / clip-large-en): transformers' ``CLIPModel`` with its tokenizer and image processor.

The towers, ``select_model`` (``clip-text`` / ``clip-vision``), text-image pairs, the projection head and ONNX are
the open_clip family's (:class:`ClipEmbeddingModel`); this class says how the transformers model tokenizes,
encodes, locks, saves and loads. ``lock_text`` / ``lock_image`` freeze a tower (with its projection);
``lock_text_unlocked_layers`` / ``lock_image_unlocked_groups`` leave its last N layers trainable (then its final
norm and projection too, as open_clip unlocks them). A saved model holds the CLIP folder as transformers writes it
(``clip/``: config, safetensors weights, tokenizer, preprocessor) and the embedding head (``model.safetensors``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import safetensors.torch
import torch
from torch import nn
from transformers import AutoImageProcessor, AutoTokenizer, CLIPConfig, CLIPModel

from finetuner_core.models.base import WEIGHTS_FILE
from finetuner_core.models.families import register_family
from finetuner_core.models.families.clip import ClipEmbeddingModel
from finetuner_core.models.freeze import lock, parameter_groups
from finetuner_core.models.resolve import local_path
from finetuner_protocol.backbones import HF_CLIP_FAMILY
from finetuner_protocol.data.images import load_image
from finetuner_protocol.model_options import ModelOptions

CLIP_FOLDER = "clip"
MAX_TOKENS = 77  # CLIP's text positions


@register_family
class HfClipEmbeddingModel(ClipEmbeddingModel):
    family = HF_CLIP_FAMILY
    onnx_text_inputs = "`input_ids` and `attention_mask`"
    library = "transformers"
    builds_hub_ids = True  # from the Hugging Face cache, or the Hub where downloads are allowed

    @classmethod
    def create(cls, name: str, options: ModelOptions, pretrained: bool = True) -> HfClipEmbeddingModel:
        """The folder the resolver finds for ``name``; its weights unless ``pretrained`` is off (a random init)."""
        return cls._from_folder(name, options, local_path(name), pretrained and options.pretrained)

    @classmethod
    def _from_folder(cls, name: str, options: ModelOptions, folder: Path, weights: bool) -> HfClipEmbeddingModel:
        if weights:
            clip = CLIPModel.from_pretrained(str(folder), local_files_only=True)
        else:
            clip = CLIPModel(CLIPConfig.from_pretrained(str(folder), local_files_only=True))
        tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
        processor = AutoImageProcessor.from_pretrained(str(folder), local_files_only=True)
        if options.image_size:
            raise ValueError(f"image_size does not apply to {name!r}: its image size is its config's")
        config = {"embed_dim": clip.config.projection_dim, "architecture": "CLIPModel"}
        return cls(name, options, clip, tokenizer, processor, config)

    @classmethod
    def load(cls, directory: Path, config: dict[str, Any]) -> HfClipEmbeddingModel:
        options = ModelOptions.model_validate(config["options"])
        model = cls._from_folder(config["name"], options, directory / CLIP_FOLDER, weights=True)
        model.load_head(directory)
        return model

    # --- the towers -----------------------------------------------------------------------------------------
    def tokenize(self, texts: list[str]) -> dict[str, torch.Tensor]:
        limit = min(self.clip.config.text_config.max_position_embeddings, MAX_TOKENS)
        encoded = self.tokenizer(list(texts), padding=True, truncation=True, max_length=limit, return_tensors="pt")
        return {"input_ids": encoded["input_ids"], "attention_mask": encoded["attention_mask"]}

    def text_inputs(self, texts: list[str]) -> dict[str, torch.Tensor]:
        return self.tokenize(texts)

    def encode_text(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        pooled = self.clip.text_model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"])
        return self.clip.text_projection(pooled.pooler_output)

    def encode_image(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.clip.visual_projection(self.clip.vision_model(pixel_values=pixel_values).pooler_output)

    def images(self, values: list[Any]) -> torch.Tensor:
        pictures = [load_image(value, f"item {i}") for i, value in enumerate(values)]
        return self.transform(images=pictures, return_tensors="pt")["pixel_values"]

    # --- locking --------------------------------------------------------------------------------------------
    def _lock(self, tower: str, lit: bool) -> None:
        clip = self.clip
        if tower == "text":
            model, projection, first, final = clip.text_model, "text_projection", "embeddings", "final_layer_norm"
        else:
            model, projection, first, final = clip.vision_model, "visual_projection", "embeddings", "post_layernorm"
        both = nn.ModuleDict({"model": model, "projection": getattr(clip, projection)})
        layers = [f"model.encoder.layers.{i}" for i in range(len(model.encoder.layers))]
        groups = parameter_groups(both, [f"model.{first}", *layers])
        unlocked = self._unlocked(tower)
        lock(both, groups, unlocked, f"{tower} tower of {self.name}")
        if unlocked:  # the tower's output end trains with its last layers
            for module in (getattr(model, final), both["projection"]):
                module.requires_grad_(True)

    # --- saving ---------------------------------------------------------------------------------------------
    def save_weights(self, directory: Path) -> None:
        folder = directory / CLIP_FOLDER
        self.clip.save_pretrained(str(folder), safe_serialization=True)
        self.tokenizer.save_pretrained(str(folder))
        self.transform.save_pretrained(str(folder))
        head = {k: v.contiguous() for k, v in self.state_dict().items() if not k.startswith("clip.")}
        safetensors.torch.save_file(head, str(directory / WEIGHTS_FILE))

    def load_weights(self, directory: Path) -> None:
        self.load_head(directory)
        self.clip.load_state_dict(CLIPModel.from_pretrained(str(directory / CLIP_FOLDER)).state_dict())

    def load_head(self, directory: Path) -> None:
        head = safetensors.torch.load_file(str(directory / WEIGHTS_FILE))
        missing, unexpected = self.load_state_dict(head, strict=False)
        if unexpected or any(not key.startswith("clip.") for key in missing):
            raise ValueError(f"{directory / WEIGHTS_FILE} does not fit {self.name!r}: {unexpected or missing}")

    @classmethod
    def card_usage(cls) -> str:
        return _TRANSFORMERS_USAGE


_TRANSFORMERS_USAGE = """With transformers: `clip/` is the CLIP model as transformers saves it (config, weights,
tokenizer, image processor); `model.safetensors` holds the embedding head (`projection.*`, if any) applied to its
projected features:

```python
from transformers import AutoProcessor, CLIPModel

model = CLIPModel.from_pretrained("path/to/model/clip")
processor = AutoProcessor.from_pretrained("path/to/model/clip")
texts = model.get_text_features(**processor(text=["a photo of a cat"], return_tensors="pt", padding=True))
```
"""
