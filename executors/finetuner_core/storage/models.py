"""The workspace's model store: models an operator pulled from the Hugging Face Hub or imported by hand (a folder
or an archive), which a fit names like any backbone (``models.resolve`` looks here right after the packaged models).

    <workspace>/models/<key>/model/        the model's files: a sentence-transformers / Hugging Face / open_clip
                                           folder, or a saved Finetuner model (finetuner.json)
    <workspace>/models/<key>/record.json   name, origin, revision, family, size, files, created_at, licence
    <workspace>/models/.locks/<key>.lock   held while a name is written or deleted

``<key>`` is the name with its ``/`` written ``--`` (which no name may hold; nor ``~``, which ends the key in the
names of staging folders). A model is written into a staging
folder inside the store and renamed into place at the end: a reader sees all of it or nothing, and a failure (or a
killed process: the next writer of the name clears what it left) leaves nothing behind. A second pull of a name
being pulled waits for the first, then finds the model. Nothing is unpickled here: files are copied, never loaded.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import tarfile
import tempfile
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any

from filelock import FileLock

from finetuner_core.models.hub import Progress, cached_snapshot, download, downloads_allowed, is_hub_id, snapshot_family
from finetuner_core.models.source import folder_digest
from finetuner_protocol.backbones import (
    DEFAULT_CLIP_MODEL,
    DEFAULT_IMAGE_MODEL,
    DEFAULT_TEXT_MODEL,
    ModelNotAvailableError,
    canonical,
    is_registered,
)

MODELS_FOLDER = "models"  # the store's folder in a workspace
MODEL_FILES, RECORD_FILE = "model", "record.json"
MAX_NAME = 96  # as long as a Hugging Face id may be
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*(/[A-Za-z0-9][A-Za-z0-9_.-]*)?")
MARKERS = ("config.json", "modules.json", "open_clip_config.json", "finetuner.json")  # what makes a folder a model
ARCHIVES = (".tar", ".tar.gz", ".tgz", ".zip")
SKIPPED = (".git", ".cache")  # a clone's history, huggingface_hub's download bookkeeping
LICENCE = re.compile(r"^licen[cs]e:[ \t]*['\"]?([^'\"\n#]+?)['\"]?[ \t]*$", re.MULTILINE)


class ModelStoreError(ValueError):
    """A name, folder or archive the store refuses (one line, naming it)."""


@dataclass(frozen=True)
class StoredModel:
    """What the store records of a model. ``origin``: the id pulled, or the folder / archive imported (its base
    name); ``revision``: the Hub's commit hash (a pull), or ``sha256:`` of the files (an import)."""

    name: str
    origin: str
    revision: str
    family: str
    size: int
    files: int
    created_at: str
    licence: str | None = None

    def record(self) -> dict[str, Any]:
        return asdict(self)


def check_name(name: str) -> str:
    """``name`` as the store keeps it (a Finetuner model name as the id it stands for); ModelStoreError unless it
    is letters, digits, ``-_.``, at most one ``/``, no ``..`` or ``--``, at most :data:`MAX_NAME` characters."""
    model_id = canonical(name) if isinstance(name, str) else name
    if not isinstance(model_id, str) or not _valid(model_id):
        raise ModelStoreError(
            f"model name {name!r}: use letters, digits, '-', '_' and '.', at most one '/', no '..' or '--', "
            f"at most {MAX_NAME} characters"
        )
    if model_id in (DEFAULT_TEXT_MODEL, DEFAULT_IMAGE_MODEL, DEFAULT_CLIP_MODEL):
        raise ModelStoreError(f"model {name!r} is packaged with the service: it needs no copy in the store")
    if is_registered(model_id):
        raise ModelStoreError(
            f"model {name!r} is a registered backbone, built by its library: the store holds Hugging Face, "
            "sentence-transformers and open_clip folders and saved models"
        )
    return model_id


def _valid(name: str) -> bool:
    return len(name) <= MAX_NAME and bool(NAME.fullmatch(name)) and ".." not in name and "--" not in name


class ModelStore:
    """The models of ``root`` (``<workspace>/models``), by name."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    # --- reading ----------------------------------------------------------------------------------------------
    def lookup(self, name: str) -> tuple[Path, StoredModel] | None:
        """The folder of ``name``'s files and its record; None when the store does not hold it (any name may be
        asked: one the store could not hold is simply not there)."""
        model_id = canonical(name) if isinstance(name, str) else ""
        if not _valid(model_id):
            return None
        folder = self._folder(model_id)
        try:
            record = json.loads((folder / RECORD_FILE).read_text("utf-8"))
        except (OSError, ValueError):
            return None
        return folder / MODEL_FILES, StoredModel(**record)

    def list(self) -> list[StoredModel]:
        """Every stored model, by name."""
        if not self.root.is_dir():
            return []
        found = []
        for folder in sorted(self.root.iterdir()):
            if folder.name.startswith("."):
                continue
            stored = self.lookup(folder.name.replace("--", "/"))
            if stored is not None:
                found.append(stored[1])
        return sorted(found, key=lambda record: record.name)

    # --- writing ----------------------------------------------------------------------------------------------
    def import_path(self, path: str | Path, name: str) -> StoredModel:
        """Store the model folder or archive (.tar, .tar.gz, .tgz, .zip) ``path`` as ``name``."""
        model_id = check_name(name)
        source = Path(path).expanduser()
        if not source.exists():
            raise ModelStoreError(f"{path}: no such folder or archive")
        if not source.is_dir() and not source.name.lower().endswith(ARCHIVES):
            raise ModelStoreError(f"{path}: not a folder or a {', '.join(ARCHIVES)} archive")
        inside, store = source.resolve(), self.root.resolve()
        if store.is_relative_to(inside) or inside.is_relative_to(store):
            raise ModelStoreError(f"{path}: a folder that holds the model store, or lies in it")
        with self._writing(model_id) as staging:
            unpacked = staging / "unpacked"
            if source.is_dir():
                copy_folder(source, unpacked)
            else:
                extract(source, unpacked)
            files = model_folder(unpacked, str(path), staging / MODEL_FILES)
            return self._commit(staging, model_id, source.name, folder_digest(files))

    def pull(self, name: str, progress: Progress | None = None) -> StoredModel:
        """Store the Hugging Face model ``name`` (a Finetuner model name: the id it stands for) from the Hugging
        Face cache, downloaded into it first where downloads are allowed (``models.hub.download``: resumable, once
        however many ask, ``progress`` told how far it is). The files are linked from the cache where the file
        system allows, else copied. A name already stored is returned as it is (delete it first to pull it
        again)."""
        model_id = check_name(name)
        if not is_hub_id(model_id):
            raise ModelStoreError(f"model {name!r} is not a Hugging Face id (ORG/NAME or NAME)")
        with self._writing(model_id) as staging:
            stored = self.lookup(model_id)
            if stored is not None:
                return stored[1]
            files = staging / MODEL_FILES
            snapshot = cached_snapshot(model_id)
            if snapshot is None and downloads_allowed():
                snapshot = download(model_id, name, progress)
            if snapshot is None:
                raise ModelNotAvailableError(
                    f"model {name!r} is not in the Hugging Face cache and nothing may be downloaded here "
                    "(HF_HUB_OFFLINE or FINETUNER_DOWNLOADS=off): pull it on a machine that may download, or "
                    "import its folder (finetuner models import PATH --name NAME)"
                )
            copy_folder(snapshot, files, link=True)
            model_folder(files, model_id, files)
            return self._commit(staging, model_id, model_id, snapshot.name)

    def delete(self, name: str) -> StoredModel:
        """Remove ``name`` from the store; its record. LookupError when it is not there."""
        model_id = canonical(name)
        stored = self.lookup(model_id)
        if stored is None:
            raise LookupError(f"model {name!r} is not in the store")
        with self._lock(model_id):
            folder = self._folder(model_id)
            if not folder.exists():
                raise LookupError(f"model {name!r} is not in the store")
            gone = Path(tempfile.mkdtemp(prefix=f".deleting-{_key(model_id)}~", dir=self.root))
            os.replace(folder, gone / "model")  # readers stop finding it here, at once
            shutil.rmtree(gone, ignore_errors=True)
        return stored[1]

    # --- inside ---------------------------------------------------------------------------------------------
    def _folder(self, model_id: str) -> Path:
        return self.root / _key(model_id)

    @contextmanager
    def _lock(self, model_id: str) -> Iterator[None]:
        locks = self.root / ".locks"
        locks.mkdir(parents=True, exist_ok=True)
        with FileLock(locks / f"{_key(model_id)}.lock"):
            yield

    @contextmanager
    def _writing(self, model_id: str) -> Iterator[Path]:
        """A staging folder inside the store, with ``model_id``'s lock held; removed at the end whatever happens
        (what a killed writer of the name left is removed first)."""
        with self._lock(model_id):
            key = _key(model_id)
            for left in [*self.root.glob(f".staging-{key}~*"), *self.root.glob(f".deleting-{key}~*")]:
                shutil.rmtree(left, ignore_errors=True)
            staging = Path(tempfile.mkdtemp(prefix=f".staging-{key}~", dir=self.root))
            staging.chmod(0o755)  # mkdtemp's is the owner's only; the stored model is readable as any folder
            try:
                yield staging
            finally:
                shutil.rmtree(staging, ignore_errors=True)

    def _commit(self, staging: Path, model_id: str, origin: str, revision: str) -> StoredModel:
        """Record the model in ``staging`` and rename it into place (refused when the name is taken)."""
        files = staging / MODEL_FILES
        if self._folder(model_id).exists():
            raise ModelStoreError(f"model {model_id!r} is already in the store: delete it first to replace it")
        sizes = [p.stat().st_size for p in files.rglob("*") if p.is_file()]
        record = StoredModel(
            name=model_id,
            origin=origin,
            revision=revision,
            family=family_of(model_id, files),
            size=sum(sizes),
            files=len(sizes),
            created_at=datetime.now(UTC).isoformat(timespec="seconds"),
            licence=licence_of(files),
        )
        (staging / RECORD_FILE).write_text(json.dumps(record.record(), indent=2) + "\n", encoding="utf-8")
        os.replace(staging, self._folder(model_id))
        return record


def workspace_models(run_folder: Path) -> ModelStore:
    """The model store of the workspace that holds the run folder ``run_folder`` (``<workspace>/runs/<id>``)."""
    return ModelStore(Path(run_folder).parent.parent / MODELS_FOLDER)


def _key(model_id: str) -> str:
    return model_id.replace("/", "--")


# --- bringing files in ------------------------------------------------------------------------------------
def copy_folder(source: Path, target: Path, link: bool = False) -> None:
    """Copy ``source``'s files into ``target`` (links to files followed: a cache snapshot's links become files),
    leaving out a clone's ``.git`` and a download's ``.cache``; anything but files and folders is refused.
    ``link``: hard-link each file where the file system allows (files that are never written again: the Hugging
    Face cache's blobs), else copy it."""
    target.mkdir(parents=True)
    for entry in sorted(source.iterdir()):
        if entry.name in SKIPPED:
            continue
        if entry.is_dir() and entry.is_symlink():
            raise ModelStoreError(f"{entry}: a link to a folder (copy the folder itself)")
        if entry.is_dir():
            copy_folder(entry, target / entry.name, link)
        elif entry.is_file():
            try:
                if not (link and _linked(entry.resolve(), target / entry.name)):
                    shutil.copyfile(entry, target / entry.name)
            except OSError as exc:
                raise ModelStoreError(f"{entry}: cannot be copied: {exc.strerror or exc}") from None
        else:
            raise ModelStoreError(f"{entry}: not a file or a folder (a broken link, a device or a pipe)")


def _linked(source: Path, target: Path) -> bool:
    try:
        os.link(source, target)
    except OSError:
        return False
    return True


def extract(archive: Path, target: Path) -> None:
    """Extract ``archive`` into ``target``; a member with an absolute path, a ``..``, a link or a device is
    refused (nothing is extracted then)."""
    target.mkdir(parents=True)
    try:
        if archive.name.lower().endswith(".zip"):
            with zipfile.ZipFile(archive) as zipped:
                for member in zipped.infolist():
                    _check_member(archive, member.filename, stat.S_IFMT(member.external_attr >> 16))
                zipped.extractall(target)
        else:
            with tarfile.open(archive) as tar:
                members = tar.getmembers()
                for member in members:
                    kind = stat.S_IFREG if member.isfile() else stat.S_IFDIR if member.isdir() else -1
                    _check_member(archive, member.name, kind)
                tar.extractall(target, members=members, filter="data")
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, OSError) as exc:
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise ModelStoreError(f"{archive}: cannot be extracted: {reason}") from None


def _check_member(archive: Path, name: str, kind: int) -> None:
    path = PurePosixPath(name.replace("\\", "/"))
    if path.is_absolute() or re.match(r"^[A-Za-z]:", name):
        raise ModelStoreError(f"{archive}: member {name!r} has an absolute path")
    if ".." in path.parts:
        raise ModelStoreError(f"{archive}: member {name!r} leads out of the archive's folder ('..')")
    if kind not in (0, stat.S_IFREG, stat.S_IFDIR):
        raise ModelStoreError(f"{archive}: member {name!r} is a link or a device, not a file or a folder")


def model_folder(unpacked: Path, origin: str, target: Path) -> Path:
    """The model in ``unpacked`` (its top, or the one folder at its top) moved to ``target``; ModelStoreError
    naming what is missing when it does not look like a model."""
    top = unpacked
    entries = [entry for entry in unpacked.iterdir() if entry.name not in SKIPPED]
    if not _has_marker(top) and len(entries) == 1 and entries[0].is_dir():
        top = entries[0]
    if not _has_marker(top):
        raise ModelStoreError(
            f"{origin} does not look like a model: none of {', '.join(MARKERS)} at its top (or in its one top folder)"
        )
    if top != target:
        os.replace(top, target)
    return target


def _has_marker(folder: Path) -> bool:
    return any((folder / marker).is_file() for marker in MARKERS)


# --- what the record says ---------------------------------------------------------------------------------
def family_of(model_id: str, folder: Path) -> str:
    """A saved Finetuner model's own family, else the family of a Hugging Face folder."""
    saved = folder / "finetuner.json"
    if saved.is_file():
        try:
            family = json.loads(saved.read_text("utf-8")).get("family")
        except (OSError, ValueError):
            family = None
        if isinstance(family, str):
            return family
    return snapshot_family(model_id, folder)


def licence_of(folder: Path) -> str | None:
    """The licence the model's README front matter (``license: ...``) or its config names; None when none does."""
    readme = folder / "README.md"
    if readme.is_file():
        text = readme.read_text("utf-8", errors="replace")
        if text.startswith("---"):
            match = LICENCE.search(text[3:].split("\n---", 1)[0])
            if match:
                return match.group(1).strip()
    for name in ("config.json", "open_clip_config.json"):
        try:
            value = json.loads((folder / name).read_text("utf-8")).get("license")
        except (OSError, ValueError, AttributeError):
            continue
        if isinstance(value, str) and value.strip():
            return value.strip()
    return None
