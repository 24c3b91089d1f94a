"""Locking CLIP towers (open_clip's --lock-image / --lock-text): trainable parameters per tower for each option,
on the LiT two-tower model and on a small open_clip architecture at random init."""

import pytest
from torch import nn

from finetuner_core.config import ConfigError, parse_fit_config
from finetuner_core.models import ModelOptions, build_model

LIT = "lit-minilm-efficientnet-lite0"
VIT = "openclip/ViT-S-32-alt"


def numel(module: nn.Module, *prefixes: str) -> int:
    """Parameters of ``module`` whose names start with one of ``prefixes`` (all without prefixes)."""
    return sum(p.numel() for n, p in module.named_parameters() if not prefixes or n.startswith(prefixes))


def trainable(model, tower_of) -> dict[str, int]:
    """Trainable parameters per tower (``tower_of(name)``: image, text or other)."""
    counts = {"image": 0, "text": 0, "other": 0}
    for name, parameter in model.named_parameters():
        if parameter.requires_grad:
            counts[tower_of(name)] += parameter.numel()
    return counts


def relock(model, **options) -> dict[str, int]:
    """Apply ``options`` to the built model again (freezing is safe to repeat) and count per tower."""
    model.options = ModelOptions.model_validate({"image_size": 32, **options})
    model.apply_freeze(model.options.freeze)
    return trainable(model, lit_tower)


# --- the LiT two-tower model (project layer groups) ----------------------------------------------------------------


def lit_tower(name: str) -> str:
    return "image" if name.startswith("clip.visual.") else "text" if name.startswith("clip.text.") else "other"


@pytest.fixture(scope="module")
def lit():
    return build_model(LIT, {"image_size": 32, "lock_text_unlocked_layers": 1}, "cpu")


@pytest.fixture(scope="module")
def lit_sizes(lit):
    trunk, text = lit.clip.visual.trunk, lit.clip.text.transformer
    return {
        "image proj": numel(lit.clip.visual.head),
        "text proj": numel(lit.clip.text.proj),
        "image trunk": numel(trunk),
        "text trunk": numel(text),
        # timm's layer groups of EfficientNet-Lite0 (as open_clip's lock of a timm tower counts them): the stem,
        # each block, and the last block with the head
        "last image group": numel(trunk, "blocks.6.", "conv_head.", "bn2."),
        "second last image group": numel(trunk, "blocks.5.3."),
        "last text layer": numel(text, "encoder.layer.5."),
    }


def test_the_built_model_takes_its_lock_options(lit, lit_sizes):
    assert trainable(lit, lit_tower) == {
        "image": lit_sizes["image proj"],
        "text": lit_sizes["text proj"] + lit_sizes["last text layer"],
        "other": 1,
    }


@pytest.mark.parametrize(
    "options,image,text",
    [
        ({}, ["image proj"], ["text proj"]),  # LiT: both trunks locked
        ({"lock_image": True, "lock_text": True}, ["image proj"], ["text proj"]),
        ({"lock_image": False}, ["image proj", "image trunk"], ["text proj"]),
        ({"lock_text": False}, ["image proj"], ["text proj", "text trunk"]),
        ({"lock_image_unlocked_groups": 1}, ["image proj", "last image group"], ["text proj"]),
        (
            {"lock_image_unlocked_groups": 2},
            ["image proj", "last image group", "second last image group"],
            ["text proj"],
        ),
        ({"lock_text_unlocked_layers": 1}, ["image proj"], ["text proj", "last text layer"]),
        ({"lock_text_unlocked_layers": 7}, ["image proj"], ["text proj", "text trunk"]),  # embeddings + 6 layers
        ({"freeze": False}, ["image proj", "image trunk"], ["text proj", "text trunk"]),  # no default locks then
        ({"freeze": False, "lock_image": True}, ["image proj"], ["text proj", "text trunk"]),
    ],
)
def test_two_tower_locking_per_option(lit, lit_sizes, options, image, text):
    counts = relock(lit, **options)
    assert counts == {
        "image": sum(lit_sizes[part] for part in image),
        "text": sum(lit_sizes[part] for part in text),
        "other": 1,  # logit_scale
    }


def test_two_tower_refuses_more_unlocked_layers_than_it_has(lit):
    with pytest.raises(ValueError, match="8 unlocked groups asked for, but the text tower .* has 7 layer groups"):
        relock(lit, lock_text_unlocked_layers=8)
    with pytest.raises(ValueError, match="lock_image_unlocked_groups needs lock_image=True"):
        relock(lit, freeze=False, lock_image_unlocked_groups=1)


@pytest.mark.parametrize("freeze_batchnorm", [True, False])
def test_batchnorm_statistics_follow_freeze_batchnorm_in_locked_and_unlocked_groups(lit, freeze_batchnorm):
    relock(lit, lock_image_unlocked_groups=1, freeze_batchnorm=freeze_batchnorm)
    lit.train()
    trunk = lit.clip.visual.trunk
    unlocked, locked = trunk.bn2, trunk.bn1
    assert unlocked.weight.requires_grad and not locked.weight.requires_grad
    assert unlocked.training is locked.training is not freeze_batchnorm
    lit.eval()


# --- an open_clip architecture (open_clip's own lock methods) ------------------------------------------------------

TEXT_PARTS = ("clip.transformer.", "clip.token_embedding.", "clip.positional_embedding", "clip.ln_final.")


def clip_tower(name: str) -> str:
    if name.startswith("clip.visual."):
        return "image"
    return "text" if name.startswith((*TEXT_PARTS, "clip.text_projection")) else "other"


@pytest.fixture(scope="module")
def vit_sizes():
    clip = build_model(VIT, {"pretrained": False}, "cpu").clip
    visual, blocks = clip.visual, clip.transformer.resblocks
    return {
        "image": numel(visual),
        "image proj": visual.proj.numel(),
        "last image block": numel(visual.transformer.resblocks[-1]) + numel(visual.ln_post),
        "text": numel(clip, *(part.removeprefix("clip.") for part in TEXT_PARTS)) + clip.text_projection.numel(),
        "text proj": clip.text_projection.numel(),
        "last text block": numel(blocks[-1]) + numel(clip.ln_final),
    }


@pytest.mark.parametrize(
    "options,image,text",
    [
        ({}, ["image"], ["text"]),
        ({"lock_image": True}, [], ["text"]),
        ({"lock_image": True, "lock_image_unlocked_groups": 1}, ["image proj"], ["text"]),
        ({"lock_image": True, "lock_image_unlocked_groups": 2}, ["image proj", "last image block"], ["text"]),
        ({"lock_text": True}, ["image"], []),
        ({"lock_text": True, "lock_text_unlocked_layers": 1}, ["image"], ["text proj"]),
        ({"lock_text": True, "lock_text_unlocked_layers": 2}, ["image"], ["text proj", "last text block"]),
        ({"lock_image": True, "lock_text": True}, [], []),
    ],
)
def test_open_clip_locking_per_option(vit_sizes, options, image, text):
    model = build_model(VIT, {"pretrained": False, **options}, "cpu")
    assert trainable(model, clip_tower) == {
        "image": sum(vit_sizes[part] for part in image),
        "text": sum(vit_sizes[part] for part in text),
        "other": 1,  # logit_scale
    }


def test_open_clip_unlocked_layers_need_the_lock():
    with pytest.raises(ValueError, match="lock_text_unlocked_layers needs lock_text=True"):
        build_model(VIT, {"pretrained": False, "lock_text_unlocked_layers": 1}, "cpu")


def test_a_resnet_image_tower_is_locked_whole_only():
    model = build_model("openclip/RN50", {"pretrained": False, "lock_image": True}, "cpu")
    assert trainable(model, clip_tower)["image"] == 0
    with pytest.raises(ValueError, match="ResNet image tower of 'openclip/RN50' can only be locked whole"):
        build_model("openclip/RN50", {"pretrained": False, "lock_image": True, "lock_image_unlocked_groups": 1}, "cpu")


# --- validation ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("model", ["mlp", "all-MiniLM-L6-v2", "efficientnet-lite0"])
def test_lock_options_are_for_clip_models_only(model):
    with pytest.raises(ConfigError, match="lock_image, lock_text_unlocked_layers: only for CLIP models, not"):
        parse_fit_config({"model": model, "model_options": {"lock_image": True, "lock_text_unlocked_layers": 1}})
    for clip in (LIT, VIT):
        parse_fit_config({"model": clip, "model_options": {"lock_image": True, "lock_text_unlocked_layers": 1}})


def test_unlocked_layers_of_an_unlocked_tower_are_refused():
    with pytest.raises(ConfigError, match="lock_text_unlocked_layers leaves part of a locked text tower trainable"):
        parse_fit_config({"model": LIT, "model_options": {"lock_text": False, "lock_text_unlocked_layers": 2}})
    with pytest.raises(ConfigError, match="lock_image_unlocked_groups"):
        parse_fit_config({"model": LIT, "model_options": {"lock_image_unlocked_groups": -1}})
