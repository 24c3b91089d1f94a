"""How a backbone becomes an embedding model: typed options, validated where they enter."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator


class ModelOptions(BaseModel):
    """Options of every family; a family ignores what does not apply to it and refuses what is wrong for it."""

    model_config = ConfigDict(extra="forbid")

    weights: str | None = Field(None, description="local weights file (image / CLIP backbones)")
    pretrained: bool = Field(True, description="False: random init, only when asked for explicitly")
    pooling: str | None = Field(None, description="text: mean | cls | max; image: avg | gem (None: the default)")
    output_dim: int | None = Field(None, ge=1, description="add a linear projection to this size")
    normalize: bool = Field(True, description="L2-normalise the embeddings")
    freeze: bool | list[str] | None = Field(
        None, description="True: the whole backbone; a list: those layer groups; None: the family default"
    )
    select_model: Literal["clip-text", "clip-vision"] | None = Field(None, description="one tower of a CLIP")
    input_dim: int | None = Field(None, ge=1, description="MLP: size of the input vectors")
    hidden_dims: list[int] = Field(default_factory=lambda: [256], description="MLP: hidden layer sizes")
    image_size: int | None = Field(None, ge=8, le=1024, description="image side fed to the backbone")
    freeze_batchnorm: bool = Field(
        True, description="keep BatchNorm statistics fixed while training (class-sampled batches skew them)"
    )

    @field_validator("hidden_dims")
    @classmethod
    def _positive(cls, value: list[int]) -> list[int]:
        if any(size < 1 for size in value):
            raise ValueError(f"hidden sizes must be >= 1, got {value}")
        return value
