import numpy as np
import pytest
import torch
from PIL import Image
from sentence_transformers import SentenceTransformer
from torch import nn

from finetuner_core.evaluation import label_retrieval_metrics
from finetuner_core.models import (
    ModelNotAvailableError,
    ModelOptions,
    build_model,
    list_backbones,
    load_model,
)
from finetuner_core.models.freeze import layer_groups
from finetuner_core.models.resolve import resolve_model
from finetuner_protocol.backbones import check_name

IMAGE = np.random.default_rng(0).integers(0, 255, (32, 32, 3), dtype=np.uint8)
VECTOR = np.linspace(-1, 1, 12, dtype=np.float32)


def tiny_options(spec) -> dict:
    """Random init where no weights are packaged, small images where the backbone allows it."""
    options = {} if spec.packaged else {"pretrained": False}
    if spec.modality == "image" and "vit" not in spec.name:
        options["image_size"] = 32
    if spec.family == "mlp":
        options["input_dim"] = 12
    return options


def inputs_for(modality: str) -> list:
    return {"text": ["how do I top up", "card lost"], "image": [IMAGE, IMAGE[::-1]], "vector": [VECTOR, -VECTOR]}[
        modality
    ]


@pytest.mark.slow
@pytest.mark.parametrize("spec", list_backbones(), ids=lambda spec: spec.name)
def test_every_registered_backbone_becomes_an_embedding_model(spec):
    model = build_model(spec.name, tiny_options(spec), "cpu")
    assert model.dim == spec.output_dim
    for modality in ["text", "image"] if spec.modality == "text-image" else [spec.modality]:
        embeddings = model.encode(inputs_for(modality))
        assert embeddings.shape == (2, spec.output_dim) and np.isfinite(embeddings).all()
    classifiers = [m for m in model.modules() if isinstance(m, nn.Linear) and m.out_features in (1000, 21843)]
    assert not classifiers, "the classification head is removed"


@pytest.mark.parametrize(
    "name,options,modality",
    [
        ("all-MiniLM-L6-v2", {}, "text"),
        ("efficientnet-lite0", {"image_size": 32}, "image"),
        ("mlp", {"input_dim": 12}, "vector"),
        ("resnet50", {"pretrained": False, "image_size": 32, "pooling": "gem"}, "image"),
        ("openclip/RN50", {"pretrained": False, "select_model": "clip-vision", "image_size": 64}, "image"),
    ],
)
def test_projection_normalisation_and_save_load(name, options, modality, tmp_path):
    model = build_model(name, {**options, "output_dim": 16}, "cpu")
    embeddings = model.encode(inputs_for(modality))
    assert embeddings.shape == (2, 16)
    np.testing.assert_allclose(np.linalg.norm(embeddings, axis=1), 1.0, rtol=1e-5)
    again = load_model(model.save(tmp_path / "saved"), "cpu")
    assert (again.name, again.modality, again.dim) == (model.name, model.modality, 16)
    np.testing.assert_array_equal(again.encode(inputs_for(modality)), embeddings)
    raw = build_model(name, {**options, "output_dim": 16, "normalize": False}, "cpu").encode(inputs_for(modality))
    assert not np.allclose(np.linalg.norm(raw, axis=1), 1.0)


def test_two_tower_clip_saves_and_loads_both_towers(tmp_path):
    model = build_model("lit-minilm-efficientnet-lite0", {"image_size": 64}, "cpu")
    mixed = ["a photo of a cat", IMAGE]
    again = load_model(model.save(tmp_path / "clip"), "cpu")
    np.testing.assert_array_equal(again.encode(mixed), model.encode(mixed))
    assert (tmp_path / "clip" / "open_clip_model.safetensors").exists()


def test_lit_model_trains_only_its_projections():
    model = build_model("lit-minilm-efficientnet-lite0", {"image_size": 64}, "cpu")
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(not n.startswith(("clip.visual.trunk", "clip.text.transformer")) for n in trainable)
    assert "clip.logit_scale" in trainable


def test_text_artifact_is_a_sentence_transformers_folder(tmp_path):
    model = build_model("all-MiniLM-L6-v2", {"output_dim": 32}, "cpu")
    model.save(tmp_path / "text")
    plain = SentenceTransformer(str(tmp_path / "text"), device="cpu")
    texts = ["exchange rate", "card arrival"]
    np.testing.assert_allclose(plain.encode(texts), model.encode(texts), atol=1e-5)


@pytest.mark.parametrize("pooling", ["mean", "cls", "max"])
def test_text_pooling_modes(pooling, minilm):
    texts = ["why was my card declined", "top up failed"]
    embeddings = build_model("all-MiniLM-L6-v2", {"pooling": pooling}, "cpu").encode(texts)
    same = np.allclose(embeddings, minilm.encode(texts), atol=1e-5)
    assert same == (pooling == "mean"), "MiniLM's own pooling is mean"


def test_freeze_exactly_the_requested_groups_and_is_safe_to_repeat():
    model = build_model("efficientnet-lite0", {"image_size": 32, "output_dim": 8}, "cpu")
    groups = layer_groups(model.backbone)
    assert "model.conv_stem" in groups and "model.blocks.0" in groups

    def trainable() -> set[str]:
        return {name for name, p in model.named_parameters() if p.requires_grad}

    everything = trainable()
    model.apply_freeze(True)
    assert trainable() == {"projection.weight", "projection.bias"}
    model.apply_freeze(["model.conv_stem", "model.blocks.0"])
    once = trainable()
    model.apply_freeze(["model.conv_stem", "model.blocks.0"])
    assert trainable() == once
    frozen = everything - once
    assert frozen and all(n.startswith(("backbone.model.conv_stem", "backbone.model.blocks.0.")) for n in frozen)
    model.apply_freeze(False)
    assert trainable() == everything
    with pytest.raises(ValueError, match="unknown layer group"):
        model.apply_freeze(["nope"])


def test_unavailable_models_fail_with_an_offline_message(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))  # an empty cache
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelNotAvailableError, match="'bert-base-uncased' is not available offline"):
        resolve_model("bert-base-uncased")
    with pytest.raises(ModelNotAvailableError, match="resnet50"):
        resolve_model("resnet50")  # torchvision's default weights: not in the torch hub cache
    with pytest.raises(ModelNotAvailableError, match="not found"):
        resolve_model("resnet50", {"weights": str(tmp_path / "missing.pth")})
    with pytest.raises(ModelNotAvailableError, match="unknown open_clip architecture"):
        build_model("openclip/NoSuchArch", {"pretrained": False})
    for name in ("no such model", "a/b/c", "org/x/../y"):
        with pytest.raises(ModelNotAvailableError):
            check_name(name)
    for name in ("BAAI/bge-small-en-v1.5", "timm/resnet50.a1_in1k", "resnet50::IMAGENET1K_V2", "hf-hub:laion/x"):
        check_name(name)  # well formed: whether it is available is the resolver's to say


def test_local_weights_file_is_loaded(tmp_path):
    source = build_model("resnet50", {"pretrained": False, "image_size": 32}, "cpu")
    state = {f"{k}": v for k, v in source.backbone.state_dict().items()}
    state["fc.weight"] = torch.zeros(1000, 2048)  # a classifier the embedding model does not keep
    torch.save(state, tmp_path / "resnet50.pth")
    loaded = build_model("resnet50", {"weights": str(tmp_path / "resnet50.pth"), "image_size": 32}, "cpu")
    np.testing.assert_allclose(loaded.encode([IMAGE]), source.encode([IMAGE]), atol=1e-5)


@pytest.mark.parametrize("name", ["vit_b_16", "timm/vit_base_patch16_224"])
def test_gem_pooling_is_refused_for_vision_transformers(name):
    with pytest.raises(ValueError, match="pooling 'gem' does not apply"):
        build_model(name, {"pretrained": False, "pooling": "gem"}, "cpu")


def test_model_options_are_validated():
    with pytest.raises(ValueError):
        ModelOptions(select_model="clip-audio")
    with pytest.raises(ValueError, match="MLP needs"):
        build_model("mlp", {}, "cpu")


@pytest.mark.slow
def test_packaged_efficientnet_has_imagenet_features(data_dir):
    """Nearest neighbours of CIFAR-10 images are mostly same-class with the real weights, not at random init."""
    paths = [p for folder in sorted((data_dir / "cifar10" / "test").iterdir()) for p in sorted(folder.iterdir())[:20]]
    images = [Image.open(p).convert("RGB") for p in paths]
    labels = [p.parent.name for p in paths]
    pretrained = build_model("efficientnet-lite0", {}, "cpu").encode(images)
    random = build_model("efficientnet-lite0", {"pretrained": False}, "cpu").encode(images)
    p1 = label_retrieval_metrics(pretrained, labels, (1,))["precision@1"]
    p1_random = label_retrieval_metrics(random, labels, (1,))["precision@1"]
    assert p1 > 0.4 and p1 > p1_random + 0.15, (p1, p1_random)


def test_a_plain_hugging_face_encoder_folder_gets_mean_pooling(tmp_path, minilm):
    from transformers import AutoModel, AutoTokenizer

    from finetuner_protocol.backbones import minilm_path

    AutoModel.from_pretrained(str(minilm_path())).save_pretrained(tmp_path / "hf")
    AutoTokenizer.from_pretrained(str(minilm_path())).save_pretrained(tmp_path / "hf")
    model = build_model(str(tmp_path / "hf"), {"pooling": "mean"}, "cpu")
    texts = ["card payment declined", "pin blocked"]
    np.testing.assert_allclose(model.encode(texts), minilm.encode(texts), atol=1e-5)


@pytest.mark.slow
def test_open_clip_weights_come_from_a_local_checkpoint(tmp_path):
    source = build_model("openclip/ViT-S-32-alt", {"pretrained": False}, "cpu")
    torch.save(source.clip.state_dict(), tmp_path / "clip.pt")
    loaded = build_model("openclip/ViT-S-32-alt", {"weights": str(tmp_path / "clip.pt")}, "cpu")
    np.testing.assert_allclose(
        loaded.encode(["a photo of a dog", IMAGE]), source.encode(["a photo of a dog", IMAGE]), atol=1e-5
    )
    text_only = build_model(
        "openclip/ViT-S-32-alt", {"weights": str(tmp_path / "clip.pt"), "select_model": "clip-text"}, "cpu"
    )
    assert text_only.modality == "text"
    np.testing.assert_allclose(text_only.encode(["a photo of a dog"]), source.encode(["a photo of a dog"]), atol=1e-5)


def test_describe_models_lists_every_backbone(capsys):
    import finetuner

    rows = finetuner.describe_models(flow=False)  # the catalogue alone: where the weights would come from is the Flow's
    assert [row["name"] for row in rows] == [spec.name for spec in list_backbones()]
    assert {row["where"] for row in rows} == {None}
    printed = capsys.readouterr().out
    assert "efficientnet-lite0" in printed and "all-MiniLM-L6-v2" in printed


def test_batchnorm_statistics_stay_fixed_while_training_unless_asked():
    model = build_model("efficientnet-lite0", {"image_size": 32}, "cpu").train()
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert norms and not any(m.training for m in norms) and model.training
    before = norms[0].running_mean.clone()
    model.embed([IMAGE, IMAGE[::-1]])
    assert torch.equal(norms[0].running_mean, before)
    free = build_model("efficientnet-lite0", {"image_size": 32, "freeze_batchnorm": False}, "cpu").train()
    assert all(m.training for m in free.modules() if isinstance(m, nn.BatchNorm2d))
