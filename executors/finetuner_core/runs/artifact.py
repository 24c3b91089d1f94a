"""A run's model artifact as a list of files with sizes and checksums, read back in bounded chunks."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

CHUNK_BYTES = 4 * 1024 * 1024
MANIFEST = "manifest.json"


def write_manifest(artifact_dir: Path) -> list[dict[str, Any]]:
    """Record every file of ``artifact_dir`` (relative path, size, sha256) in its manifest."""
    files = [
        {
            "path": path.relative_to(artifact_dir).as_posix(),
            "size": path.stat().st_size,
            "sha256": sha256(path),
        }
        for path in sorted(artifact_dir.rglob("*"))
        if path.is_file() and path.name != MANIFEST
    ]
    (artifact_dir / MANIFEST).write_text(json.dumps(files, indent=2), encoding="utf-8")
    return files


def read_manifest(artifact_dir: Path) -> list[dict[str, Any]]:
    path = artifact_dir / MANIFEST
    if not path.exists():
        raise FileNotFoundError("the run has no artifact yet (it is not FINISHED)")
    return json.loads(path.read_text("utf-8"))


def read_chunk(artifact_dir: Path, relative: str, offset: int, length: int = CHUNK_BYTES) -> bytes:
    """Bytes ``[offset, offset + length)`` of a file listed in the manifest (no other path is served)."""
    if relative not in {entry["path"] for entry in read_manifest(artifact_dir)}:
        raise FileNotFoundError(f"{relative!r} is not a file of this artifact")
    if offset < 0 or not 0 < length <= CHUNK_BYTES:
        raise ValueError(f"offset must be >= 0 and length in (0, {CHUNK_BYTES}]")
    with open(artifact_dir / relative, "rb") as file:
        file.seek(offset)
        return file.read(length)


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
