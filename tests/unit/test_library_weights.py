"""Pretrained weights of timm, torchvision, open_clip and transformers CLIP, from caches laid out as each library
lays them out in temporary folders (``HF_HOME``, ``TORCH_HOME``), offline, through the real libraries.

- timm: the packaged EfficientNet-Lite0 weights written by timm's own ``save_for_hf`` as the Hub repo
  ``timm/tf_efficientnet_lite0.in1k`` embed an image exactly as the packaged backbone does.
- torchvision: a resnet18 state dict (random init: the test checks where the weights come from, not what they
  are) as the weights enum's file in the torch hub cache.
- open_clip: a tiny ``hf-hub:`` repo (open_clip_config.json + open_clip_model.safetensors).
- transformers CLIP: a tiny ``CLIPModel`` with the MiniLM tokenizer and a CLIP image processor.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import open_clip
import pytest
import safetensors.torch
import timm
import torch
import torchvision
from transformers import AutoTokenizer, CLIPConfig, CLIPImageProcessor, CLIPModel

from conftest import cifar10_files
from finetuner_core.models import build_model, get_family, library, load_model
from finetuner_core.models.families.image import load_efficientnet_lite0
from finetuner_core.models.library import LIBRARY_FAMILIES, library_family, library_weights
from finetuner_core.models.resolve import CACHE, HUB, LIBRARY, resolve_model
from finetuner_protocol.backbones import (
    FINETUNER_ALIASES,
    ModelNotAvailableError,
    backbone_family,
    canonical,
    efficientnet_lite0_path,
    expected_modality,
    is_registered,
    minilm_path,
)
from unit.test_resolve import COMMIT, fill_cache

TEXTS = ["a photo of a cat", "a red car on the road"]
TINY_OPEN_CLIP = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "patch_size": 16, "head_width": 16},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}


@pytest.fixture(scope="module")
def hf_home(tmp_path_factory):
    """An HF_HOME whose hub cache holds timm's EfficientNet-Lite0 repo, a tiny open_clip repo and a tiny
    transformers CLIP, each laid out as huggingface_hub lays a download out."""
    home = tmp_path_factory.mktemp("hf_home")
    cache = home / "hub"
    fill_cache(cache, "timm/tf_efficientnet_lite0.in1k", write_timm_lite0(tmp_path_factory.mktemp("lite0")))

    fill_cache(cache, "acme/tiny-open-clip", write_tiny_open_clip(tmp_path_factory.mktemp("tiny_open_clip")))

    fill_cache(cache, "acme/tiny-hf-clip", write_tiny_hf_clip(tmp_path_factory.mktemp("tiny_hf_clip")))
    return home


def write_timm_lite0(folder: Path) -> Path:
    """The packaged EfficientNet-Lite0 weights as timm's ``save_for_hf`` writes the Hub repo
    ``timm/tf_efficientnet_lite0.in1k`` (``config.json``, ``model.safetensors``)."""
    model = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    load_efficientnet_lite0(model, str(efficientnet_lite0_path()))
    timm.models.save_for_hf(model, str(folder), safe_serialization=True)
    return folder


def write_tiny_open_clip(folder: Path) -> Path:
    """A tiny random open_clip model as an ``hf-hub:`` repo holds it (open_clip_config.json + weights)."""
    torch.manual_seed(0)
    clip = open_clip.CLIP(**TINY_OPEN_CLIP)
    safetensors.torch.save_file(clip.state_dict(), str(folder / "open_clip_model.safetensors"))
    config = {"model_cfg": TINY_OPEN_CLIP, "preprocess_cfg": {"mean": [0.5] * 3, "std": [0.5] * 3}}
    (folder / "open_clip_config.json").write_text(json.dumps(config))
    return folder


def write_tiny_hf_clip(folder: Path) -> Path:
    """A tiny random ``CLIPModel`` as transformers saves it, with the MiniLM tokenizer (a WordPiece one: CLIP's
    BPE files are not here offline) and a CLIP image processor for 32 px images."""
    tokenizer = AutoTokenizer.from_pretrained(str(minilm_path()))
    layers = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2}
    text = {**layers, "vocab_size": tokenizer.vocab_size, "max_position_embeddings": 64}
    text["eos_token_id"] = tokenizer.sep_token_id  # the text tower pools at the tokenizer's end token
    vision = {**layers, "image_size": 32, "patch_size": 16}
    torch.manual_seed(0)
    CLIPModel(CLIPConfig(text_config=text, vision_config=vision, projection_dim=16)).save_pretrained(str(folder))
    tokenizer.save_pretrained(str(folder))
    CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(str(folder))
    return folder


@pytest.fixture
def offline(hf_home, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(hf_home))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.delenv("HUGGINGFACE_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    return hf_home / "hub"


@pytest.fixture(scope="module")
def images(data_dir):
    return [str(path) for path, _ in cifar10_files(data_dir, 2, 2)]


def test_a_timm_tag_builds_from_its_hub_repo_in_the_cache(offline, images):
    source = resolve_model("timm/tf_efficientnet_lite0.in1k")
    assert source.kind == CACHE and source.family == "timm" and source.revision == COMMIT
    assert source.path.name == "model.safetensors"
    assert resolve_model("timm/tf_efficientnet_lite0").path == source.path  # timm's default tag for it
    from_hub = build_model("timm/tf_efficientnet_lite0.in1k", device="cpu").encode(images)
    packaged = build_model("efficientnet-lite0", device="cpu").encode(images)
    np.testing.assert_allclose(from_hub, packaged, atol=1e-5)
    with pytest.raises(ModelNotAvailableError, match=r"hf download timm/resnet50\.a1_in1k"):
        resolve_model("timm/resnet50.a1_in1k")
    with pytest.raises(ModelNotAvailableError, match="no pretrained weights 'nope'"):
        resolve_model("timm/resnet50.nope")
    assert resolve_model("timm/resnet50.a1_in1k", {"pretrained": False}).kind == LIBRARY


def test_a_torchvision_enum_loads_its_file_from_the_torch_hub_cache(offline, tmp_path, monkeypatch):
    name = "resnet18::IMAGENET1K_V1"
    with pytest.raises(ModelNotAvailableError, match=r"not in the torch hub cache .*resnet18-f37072fd\.pth") as error:
        resolve_model(name)
    assert "\n" not in str(error.value) and "{'pretrained': False}" in str(error.value)
    file = library_weights(name).file
    assert file == tmp_path / "torch" / "hub" / "checkpoints" / "resnet18-f37072fd.pth"
    state = torchvision.models.resnet18(weights=None).state_dict()
    file.parent.mkdir(parents=True)
    torch.save(state, file)
    with pytest.raises(ModelNotAvailableError, match="is damaged: its sha256 does not start with f37072fd"):
        resolve_model(name)

    # Random weights cannot carry the real file's digest prefix: past that check, the file is what is loaded.
    monkeypatch.setattr(library, "_HASH_PREFIX", re.compile(r"(?!)"))
    source = resolve_model("resnet18")  # the enum's DEFAULT is IMAGENET1K_V1
    assert source.kind == CACHE and source.path == file and source.revision.startswith("sha256:")
    model = build_model("resnet18", {"image_size": 32}, device="cpu")
    loaded = model.backbone.state_dict()
    assert all(torch.equal(loaded[key], value) for key, value in state.items() if not key.startswith("fc."))


def test_an_open_clip_hub_repo_builds_and_embeds_offline(offline, images):
    source = resolve_model("hf-hub:acme/tiny-open-clip")
    assert source.kind == CACHE and source.family == "open_clip" and source.revision == COMMIT
    model = build_model("hf-hub:acme/tiny-open-clip", device="cpu")
    saved = safetensors.torch.load_file(str(source.path / "open_clip_model.safetensors"))
    assert all(torch.equal(model.clip.state_dict()[key], value) for key, value in saved.items())
    texts, pictures = model.encode(TEXTS), model.encode(images)
    assert texts.shape == (2, 16) and pictures.shape == (4, 16) and np.isfinite(texts).all()
    reference = open_clip.create_model(f"local-dir:{source.path}").eval()
    with torch.no_grad():
        expected = reference.encode_text(open_clip.tokenizer.SimpleTokenizer(context_length=16)(TEXTS))
    np.testing.assert_allclose(texts, torch.nn.functional.normalize(expected, dim=-1).numpy(), atol=1e-5)


def test_an_open_clip_tag_not_in_the_cache_is_refused_or_downloaded_where_allowed(offline, monkeypatch):
    with pytest.raises(ModelNotAvailableError, match=r"hf download laion/CLIP-ViT-B-32-laion2B-s34B-b79K"):
        resolve_model("openclip/ViT-B-32::laion2b_s34b_b79k")
    with pytest.raises(ModelNotAvailableError, match="no pretrained tag 'nope'"):
        resolve_model("ViT-B-32::nope")
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.delenv("FINETUNER_DOWNLOADS", raising=False)
    source = resolve_model("ViT-B-32::laion2b_s34b_b79k")  # nothing is downloaded until the model is built
    assert source.kind == HUB and source.family == "open_clip" and source.path is None
    with pytest.raises(ModelNotAvailableError, match="nothing may be downloaded"):
        resolve_model("ViT-B-32::laion2b_s34b_b79k", allow_download=False)  # the trainer's setting forbids it


def test_a_transformers_clip_builds_trains_saves_and_reloads(offline, images, tmp_path):
    source = resolve_model("acme/tiny-hf-clip")
    assert source.kind == CACHE and source.family == "transformers-clip"
    model = build_model("acme/tiny-hf-clip", device="cpu")
    assert model.encode(TEXTS).shape == (2, 16) and model.encode(images).shape == (4, 16)

    pairs_text, pairs_images = [*TEXTS, "a dog", "a ship"], images
    before = {k: v.clone() for k, v in model.state_dict().items()}
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    model.train()
    logits = model.logit_scale.exp() * model.embed(pairs_text) @ model.embed(pairs_images).T
    loss = torch.nn.functional.cross_entropy(logits, torch.arange(4))
    loss.backward()
    optimizer.step()
    assert torch.isfinite(loss)
    changed = [k for k, v in model.state_dict().items() if not torch.equal(v, before[k])]
    assert any(k.startswith("clip.text_model.") for k in changed) and any(
        k.startswith("clip.vision_model.") for k in changed
    )

    model.eval()
    model.save(tmp_path / "saved")
    loaded = load_model(tmp_path / "saved", device="cpu")
    np.testing.assert_allclose(loaded.encode(TEXTS), model.encode(TEXTS), atol=1e-6)
    np.testing.assert_allclose(loaded.encode(images), model.encode(images), atol=1e-6)


@pytest.mark.parametrize("alias", sorted(a for a, s in FINETUNER_ALIASES.items() if s.modality != "text"))
def test_every_image_and_clip_finetuner_name_resolves_to_its_model_and_family(alias):
    spec = FINETUNER_ALIASES[alias]
    target = canonical(alias)
    assert target == spec.target and backbone_family(alias) == spec.family
    assert expected_modality(alias) == spec.modality and get_family(spec.family).family == spec.family
    if spec.family in LIBRARY_FAMILIES:
        assert is_registered(alias) and library_family(target) == spec.family
        assert library_weights(target).family == spec.family  # the architecture and tag are the library's own
