"""The model resolver: packaged -> folder -> the Hugging Face cache -> the Hub (only where allowed).

The cache is a temporary one laid out as huggingface_hub lays it out (``models--ORG--NAME/{blobs, refs/main,
snapshots/<commit>/...}``, snapshot files linking to blobs named by their git / LFS hashes), filled from the packaged
MiniLM under new ids, and read through huggingface_hub's own API with ``HF_HUB_OFFLINE=1``.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from huggingface_hub import scan_cache_dir

from finetuner_core.models import build_model, get_family
from finetuner_core.models.hub import hub_cache_dir
from finetuner_core.models.resolve import (
    CACHE,
    FOLDER,
    HUB,
    LIBRARY,
    PACKAGED,
    file_digest,
    folder_digest,
    resolve_model,
)
from finetuner_protocol.backbones import (
    FINETUNER_ALIASES,
    ModelNotAvailableError,
    ModelSourceError,
    backbone_family,
    canonical,
    efficientnet_lite0_path,
    expected_modality,
    minilm_path,
)

COMMIT = "0123456789abcdef0123456789abcdef01234567"
TEXTS = ["where is my card?", "I was charged twice for the same purchase"]
# Finetuner 0.8's model names and the ids they stood for (jina-ai/finetuner, docs/walkthrough/choose-backbone.md
# and its model stubs: display_name -> descriptor).
FINETUNER_NAMES = {
    "bert-base-en": "bert-base-cased",
    "bert-base-multi": "bert-base-multilingual-cased",
    "sbert-base-en": "sentence-transformers/msmarco-distilbert-base-v3",
    "distiluse-base-multi": "sentence-transformers/distiluse-base-multilingual-cased-v1",
    "jina-embedding-t-en-v1": "jinaai/jina-embedding-t-en-v1",
    "jina-embedding-s-en-v1": "jinaai/jina-embedding-s-en-v1",
    "jina-embedding-b-en-v1": "jinaai/jina-embedding-b-en-v1",
    "jina-embedding-l-en-v1": "jinaai/jina-embedding-l-en-v1",
    "resnet-base": "resnet50",
    "resnet-large": "resnet152",
    "efficientnet-base": "efficientnet_b4",
    "efficientnet-large": "efficientnet_b7",
    "clip-base-en": "openai/clip-vit-base-patch32",
    "clip-large-en": "openai/clip-vit-large-patch14",
    "clip-base-multi": "openclip/xlm-roberta-base-ViT-B-32::laion5b_s13b_b90k",
}
PLAIN_FILES = ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "vocab.txt")


def git_blob_hash(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def fill_cache(cache: Path, repo_id: str, source: Path, files: tuple[str, ...] | None = None) -> Path:
    """``source``'s files (or ``files`` of them) as the snapshot ``COMMIT`` of ``repo_id`` in the hub cache
    ``cache``: blobs named by sha256 (large, LFS) or git blob hash (small), relative links, refs/main."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(COMMIT)
    (repo / "blobs").mkdir()
    snapshot = repo / "snapshots" / COMMIT
    chosen = [source / name for name in files] if files else [p for p in source.rglob("*") if p.is_file()]
    for file in sorted(chosen):
        data = file.read_bytes()
        blob = repo / "blobs" / (hashlib.sha256(data).hexdigest() if len(data) > 1 << 20 else git_blob_hash(data))
        if not blob.exists():
            try:
                os.link(file, blob)  # the same bytes without a copy where the file system allows
            except OSError:
                shutil.copyfile(file, blob)
        link = snapshot / file.relative_to(source)
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    return snapshot


@pytest.fixture(scope="module")
def hf_home(tmp_path_factory) -> Path:
    """An HF_HOME whose hub cache holds the packaged MiniLM as ``acme/minilm-copy`` (sentence-transformers
    folder), its bare transformer as ``acme/plain-minilm`` (no sentence-transformers config: mean pooling), the
    same folder under sbert-base-en's id, and a CLIP config as ``acme/some-clip``."""
    home = tmp_path_factory.mktemp("hf_home")
    cache = home / "hub"
    fill_cache(cache, "acme/minilm-copy", minilm_path())
    fill_cache(cache, "acme/plain-minilm", minilm_path(), PLAIN_FILES)
    fill_cache(cache, FINETUNER_NAMES["sbert-base-en"], minilm_path())
    clip = tmp_path_factory.mktemp("clip")
    (clip / "config.json").write_text(json.dumps({"model_type": "clip"}))
    fill_cache(cache, "acme/some-clip", clip)
    return home


@pytest.fixture
def offline(hf_home, monkeypatch) -> Path:
    monkeypatch.setenv("HF_HOME", str(hf_home))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.delenv("HUGGINGFACE_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return hf_home / "hub"


def test_the_cache_is_laid_out_as_huggingface_hub_reads_it(offline):
    assert hub_cache_dir() == offline
    repos = {repo.repo_id: repo for repo in scan_cache_dir(offline).repos}
    assert {"acme/minilm-copy", "acme/plain-minilm"} <= set(repos)
    (revision,) = repos["acme/minilm-copy"].revisions
    assert revision.commit_hash == COMMIT and "main" in revision.refs
    assert {f.file_name for f in revision.files} >= {"config.json", "model.safetensors", "modules.json"}


def test_an_id_in_the_cache_resolves_to_its_snapshot_and_commit(offline):
    source = resolve_model("acme/minilm-copy")
    assert source.kind == CACHE and source.id == "acme/minilm-copy" and source.family == "sentence-transformers"
    assert source.path == offline / "models--acme--minilm-copy" / "snapshots" / COMMIT and source.revision == COMMIT
    assert source.record() == {
        "name": "acme/minilm-copy",
        "id": "acme/minilm-copy",
        "kind": CACHE,
        "family": "sentence-transformers",
        "revision": COMMIT,
        "license": "apache-2.0",  # the model card's front matter
    }


def test_the_cache_is_the_one_the_environment_names_when_asked(offline, monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty"))
    with pytest.raises(ModelNotAvailableError):
        resolve_model("acme/minilm-copy")
    monkeypatch.setenv("HF_HUB_CACHE", str(offline))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "elsewhere"))
    assert resolve_model("acme/minilm-copy").kind == CACHE


def test_a_cached_id_builds_the_same_model_as_the_packaged_one(offline, tmp_path):
    packaged = build_model("all-MiniLM-L6-v2", device="cpu")
    cached = build_model("acme/minilm-copy", device="cpu")
    np.testing.assert_allclose(cached.encode(TEXTS), packaged.encode(TEXTS), atol=1e-6)
    assert cached.source["kind"] == CACHE and cached.source["revision"] == COMMIT
    assert packaged.source["kind"] == PACKAGED and packaged.source["revision"] == folder_digest(minilm_path())
    saved = json.loads((cached.save(tmp_path / "model") / "finetuner.json").read_text("utf-8"))
    assert saved["name"] == "acme/minilm-copy" and saved["source"] == cached.source


def test_a_plain_transformers_encoder_in_the_cache_gets_mean_pooling(offline):
    assert not (resolve_model("acme/plain-minilm").path / "modules.json").exists()
    plain = build_model("acme/plain-minilm", device="cpu")
    packaged = build_model("all-MiniLM-L6-v2", device="cpu")  # MiniLM's own pooling is mean
    np.testing.assert_allclose(plain.encode(TEXTS), packaged.encode(TEXTS), atol=1e-5)


def test_an_id_nowhere_here_is_refused_in_one_line_saying_what_to_do(offline):
    with pytest.raises(ModelNotAvailableError) as refused:
        build_model("acme/not-there", device="cpu")
    message = str(refused.value)
    assert message.startswith("model 'acme/not-there' is not available offline: ") and "\n" not in message
    for advice in ("unset HF_HUB_OFFLINE", "hf download acme/not-there", "model roots"):
        assert advice in message
    with pytest.raises(ModelNotAvailableError, match=r"^model 'bert-base-en' \(bert-base-cased\) is not available"):
        resolve_model("bert-base-en")


def test_the_hub_is_asked_only_where_downloads_are_allowed(offline, monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.delenv("FINETUNER_DOWNLOADS", raising=False)
    source = resolve_model("acme/not-there")  # resolving downloads nothing: it says where the weights would come from
    assert (source.kind, source.path, source.revision) == (HUB, None, None)
    assert resolve_model("acme/minilm-copy").kind == CACHE, "the cache comes before the Hub"
    with pytest.raises(ModelNotAvailableError, match="not available offline"):
        resolve_model("acme/not-there", allow_download=False)
    monkeypatch.setenv("FINETUNER_DOWNLOADS", "off")
    with pytest.raises(ModelNotAvailableError, match="not available offline"):
        resolve_model("acme/not-there")


def test_packaged_models_come_first_with_the_digest_of_their_files():
    text = resolve_model("sentence-transformers/all-MiniLM-L6-v2")
    assert (text.kind, text.id, text.path) == (PACKAGED, "all-MiniLM-L6-v2", minilm_path())
    image = resolve_model("efficientnet-lite0")
    assert image.kind == PACKAGED and image.path == efficientnet_lite0_path()
    assert image.revision == "sha256:" + hashlib.sha256(efficientnet_lite0_path().read_bytes()).hexdigest()
    assert image.revision == file_digest(efficientnet_lite0_path())
    two_tower = resolve_model("lit-minilm-efficientnet-lite0")
    assert two_tower.kind == PACKAGED and two_tower.revision.startswith("sha256:")


def test_a_folder_is_a_source_and_a_request_may_name_one_only_under_the_model_roots(offline, tmp_path):
    folder = resolve_model("acme/minilm-copy").path
    source = resolve_model(str(folder))
    assert source.kind == FOLDER and source.path == folder.resolve() and source.revision == folder_digest(folder)
    assert resolve_model(str(folder), roots=[offline.resolve()], with_revision=False).kind == FOLDER
    with pytest.raises(ModelSourceError, match="operator's model roots"):
        resolve_model(str(folder), roots=[tmp_path])


def test_the_other_libraries_names_resolve_to_their_weights_or_a_random_init(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert resolve_model("resnet50", {"pretrained": False}).kind == LIBRARY
    with pytest.raises(ModelNotAvailableError, match=r"resnet50-11ad3fa6\.pth\) are not in the torch hub cache"):
        resolve_model("resnet-base")


def test_a_clip_checkpoint_in_the_cache_is_for_the_transformers_clip_family(offline):
    """(Building one: tests/unit/test_library_weights.py.)"""
    family = resolve_model("acme/some-clip").family
    assert family == "transformers-clip" and get_family(family).builds_hub_ids


@pytest.mark.parametrize("alias", sorted(FINETUNER_NAMES))
def test_every_finetuner_name_stands_for_its_model(alias):
    spec = FINETUNER_ALIASES[alias]
    assert canonical(alias) == spec.target == FINETUNER_NAMES[alias]
    assert backbone_family(alias) == spec.family and expected_modality(alias) == spec.modality


def test_the_table_of_finetuner_names_is_complete_and_each_resolves_as_its_id(offline):
    assert set(FINETUNER_ALIASES) == set(FINETUNER_NAMES)
    source = resolve_model("sbert-base-en")  # the cache holds a model under sbert-base-en's id
    assert (source.kind, source.id, source.revision) == (CACHE, FINETUNER_NAMES["sbert-base-en"], COMMIT)


def test_describe_models_lists_finetuner_names_with_what_they_stand_for(capsys):
    import finetuner

    rows = finetuner.describe_models(aliases=True)
    stands_for = {row["name"]: row["stands_for"] for row in rows if row["stands_for"]}
    assert stands_for == FINETUNER_NAMES
    assert "sbert-base-en" in capsys.readouterr().out
