"""A resolved model source: the name asked for, the kind of place its weights come from, the local path and the
revision (the Hugging Face commit hash, or the sha256 digest of local files); and those digests."""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from finetuner_core.models.licence import model_licence

PACKAGED, STORE, FOLDER, CACHE, HUB, LIBRARY = "packaged", "store", "folder", "cache", "hub", "library"
SOURCE_KINDS = (PACKAGED, STORE, FOLDER, CACHE, HUB, LIBRARY)


@dataclass(frozen=True)
class ResolvedModel:
    """Where the weights of ``id`` (the name asked for, aliases followed) come from.

    ``kind``: one of :data:`SOURCE_KINDS`; ``path``: the local folder or file (None: nothing local yet, a download
    is needed, or a random init); ``revision``: the cache's commit hash or ``sha256:<hex>`` of the local files
    (None when not computed, or nothing to digest); ``family``: the family that builds it."""

    name: str
    id: str
    kind: str
    family: str
    path: Path | None = None
    revision: str | None = None

    def record(self) -> dict[str, Any]:
        """What a saved model's ``finetuner.json`` records about its source (the server's paths stay here), with
        the licence its metadata declares (``models.licence``), when it does."""
        record = {key: value for key, value in asdict(self).items() if key != "path"}
        licence = model_licence(self.path)
        return {**record, "license": licence} if licence else record


_DIGESTS: dict[tuple[str, int, int], str] = {}


def file_digest(path: Path) -> str:
    """``sha256:<hex>`` of a file's bytes (kept for this process while its size and mtime stay the same)."""
    path = Path(path).resolve()
    stat = path.stat()
    key = (str(path), stat.st_size, stat.st_mtime_ns)
    if key not in _DIGESTS:
        digest = hashlib.sha256()
        with path.open("rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
        _DIGESTS[key] = "sha256:" + digest.hexdigest()
    return _DIGESTS[key]


def folder_digest(folder: Path) -> str:
    """``sha256:<hex>`` over a folder's files: each file's path relative to it and its digest, in path order."""
    folder = Path(folder)
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    lines = "".join(f"{p.relative_to(folder).as_posix()}\0{file_digest(p)}\n" for p in files)
    return "sha256:" + hashlib.sha256(lines.encode("utf-8")).hexdigest()
