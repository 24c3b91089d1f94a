"""The workspace's model store: models imported from a folder or an archive, or pulled from the Hugging Face cache
(or the Hub), then named like any backbone; every refusal in one line, and nothing half-stored.

The imported model is the packaged MiniLM; the cache is a temporary HF_HOME laid out as huggingface_hub lays it out
(``unit.test_resolve.fill_cache``); the Hub is the stand-in one on 127.0.0.1 (``hub_server.HubServer``).
"""

from __future__ import annotations

import io
import os
import tarfile
import threading
import zipfile
from pathlib import Path

import huggingface_hub.constants
import numpy as np
import pytest
from hub_server import HubServer

from finetuner_core.models import build_model
from finetuner_core.models.resolve import STORE, folder_digest, resolve_model
from finetuner_core.storage.models import MARKERS, ModelStore, ModelStoreError
from finetuner_core.workspace import Workspace
from finetuner_protocol.backbones import ModelNotAvailableError, minilm_path
from unit.test_resolve import COMMIT, FINETUNER_NAMES, TEXTS, fill_cache


@pytest.fixture
def store(tmp_path) -> ModelStore:
    return Workspace(tmp_path / "workspace").models


@pytest.fixture(scope="module")
def archives(tmp_path_factory) -> dict[str, Path]:
    """The packaged MiniLM as a .tar.gz holding one top folder, and as a .zip with its files at the top."""
    folder = tmp_path_factory.mktemp("archives")
    files = sorted(p for p in minilm_path().rglob("*") if p.is_file())
    with tarfile.open(folder / "minilm.tar.gz", "w:gz", compresslevel=1) as tar:
        for file in files:
            tar.add(file, arcname=f"all-minilm/{file.relative_to(minilm_path()).as_posix()}")
    with zipfile.ZipFile(folder / "minilm.zip", "w", zipfile.ZIP_STORED) as zipped:
        for file in files:
            zipped.write(file, file.relative_to(minilm_path()).as_posix())
    return {"tar.gz": folder / "minilm.tar.gz", "zip": folder / "minilm.zip"}


@pytest.fixture
def offline_cache(tmp_path, monkeypatch) -> Path:
    """An empty Hugging Face cache in a temporary HF_HOME, downloads off."""
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))
    for variable in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "FINETUNER_DOWNLOADS"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return tmp_path / "hf_home" / "hub"


def left_in(store: ModelStore) -> list[str]:
    """What the store's folder holds besides its locks."""
    return sorted(p.name for p in store.root.iterdir() if p.name != ".locks") if store.root.exists() else []


def assert_one_line(exc: pytest.ExceptionInfo, *fragments: str) -> None:
    message = str(exc.value)
    assert "\n" not in message, message
    for fragment in fragments:
        assert fragment in message, (fragment, message)


def test_an_imported_folder_is_named_like_a_backbone_and_embeds_like_the_packaged_model(store):
    record = store.import_path(minilm_path(), "acme/minilm-tuned")
    files = [p for p in minilm_path().rglob("*") if p.is_file()]
    assert record.name == "acme/minilm-tuned" and record.origin == minilm_path().name
    assert record.revision == folder_digest(minilm_path()) and record.family == "sentence-transformers"
    assert (record.size, record.files) == (sum(p.stat().st_size for p in files), len(files))
    assert record.licence == "apache-2.0"  # the README's front matter
    folder, looked_up = store.lookup("acme/minilm-tuned")
    assert looked_up == record and folder_digest(folder) == record.revision

    source = resolve_model("acme/minilm-tuned", store=store)
    assert (source.kind, source.path, source.revision, source.family) == (STORE, folder, record.revision, record.family)
    model = build_model("acme/minilm-tuned", device="cpu", store=store)
    packaged = build_model("all-MiniLM-L6-v2", device="cpu")
    np.testing.assert_allclose(model.encode(TEXTS), packaged.encode(TEXTS), atol=1e-6)
    assert model.name == "acme/minilm-tuned" and model.source["kind"] == STORE
    assert model.source["revision"] == record.revision
    with pytest.raises(ModelNotAvailableError):  # the store is where it comes from
        resolve_model("acme/minilm-tuned")


@pytest.mark.parametrize("kind", ["tar.gz", "zip"])
def test_an_archive_is_imported_with_the_same_files(store, archives, kind):
    record = store.import_path(archives[kind], "acme/minilm-archived")
    assert record.origin == archives[kind].name and record.revision == folder_digest(minilm_path())
    folder, _ = store.lookup("acme/minilm-archived")
    assert (folder / "modules.json").is_file()  # the archive's one top folder is the model's top
    assert left_in(store) == ["acme--minilm-archived"]


def test_stored_models_are_listed_and_deleted(store, tmp_path):
    model = tmp_path / "tiny"
    model.mkdir()
    (model / "config.json").write_text('{"model_type": "bert"}')
    assert store.list() == []
    store.import_path(model, "zeta")
    store.import_path(model, "acme/alpha")
    assert [r.name for r in store.list()] == ["acme/alpha", "zeta"]
    with pytest.raises(ModelStoreError) as taken:
        store.import_path(model, "zeta")
    assert_one_line(taken, "'zeta' is already in the store")
    assert store.delete("zeta").name == "zeta"
    assert store.lookup("zeta") is None and [r.name for r in store.list()] == ["acme/alpha"]
    with pytest.raises(LookupError, match="'zeta' is not in the store"):
        store.delete("zeta")
    assert store.import_path(model, "zeta").name == "zeta"  # the name is free again
    assert left_in(store) == ["acme--alpha", "zeta"]


@pytest.mark.parametrize(
    "name",
    ["", "../x", "a/../b", "a/b/c", "/abs", "a--b", "-x", ".hidden", "a b", "x" * 97, "acme/~x"],
)
def test_a_bad_name_is_refused(store, name):
    with pytest.raises(ModelStoreError) as refused:
        store.import_path(minilm_path(), name)
    assert_one_line(refused, f"model name {name!r}", "at most one '/'")
    assert left_in(store) == [] and store.lookup(name) is None


@pytest.mark.parametrize(("name", "says"), [("all-MiniLM-L6-v2", "packaged"), ("resnet50", "registered")])
def test_a_name_the_store_would_never_be_asked_for_is_refused(store, name, says):
    with pytest.raises(ModelStoreError) as refused:
        store.import_path(minilm_path(), name)
    assert_one_line(refused, repr(name), says)


def tar_with(path: Path, member: tarfile.TarInfo, data: bytes = b"") -> Path:
    with tarfile.open(path, "w") as tar:
        config = tarfile.TarInfo("config.json")
        config.size = 2
        tar.addfile(config, io.BytesIO(b"{}"))
        tar.addfile(member, io.BytesIO(data) if data else None)
    return path


def tar_member(name: str, kind: bytes = tarfile.REGTYPE, size: int = 0, target: str = "") -> tarfile.TarInfo:
    member = tarfile.TarInfo(name)
    member.type, member.size, member.linkname = kind, size, target
    return member


@pytest.mark.parametrize(
    ("member", "says"),
    [
        (tar_member("../x", size=1), "leads out of the archive's folder"),
        (tar_member("sub/../../x", size=1), "leads out of the archive's folder"),
        (tar_member("/etc/x", size=1), "has an absolute path"),
        (tar_member("link", tarfile.SYMTYPE, target="/etc/passwd"), "is a link or a device"),
        (tar_member("hard", tarfile.LNKTYPE, target="config.json"), "is a link or a device"),
        (tar_member("dev", tarfile.CHRTYPE), "is a link or a device"),
    ],
)
def test_an_archive_member_outside_its_folder_a_link_or_a_device_is_refused(store, tmp_path, member, says):
    archive = tar_with(tmp_path / "model.tar", member, b"x" * member.size)
    with pytest.raises(ModelStoreError) as refused:
        store.import_path(archive, "acme/x")
    assert_one_line(refused, str(archive), repr(member.name), says)
    assert left_in(store) == [] and not (tmp_path / "x").exists()


def test_zip_members_outside_the_archive_or_links_are_refused(store, tmp_path):
    for name, says, mode in [
        ("../x", "leads out", 0o100644),
        ("/x", "absolute path", 0o100644),
        ("l", "link", 0o120777),
    ]:
        archive = tmp_path / "model.zip"
        with zipfile.ZipFile(archive, "w") as zipped:
            zipped.writestr("config.json", "{}")
            info = zipfile.ZipInfo(name)
            info.external_attr = mode << 16
            zipped.writestr(info, "/etc/passwd")
        with pytest.raises(ModelStoreError) as refused:
            store.import_path(archive, "acme/x")
        assert_one_line(refused, repr(name), says)
    assert left_in(store) == []


def test_a_folder_that_is_not_a_model_is_refused_naming_what_is_missing(store, tmp_path):
    (tmp_path / "weights").mkdir()
    (tmp_path / "weights" / "pytorch_model.bin").write_bytes(b"\0" * 8)
    (tmp_path / "weights" / "other").mkdir()
    with pytest.raises(ModelStoreError) as refused:
        store.import_path(tmp_path / "weights", "acme/x")
    assert_one_line(refused, "does not look like a model", *MARKERS)
    archive = tmp_path / "notes.txt"
    archive.write_text("x")
    with pytest.raises(ModelStoreError, match="not a folder or a .tar"):
        store.import_path(archive, "acme/x")
    with pytest.raises(ModelStoreError, match="no such folder or archive"):
        store.import_path(tmp_path / "missing", "acme/x")
    assert left_in(store) == []


def test_an_import_that_fails_half_way_leaves_nothing_behind(store, tmp_path, archives):
    folder = tmp_path / "model"
    folder.mkdir()
    for file in minilm_path().iterdir():
        if file.is_file():
            os.link(file, folder / file.name)
    (folder / "zz-unreadable").symlink_to(tmp_path / "gone")  # copied last, after every other file
    with pytest.raises(ModelStoreError) as refused:
        store.import_path(folder, "acme/x")
    assert_one_line(refused, "zz-unreadable", "not a file or a folder")
    truncated = tmp_path / "cut.tar.gz"
    truncated.write_bytes(archives["tar.gz"].read_bytes()[: archives["tar.gz"].stat().st_size // 2])
    with pytest.raises(ModelStoreError) as cut:
        store.import_path(truncated, "acme/x")
    assert_one_line(cut, str(truncated), "cannot be extracted")
    assert left_in(store) == [] and store.list() == []


def test_a_pull_copies_a_cached_model_with_the_cache_s_commit(store, offline_cache):
    fill_cache(offline_cache, "acme/minilm-copy", minilm_path())
    record = store.pull("acme/minilm-copy")
    assert (record.name, record.origin, record.revision) == ("acme/minilm-copy", "acme/minilm-copy", COMMIT)
    folder, _ = store.lookup("acme/minilm-copy")
    assert not any(p.is_symlink() for p in folder.rglob("*"))  # files, not links into the cache
    assert folder_digest(folder) == folder_digest(minilm_path())
    assert store.pull("acme/minilm-copy") == record  # stored already: the same record
    source = resolve_model("acme/minilm-copy", store=store)
    assert source.kind == STORE and source.revision == COMMIT


def test_a_finetuner_name_is_pulled_as_the_id_it_stands_for(store, offline_cache):
    model_id = FINETUNER_NAMES["sbert-base-en"]
    fill_cache(offline_cache, model_id, minilm_path())
    assert store.pull("sbert-base-en").name == model_id
    assert resolve_model("sbert-base-en", store=store).kind == STORE
    assert store.delete("sbert-base-en").name == model_id


def test_a_pull_with_downloads_off_and_nothing_cached_is_refused_in_one_line(store, offline_cache):
    with pytest.raises(ModelNotAvailableError) as refused:
        store.pull("acme/not-here")
    assert_one_line(refused, "'acme/not-here'", "nothing may be downloaded", "import")
    assert left_in(store) == []


def test_two_pulls_of_one_name_store_it_once(store, offline_cache):
    fill_cache(offline_cache, "acme/minilm-copy", minilm_path())
    start = threading.Barrier(2)
    records = []

    def pull() -> None:
        start.wait()
        records.append(store.pull("acme/minilm-copy"))

    threads = [threading.Thread(target=pull) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(records) == 2 and records[0] == records[1]  # the second found what the first stored
    assert left_in(store) == ["acme--minilm-copy"]


def test_a_pull_downloads_from_the_hub_where_downloads_are_allowed(store, offline_cache, monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)  # read when this process imported it
    with HubServer({"acme/minilm-served": minilm_path()}) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        seen = []
        record = store.pull("acme/minilm-served", progress=seen.append)
        assert record.revision == hub.commits["acme/minilm-served"]
        assert hub.gets("acme/minilm-served", "model.safetensors") == 1
    folder, _ = store.lookup("acme/minilm-served")
    assert folder_digest(folder) == folder_digest(minilm_path())
    assert seen and seen[-1].done_bytes == seen[-1].total_bytes == record.size
