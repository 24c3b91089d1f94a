"""The Hugging Face Hub and its cache: where the cache is, whether downloads are allowed, what the cache holds,
and downloading a model into it.

The cache is the one the environment names when called (``$HF_HUB_CACHE``, else ``$HF_HOME/hub``), read through
huggingface_hub's own lookup, so that sentence-transformers, transformers, timm and open_clip find the same files.
A download (:func:`download`: a whole snapshot, or some of its files) reports its progress as ``Download`` log
records, resumes what an earlier one left, happens once however many processes ask, and shows up in the cache only
when whole. Other downloads (``models.library``: torchvision's files) report through the same
:class:`DownloadReporter`.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from finetuner_protocol.backbones import FOLDER_FAMILY, HF_CLIP_FAMILY, ModelNotAvailableError
from finetuner_protocol.logs import Download

DOWNLOADS_VARIABLE = "FINETUNER_DOWNLOADS"  # 0 / false / no / off: never download, whatever else allows it
_OFF = ("0", "false", "no", "off")
_HF_TRUE = ("1", "on", "yes", "true")  # what huggingface_hub reads as true in HF_HUB_OFFLINE
DEFAULT_ENDPOINT = "https://huggingface.co"
DEFAULT_REVISION = "main"
STAGING = ".staging"  # in a model's cache folder: snapshots being linked, moved into snapshots/ when whole
Progress = Callable[[Download], None]  # told how far a download is (models.build, models.resolve)
# Files a download leaves out: other frameworks' weights and exports that no family here loads.
DOWNLOAD_IGNORE = ["*.h5", "*.msgpack", "*.ot", "*.tflite", "*.onnx", "onnx/*", "openvino/*", "*.mlmodel", "coreml/*"]


def hub_cache_dir() -> Path:
    """The Hugging Face hub cache as the environment names it now (huggingface_hub reads it once, at import)."""
    for variable in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if value := os.environ.get(variable, "").strip():
            return Path(value).expanduser()
    home = os.environ.get("HF_HOME", "").strip()
    if not home:
        home = str(Path(os.environ.get("XDG_CACHE_HOME", "").strip() or "~/.cache") / "huggingface")
    return Path(home).expanduser() / "hub"


def downloads_allowed(setting: bool | None = None) -> bool:
    """Whether the Hub may be asked: not when ``setting`` is False, ``HF_HUB_OFFLINE`` (or ``TRANSFORMERS_OFFLINE``,
    which huggingface_hub reads the same way) is set or ``$FINETUNER_DOWNLOADS`` is off; otherwise allowed."""
    if setting is False:
        return False
    if any(os.environ.get(name, "").strip().lower() in _HF_TRUE for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")):
        return False
    return os.environ.get(DOWNLOADS_VARIABLE, "").strip().lower() not in _OFF


def is_hub_id(name: str) -> bool:
    """``name`` has the form of a Hugging Face model id (``org/name`` or ``name``) and is not a path."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    if not name or name.startswith(("/", ".", "~")) or "\\" in name or name.count("/") > 1:
        return False
    try:
        validate_repo_id(name)
    except HFValidationError:
        return False
    return True


def cached_snapshot(model_id: str) -> Path | None:
    """The folder of ``model_id``'s snapshot in the Hugging Face cache (its ``main``), through huggingface_hub's
    lookup with the cache the environment names now; None when the cache does not hold it (or holds only files
    of it, without the ``config.json`` / ``modules.json`` that make it a model)."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        path = Path(snapshot_download(model_id, cache_dir=hub_cache_dir(), local_files_only=True))
    except (LocalEntryNotFoundError, FileNotFoundError):
        return None
    if not any((path / marker).is_file() for marker in ("config.json", "modules.json", "open_clip_config.json")):
        return None
    return path


def cached_file(model_id: str, filenames: Sequence[str]) -> Path | None:
    """The first of ``filenames`` (alternatives, e.g. safetensors before a pickle) that ``model_id``'s ``main``
    holds in the Hugging Face cache, through huggingface_hub's lookup; None when it holds none of them."""
    from huggingface_hub import try_to_load_from_cache

    for filename in filenames:
        found = try_to_load_from_cache(model_id, filename, cache_dir=hub_cache_dir())
        if isinstance(found, str):
            return Path(found)
    return None


def _cached(model_id: str, files: Sequence[Sequence[str]] | None) -> Path | None:
    """The snapshot folder when the cache holds what a download of ``model_id`` (``files``: see :func:`download`)
    would bring; else None."""
    if files is None:
        return cached_snapshot(model_id)
    found = [cached_file(model_id, names) for names in files]
    if not found or any(path is None for path in found):
        return None
    return next(folder for folder in found[0].parents if folder.parent.name == "snapshots")


def snapshot_family(model_id: str, folder: Path) -> str:
    """The family that builds the Hugging Face folder ``folder`` (:func:`files_family` of its files)."""
    try:
        config = json.loads((folder / "config.json").read_text("utf-8"))
    except (ValueError, OSError):
        config = {}
    files = {path.name for path in folder.iterdir()} if folder.is_dir() else set()
    return files_family(files, config if isinstance(config, dict) else {})


def files_family(files: set[str], config: dict) -> str:
    """The family of a Hugging Face repository from its top-level file names and its ``config.json``: open_clip
    (``open_clip_config.json``), transformers CLIP (``model_type`` clip), else the text family (a
    sentence-transformers folder, or any encoder AutoModel loads, mean-pooled)."""
    if "open_clip_config.json" in files:
        return "open_clip"
    if config.get("model_type") == "clip":
        return HF_CLIP_FAMILY
    return FOLDER_FAMILY


@contextmanager
def download_lock(path: Path, model: str, progress: Progress | None) -> Iterator[None]:
    """Hold the file lock ``path`` (created with its folder) for one download of ``model``: a process that finds it
    held reports itself ``waiting`` to ``progress`` and waits for it."""
    from filelock import FileLock, Timeout

    path.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(path)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        if progress is not None:
            progress(Download(model=model, waiting=True))
        lock.acquire()
    try:
        yield
    finally:
        lock.release()


def hub_endpoint() -> str:
    """The Hub's address as the environment names it now (``$HF_ENDPOINT``; huggingface_hub reads it once, at
    import)."""
    return os.environ.get("HF_ENDPOINT", "").strip().rstrip("/") or DEFAULT_ENDPOINT


class DownloadReporter:
    """Counts the bytes of one model's download and reports them to ``progress`` as :class:`Download` records: at
    the start, about every ``interval_s`` seconds, and once at the end (:meth:`finish`). ``done``: the bytes
    already here (files downloaded before, parts of a download that resumes)."""

    def __init__(self, model: str, total: int, progress: Progress | None, done: int = 0, interval_s: float = 1.0):
        self.model, self.total, self.progress, self.interval_s = model, total, progress, interval_s
        self.done = self._start_done = done
        self.file = ""
        self._began = time.monotonic()
        self._report(self._began)

    def add(self, n: int) -> None:
        """``n`` more bytes arrived (negative: bytes thrown away)."""
        self.done += n
        if (now := time.monotonic()) - self._last >= self.interval_s:
            self._report(now)

    def finish(self) -> None:
        self.done = self.total
        self._report(time.monotonic())

    def _report(self, now: float) -> None:
        self._last = now
        if self.progress is None:
            return
        elapsed = now - self._began
        rate = (self.done - self._start_done) / elapsed if elapsed > 0 else 0.0
        self.progress(
            Download(
                model=self.model,
                file=self.file,
                done_bytes=max(0, min(self.done, self.total)),
                total_bytes=self.total,
                rate_bps=max(0.0, rate),
                elapsed_s=elapsed,
            )
        )


class _Bar:
    """What huggingface_hub's ``http_get`` drives as its progress bar (a tqdm class), counted by a reporter."""

    def __init__(self, reporter: DownloadReporter, **kwargs):
        self.reporter = reporter

    def __enter__(self) -> _Bar:
        return self

    def __exit__(self, *exc_info) -> None:
        pass

    def update(self, n: float | None = 1) -> None:
        self.reporter.add(int(n or 0))

    def close(self) -> None:
        pass


@dataclass(frozen=True)
class _HubFile:
    path: str
    etag: str  # the blob's name in the cache: the LFS sha256, else the git blob hash
    size: int
    lfs: bool


def download(
    model_id: str,
    name: str | None = None,
    progress: Progress | None = None,
    files: Sequence[Sequence[str]] | None = None,
) -> Path:
    """Download ``model_id``'s snapshot (its ``main``) from the Hub (:func:`hub_endpoint`) into the Hugging Face
    cache; its folder there. ``progress`` is given :class:`Download` records as it goes (about once a second).
    ``files``: only these files of the repo, each given as alternatives, the first of them the repo holds
    (``[("model.safetensors", "pytorch_model.bin"), ("config.json",)]``; a repo holding none of one fails the
    download); None: every file but :data:`DOWNLOAD_IGNORE`.

    One copy: a lock per model under the cache, so that a second process (or thread) asking for the same model
    waits (reported as ``waiting``) and then finds it cached. Resumable: each file arrives as
    ``blobs/<etag>.incomplete`` and a later download asks for the rest only (HTTP Range). Atomic as the cache is
    read: the snapshot folder is linked in a staging folder and moved into place, and ``refs/main`` is written
    last, so that an interrupted download, even a killed one, leaves nothing :func:`cached_snapshot` takes for a
    model. A failure raises :class:`ModelNotAvailableError`, one line with the reason (``name``: the name the user
    asked for)."""
    from huggingface_hub.file_download import repo_folder_name

    cache, endpoint = hub_cache_dir(), hub_endpoint()
    repo = cache / repo_folder_name(repo_id=model_id, repo_type="model")
    lock_path = cache / ".locks" / repo.name / "finetuner-snapshot.lock"
    try:
        with download_lock(lock_path, model_id, progress):
            return _cached(model_id, files) or _download_snapshot(model_id, repo, endpoint, progress, files)
    except Exception as exc:  # noqa: BLE001 - any failure of the download is the reason the model is not there
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise ModelNotAvailableError(
            f"model {name or model_id!r}: the download from the Hugging Face Hub ({endpoint}) failed: {reason}"
        ) from exc


def _download_snapshot(
    model_id: str, repo: Path, endpoint: str, progress: Progress | None, only: Sequence[Sequence[str]] | None
) -> Path:
    """Download what ``model_id``'s snapshot (or the files ``only`` names) lacks into ``repo`` (its folder in the
    cache; the lock is held)."""
    from huggingface_hub import HfApi
    from huggingface_hub.utils import filter_repo_objects

    info = HfApi(endpoint=endpoint).model_info(model_id, files_metadata=True)
    if not info.sha or info.siblings is None:
        raise ValueError(f"the Hub's answer names no commit or files for {model_id!r}")
    if only is None:
        chosen = list(filter_repo_objects(info.siblings, ignore_patterns=DOWNLOAD_IGNORE, key=lambda s: s.rfilename))
    else:
        held = {s.rfilename: s for s in info.siblings}
        chosen = []
        for names in only:
            if (found := next((held[n] for n in names if n in held), None)) is None:
                raise ValueError(f"the repo {model_id} holds none of {', '.join(names)}")
            chosen.append(found)
    files = [
        _HubFile(
            s.rfilename,
            s.lfs.sha256 if s.lfs else str(s.blob_id),
            s.lfs.size if s.lfs else int(s.size or 0),
            bool(s.lfs),
        )
        for s in chosen
    ]
    blobs = repo / "blobs"
    blobs.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(repo / STAGING, ignore_errors=True)  # left by a download that was killed (the lock is ours)

    def here(file: _HubFile) -> int:
        blob, partial = blobs / file.etag, blobs / f"{file.etag}.incomplete"
        if blob.is_file():
            return file.size
        return min(partial.stat().st_size, file.size) if partial.is_file() else 0

    reporter = DownloadReporter(model_id, sum(f.size for f in files), progress, sum(here(f) for f in files))
    for file in files:
        if not (blobs / file.etag).is_file():
            reporter.file = file.path
            _download_file(model_id, info.sha, file, blobs, endpoint, reporter)
        reporter.done = sum(here(f) for f in files)
    snapshot = _link_snapshot(repo, info.sha, files)
    _write_atomically(repo / "refs" / DEFAULT_REVISION, info.sha, repo / STAGING)  # the model is there now
    shutil.rmtree(repo / STAGING, ignore_errors=True)
    reporter.finish()
    return snapshot


def _download_file(
    model_id: str, commit: str, file: _HubFile, blobs: Path, endpoint: str, reporter: DownloadReporter
) -> None:
    """``file`` into ``blobs/<etag>``, through ``<etag>.incomplete`` (resumed where it exists), checked against
    its hash."""
    from huggingface_hub import hf_hub_url
    from huggingface_hub.file_download import http_get
    from huggingface_hub.utils import build_hf_headers

    blob, partial = blobs / file.etag, blobs / f"{file.etag}.incomplete"
    if partial.is_file() and partial.stat().st_size > file.size:
        partial.unlink()
    headers = build_hf_headers() | {"Accept-Encoding": "identity"}  # byte ranges of the file itself
    url = hf_hub_url(model_id, file.path, revision=commit, endpoint=endpoint)
    try:
        with partial.open("ab") as out:
            resume = out.tell()
            if resume < file.size:  # else it is whole: an earlier download stopped before the move below
                http_get(
                    url,
                    out,
                    resume_size=resume,
                    headers=headers,
                    expected_size=file.size,
                    displayed_filename=file.path,
                    tqdm_class=tqdm_class(reporter),
                )
    except Exception as exc:
        raise OSError(f"{file.path}: {' '.join(str(exc).split()) or type(exc).__name__}") from exc
    if _file_hash(partial, file.lfs) != file.etag:
        partial.unlink()
        raise OSError(f"{file.path}: the bytes downloaded do not match the Hub's hash of the file")
    os.replace(partial, blob)


def tqdm_class(reporter: DownloadReporter) -> Callable[..., _Bar]:
    """A tqdm class for huggingface_hub's downloads that counts into ``reporter``."""
    return functools.partial(_Bar, reporter)


def _file_hash(path: Path, lfs: bool) -> str:
    """The hash the Hub names a file by: sha256 for an LFS file, else its git blob hash."""
    digest = hashlib.sha256() if lfs else hashlib.sha1(b"blob %d\0" % path.stat().st_size)
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _link_snapshot(repo: Path, commit: str, files: list[_HubFile]) -> Path:
    """``snapshots/<commit>`` linking each file to its blob, built in a staging folder and moved into place."""
    staging = repo / STAGING / uuid.uuid4().hex
    for file in files:
        link = staging / file.path
        link.parent.mkdir(parents=True, exist_ok=True)
        blob = repo / "blobs" / file.etag
        try:
            link.symlink_to(os.path.relpath(blob, link.parent))
        except OSError:  # no symbolic links here (e.g. Windows without them): a copy, as huggingface_hub does
            shutil.copyfile(blob, link)
    snapshot = repo / "snapshots" / commit
    snapshot.parent.mkdir(parents=True, exist_ok=True)
    try:
        staging.rename(snapshot)
    except OSError:  # the folder is there already (e.g. written in part by another tool): complete it in place
        for file in files:
            target = snapshot / file.path
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(staging / file.path, target)
    return snapshot


def _write_atomically(path: Path, text: str, staging: Path) -> None:
    """``text`` as ``path``'s content, written in ``staging`` (on the same file system) and moved into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    staging.mkdir(parents=True, exist_ok=True)
    temporary = staging / f"{path.name}.{uuid.uuid4().hex}"
    temporary.write_text(text)
    os.replace(temporary, path)
