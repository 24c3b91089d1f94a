"""How a backbone becomes an embedding model: typed options, validated where they enter."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

LOCK_OPTIONS = ("lock_image", "lock_text", "lock_image_unlocked_groups", "lock_text_unlocked_layers")
MAX_DIM = 65_536  # embedding, input and hidden sizes
MAX_LAYERS = 1000


class FieldError(ValueError):
    """A validator's reason about one field: the configuration's error names ``field`` (a dotted path)."""

    def __init__(self, field: str, reason: str):
        super().__init__(reason)
        self.field = field


class ModelOptions(BaseModel):
    """Options of every family; a family ignores what does not apply to it and refuses what is wrong for it."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    weights: str | None = Field(None, description="local weights file (image / CLIP backbones)")
    pretrained: bool = Field(True, description="False: random init, only when asked for explicitly")
    pooling: str | None = Field(None, description="text: mean | cls | max; image: avg | gem (None: the default)")
    output_dim: int | None = Field(None, ge=1, le=MAX_DIM, description="add a linear projection to this size")
    normalize: bool = Field(True, description="L2-normalise the embeddings")
    freeze: bool | list[str] | None = Field(
        None,
        description="True: the whole backbone (then only a projection head, output_dim, trains); a list: those "
        "layer groups; None: the family default",
    )
    select_model: Literal["clip-text", "clip-vision"] | None = Field(None, description="one tower of a CLIP")
    input_dim: int | None = Field(None, ge=1, le=MAX_DIM, description="MLP: size of the input vectors")
    hidden_dims: list[int] = Field(default_factory=lambda: [256], max_length=64, description="MLP: hidden layer sizes")
    image_size: int | None = Field(None, ge=8, le=1024, description="image side fed to the backbone")
    freeze_batchnorm: bool = Field(
        True, description="keep BatchNorm statistics fixed while training (class-sampled batches skew them)"
    )
    lock_image: bool | None = Field(
        None, description="CLIP: freeze the image tower (None: the model's default, locked for the LiT two-tower)"
    )
    lock_text: bool | None = Field(
        None, description="CLIP: freeze the text tower (None: the model's default, locked for the LiT two-tower)"
    )
    lock_image_unlocked_groups: int = Field(
        0, ge=0, le=MAX_LAYERS, description="CLIP: leave the last N layer groups of the locked image tower trainable"
    )
    lock_text_unlocked_layers: int = Field(
        0, ge=0, le=MAX_LAYERS, description="CLIP: leave the last N layers of the locked text tower trainable"
    )

    def locking(self) -> list[str]:
        """The tower-locking options set here (they apply to CLIP models only)."""
        return [name for name in LOCK_OPTIONS if getattr(self, name) != type(self).model_fields[name].default]

    @model_validator(mode="after")
    def _unlocked_needs_a_lock(self) -> ModelOptions:
        for tower, unlocked in (("image", "lock_image_unlocked_groups"), ("text", "lock_text_unlocked_layers")):
            if getattr(self, unlocked) and getattr(self, f"lock_{tower}") is False:
                raise ValueError(
                    f"{unlocked} leaves part of a locked {tower} tower trainable; not with lock_{tower}=False"
                )
        return self

    @field_validator("hidden_dims")
    @classmethod
    def _positive(cls, value: list[int]) -> list[int]:
        if any(size < 1 or size > MAX_DIM for size in value):
            raise ValueError(f"hidden sizes must be between 1 and {MAX_DIM}, got {value}")
        return value
