"""Downloading the weights of timm and torchvision names as a run does (``resolve.fetch``), from a stand-in Hub on
127.0.0.1 (tests/hub_server.py) into a temporary HF_HOME and TORCH_HOME: progress as ``Download`` log records,
resumption, one copy, and nothing half-written where each library reads its cache.

- timm: the packaged EfficientNet-Lite0 weights as the Hub repo ``timm/tf_efficientnet_lite0.in1k``.
- open_clip: a tiny ``hf-hub:`` repo (its config and weights), with a README the download leaves out.
- torchvision: a mobilenet_v3_small state dict (random init) as the weights enum's file, served as a plain file from
  the mirror ``$FINETUNER_TORCHVISION_MIRROR`` names. Random weights cannot carry the real file's sha256 prefix: the
  tests that need the file taken turn that check off; the one that checks it leaves it on.
"""

from __future__ import annotations

import re
import threading
import time
from pathlib import Path

import huggingface_hub.constants
import numpy as np
import pytest
import torch
import torchvision
from hub_server import PLAIN, HubServer

from conftest import cifar10_files
from finetuner_core.models import build_model, library
from finetuner_core.models.library import INCOMPLETE, TORCHVISION_MIRROR_VARIABLE, library_weights
from finetuner_core.models.resolve import CACHE, HUB, fetch, resolve_model
from finetuner_protocol.backbones import ModelNotAvailableError
from finetuner_protocol.logs import Download
from unit.test_library_weights import write_timm_lite0, write_tiny_open_clip

TIMM = "timm/tf_efficientnet_lite0.in1k"
OPEN_CLIP = "acme/tiny-open-clip"
TORCHVISION = "mobilenet_v3_small::IMAGENET1K_V1"
TV_FILE = "mobilenet_v3_small-047dcff4.pth"
TV_PATH = f"models/{TV_FILE}"


@pytest.fixture(scope="module")
def state() -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    return torchvision.models.mobilenet_v3_small(weights=None).state_dict()


@pytest.fixture(scope="module")
def hub(tmp_path_factory, state):
    weights = tmp_path_factory.mktemp("torchvision") / TV_FILE
    torch.save(state, weights)
    lite0 = write_timm_lite0(tmp_path_factory.mktemp("lite0"))
    tiny_clip = write_tiny_open_clip(tmp_path_factory.mktemp("tiny_open_clip"))
    (tiny_clip / "README.md").write_text("---\nlicense: mit\n---\n")
    with HubServer({TIMM: lite0, OPEN_CLIP: tiny_clip}, files={TV_PATH: weights}) as server:
        yield server


@pytest.fixture
def online(hub, monkeypatch, tmp_path) -> Path:
    """Downloads allowed from the stand-in Hub (and its torchvision mirror) into an empty HF_HOME and TORCH_HOME;
    the torch hub's checkpoints folder. huggingface_hub read HF_HUB_OFFLINE when this test process imported it: its
    flag follows."""
    for variable in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.delenv("FINETUNER_DOWNLOADS", raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv(TORCHVISION_MIRROR_VARIABLE, f"{hub.url}/models")
    hub.rate_bps = None
    hub.restore()
    hub.served.clear()
    return tmp_path / "torch" / "hub" / "checkpoints"


@pytest.fixture
def any_digest(monkeypatch) -> None:
    """The sha256-prefix check of torchvision files off (no prefix is found in a name)."""
    monkeypatch.setattr(library, "_HASH_PREFIX", re.compile(r"(?!)"))


def visible(folder: Path) -> list[str]:
    """What the torch hub reads in its checkpoints folder: the files there, not the hidden ones on their way."""
    return sorted(p.name for p in folder.iterdir() if not p.name.startswith(".")) if folder.is_dir() else []


def check_records(records: list[Download], model: str, total: int, first_done: int = 0) -> None:
    """``records`` are one download of ``total`` bytes, ``first_done`` of them here before it began."""
    assert records and all(r.model == model and r.total_bytes == total and not r.waiting for r in records)
    assert records[0].done_bytes == first_done and records[-1].complete and records[-1].done_bytes == total
    dones = [r.done_bytes for r in records]
    assert dones == sorted(dones)


def test_a_timm_repo_is_downloaded_with_progress_then_builds_offline_like_the_packaged_model(
    online, hub, monkeypatch, data_dir
):
    resolved = resolve_model(TIMM)
    assert resolved.kind == HUB and resolved.family == "timm" and resolved.path is None
    files = hub.repos[TIMM]
    assert sorted(files) == ["config.json", "model.safetensors"]
    hub.rate_bps = files["model.safetensors"].size / 1.5  # a download of seconds reports on its way
    records: list[Download] = []
    source = fetch(resolved, records.append)
    commit = hub.commits[TIMM]
    assert source.kind == HUB and source.revision == commit
    assert source.path == Path(online.parents[2], "hf", "hub", "models--timm--tf_efficientnet_lite0.in1k",
                               "snapshots", commit, "model.safetensors")  # fmt: skip
    check_records(records, TIMM, hub.size(TIMM))
    assert any(0 < r.done_bytes < r.total_bytes and r.file == "model.safetensors" for r in records)
    assert {path: hub.gets(TIMM, path) for path in files} == dict.fromkeys(files, 1)

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    asked = len(hub.served)
    assert resolve_model(TIMM).kind == CACHE and resolve_model(TIMM).path == source.path
    images = [str(path) for path, _ in cifar10_files(data_dir, 2, 2)]
    from_hub = build_model(TIMM, device="cpu").encode(images)
    np.testing.assert_allclose(from_hub, build_model("efficientnet-lite0", device="cpu").encode(images), atol=1e-5)
    assert len(hub.served) == asked, "built from the cache alone"


def test_an_open_clip_hub_repo_is_downloaded_with_its_config_and_weights_and_builds(online, hub):
    name = f"hf-hub:{OPEN_CLIP}"
    records: list[Download] = []
    source = fetch(resolve_model(name), records.append)
    files = hub.repos[OPEN_CLIP]
    wanted = ["open_clip_config.json", "open_clip_model.safetensors"]
    assert source.kind == HUB and source.path.name == hub.commits[OPEN_CLIP] and source.revision == source.path.name
    assert sorted(p.name for p in source.path.iterdir()) == wanted and hub.gets(OPEN_CLIP, "README.md") == 0
    check_records(records, OPEN_CLIP, sum(files[path].size for path in wanted))
    assert resolve_model(name).kind == CACHE and resolve_model(name).path == source.path
    assert build_model(name, device="cpu").encode(["a photo of a cat"]).shape == (1, 16)
    assert all(hub.gets(OPEN_CLIP, path) == 1 for path in wanted)


def test_a_torchvision_file_comes_from_the_mirror_with_progress_and_builds(online, hub, state, any_digest):
    weights = library_weights(TORCHVISION)
    assert weights.url == f"{hub.url}/{TV_PATH}" and weights.file == online / TV_FILE
    resolved = resolve_model(TORCHVISION)
    assert resolved.kind == HUB and resolved.family == "torchvision"
    records: list[Download] = []
    source = fetch(resolved, records.append)
    assert source.kind == HUB and source.path == online / TV_FILE and source.revision.startswith("sha256:")
    size = hub.files[TV_PATH].size
    check_records(records, TORCHVISION, size)
    assert records[-1].file == TV_FILE
    assert hub.ranges(PLAIN, TV_PATH) == [None] and visible(online) == [TV_FILE]

    assert resolve_model(TORCHVISION).kind == CACHE
    model = build_model(TORCHVISION, {"image_size": 32}, device="cpu")
    loaded = model.backbone.state_dict()
    assert all(torch.equal(loaded[key], value) for key, value in state.items() if key in loaded)
    assert sum(key in loaded for key in state) > len(state) - 3, "all but the classifier's last layer"
    assert hub.gets(PLAIN, TV_PATH) == 1


def test_an_interrupted_torchvision_download_fails_in_one_line_leaves_nothing_and_resumes(online, hub, any_digest):
    cut, size = 3_000_000, hub.files[TV_PATH].size
    hub.cut(PLAIN, TV_PATH, after_bytes=cut)
    with pytest.raises(ModelNotAvailableError) as failed:
        fetch(resolve_model(TORCHVISION))
    message = str(failed.value)
    assert message.startswith(f"model {TORCHVISION!r}: the download of torchvision ")
    assert f"{hub.url}/{TV_PATH}: the connection closed after " in message and "\n" not in message
    assert visible(online) == [] and resolve_model(TORCHVISION).kind == HUB
    partial = online / INCOMPLETE / f"{TV_FILE}.partial"
    kept = partial.stat().st_size
    assert 0 < kept <= cut

    hub.restore()
    records: list[Download] = []
    assert fetch(resolve_model(TORCHVISION), records.append).path == online / TV_FILE
    assert hub.ranges(PLAIN, TV_PATH) == [None, f"bytes={kept}-"]
    assert hub.bytes_sent(PLAIN, TV_PATH) == cut + size - kept, "the second try asked for the rest only"
    check_records(records, TORCHVISION, size, first_done=kept)
    assert visible(online) == [TV_FILE] and not partial.exists()


def test_a_partial_file_already_whole_is_checked_and_moved_into_place(online, hub, any_digest):
    partial = online / INCOMPLETE / f"{TV_FILE}.partial"
    partial.parent.mkdir(parents=True)
    partial.write_bytes(hub.files[TV_PATH].source.read_bytes())  # a download stopped just before its move
    records: list[Download] = []
    assert fetch(resolve_model(TORCHVISION), records.append).path == online / TV_FILE
    size = hub.files[TV_PATH].size
    assert hub.ranges(PLAIN, TV_PATH) == [f"bytes={size}-"] and hub.bytes_sent(PLAIN, TV_PATH) == 0
    check_records(records, TORCHVISION, size, first_done=size)


def test_a_torchvision_file_with_the_wrong_digest_is_refused_and_not_kept(online, hub):
    with pytest.raises(ModelNotAvailableError) as failed:
        fetch(resolve_model(TORCHVISION))
    message = str(failed.value)
    assert message.endswith(
        f"{hub.url}/{TV_PATH}: the bytes downloaded are not the file: their sha256 does not start with 047dcff4"
    )
    assert visible(online) == [] and not (online / INCOMPLETE / f"{TV_FILE}.partial").exists()
    assert resolve_model(TORCHVISION).kind == HUB


def test_two_asking_for_one_torchvision_file_download_it_once(online, hub, any_digest):
    hub.rate_bps = hub.files[TV_PATH].size / 1.5
    first: list[Download] = []
    second: list[Download] = []
    paths: list[Path] = []
    downloading = threading.Thread(target=lambda: paths.append(fetch(resolve_model(TORCHVISION), first.append).path))
    downloading.start()
    deadline = time.monotonic() + 60
    while not hub.bytes_sent(PLAIN, TV_PATH):
        assert time.monotonic() < deadline and downloading.is_alive(), "the first download began"
        time.sleep(0.02)
    paths.append(fetch(resolve_model(TORCHVISION), second.append).path)
    downloading.join(timeout=60)
    assert paths == [online / TV_FILE] * 2 and hub.gets(PLAIN, TV_PATH) == 1
    assert second == [Download(model=TORCHVISION, waiting=True)] and first[-1].complete
