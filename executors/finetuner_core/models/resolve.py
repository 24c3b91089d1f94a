"""Where a model's weights come from: a name becomes a resolved source, the local copies first.

The order: **packaged** (the packaged MiniLM and EfficientNet-Lite0, and the two-tower model built from both) ->
a **folder** on this machine (where a request names it, only under the operator's model roots:
``backbones.check_model_source``) -> the Hugging Face **cache** (``$HF_HUB_CACHE``, else ``$HF_HOME/hub``, read
when called, through huggingface_hub's own lookup) -> the **hub**, only when downloads are allowed
(:func:`downloads_allowed`: ``HF_HUB_OFFLINE`` unset, ``$FINETUNER_DOWNLOADS`` not off, and no setting forbids
them). The registered names of the other libraries (torchvision, timm, open_clip, the MLP) are built by their
family from a weights file or at random init (kind ``library``), as before.

A Finetuner model name (``bert-base-en``, ...) resolves as the id it stands for (``backbones.FINETUNER_ALIASES``).
The result records the kind, the local path and the revision: the cache's commit hash, or the sha256 digest of the
packaged or local files.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from finetuner_core.models.hub import (
    cached_snapshot,
    download,
    downloads_allowed,
    is_hub_id,
    snapshot_family,
)
from finetuner_protocol.backbones import (
    BACKBONES,
    DEFAULT_CLIP_MODEL,
    DEFAULT_IMAGE_MODEL,
    DEFAULT_TEXT_MODEL,
    ModelNotAvailableError,
    backbone_family,
    canonical,
    check_available,
    check_model_source,
    efficientnet_lite0_path,
    is_registered,
    minilm_path,
    unavailable_advice,
)
from finetuner_protocol.model_options import ModelOptions

PACKAGED, FOLDER, CACHE, HUB, LIBRARY = "packaged", "folder", "cache", "hub", "library"
SOURCE_KINDS = (PACKAGED, FOLDER, CACHE, HUB, LIBRARY)


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
        """What a saved model's ``finetuner.json`` records about its source (the server's paths stay here)."""
        return {key: value for key, value in asdict(self).items() if key != "path"}


def resolve_model(
    name: str,
    options: ModelOptions | dict | None = None,
    roots: list[Path] | None = None,
    allow_download: bool | None = None,
    with_revision: bool = True,
) -> ResolvedModel:
    """Where ``name``'s weights come from, without downloading anything.

    ``roots``: where a request names a folder, the operator's model roots it must lie under (None: local use, any
    folder); ``allow_download``: the trainer's setting (None: the environment decides, :func:`downloads_allowed`);
    ``with_revision=False`` skips the digests. Raises :class:`ModelNotAvailableError` (one line, saying what to do)
    when the model is nowhere here and may not be downloaded."""
    options = ModelOptions.model_validate(options or {})
    model_id = canonical(name)

    def resolved(kind: str, family: str, path: Path | None = None, revision: str | None = None) -> ResolvedModel:
        return ResolvedModel(name, model_id, kind, family, path, revision if with_revision else None)

    if model_id in (DEFAULT_TEXT_MODEL, DEFAULT_IMAGE_MODEL, DEFAULT_CLIP_MODEL):
        return _packaged(model_id, resolved, with_revision)
    folder = Path(model_id).expanduser()
    if is_registered(model_id):
        check_available(model_id, options.weights, options.pretrained)  # weights file, or pretrained=False
        weights = Path(options.weights) if options.weights is not None and options.pretrained else None
        digest = file_digest(weights) if weights is not None and with_revision else None
        return resolved(LIBRARY, backbone_family(model_id), weights, digest)
    if folder.is_dir():
        if roots is not None:
            check_model_source(model_id, None, roots)
        folder = folder.resolve()
        return resolved(FOLDER, backbone_family(str(folder)), folder, folder_digest(folder) if with_revision else None)
    if not is_hub_id(model_id):
        raise ModelNotAvailableError(unavailable_advice(name))
    snapshot = cached_snapshot(model_id)
    if snapshot is not None:
        return resolved(CACHE, snapshot_family(model_id, snapshot), snapshot, snapshot.name)
    if downloads_allowed(allow_download):
        return resolved(HUB, backbone_family(model_id))
    raise ModelNotAvailableError(unavailable_advice(name))


def _packaged(model_id: str, resolved, with_revision: bool) -> ResolvedModel:
    family = BACKBONES[model_id].family
    if model_id == DEFAULT_TEXT_MODEL:
        path = minilm_path()
        return resolved(PACKAGED, family, path, folder_digest(path) if with_revision else None)
    if model_id == DEFAULT_IMAGE_MODEL:
        path = efficientnet_lite0_path()
        return resolved(PACKAGED, family, path, file_digest(path) if with_revision else None)
    text, image = minilm_path(), efficientnet_lite0_path()  # the two-tower model: both packages
    revision = None
    if with_revision:
        revision = "sha256:" + hashlib.sha256(f"{folder_digest(text)}\n{file_digest(image)}".encode()).hexdigest()
    return resolved(PACKAGED, family, None, revision)


def fetch(resolved: ResolvedModel) -> ResolvedModel:
    """``resolved`` with its weights on this machine: a ``hub`` model is downloaded into the Hugging Face cache
    (then it is the cache's, with its commit hash); anything else is returned as it is."""
    if resolved.kind != HUB or resolved.path is not None:
        return resolved
    path = download(resolved.id, resolved.name)
    return ResolvedModel(resolved.name, resolved.id, HUB, snapshot_family(resolved.id, path), path, path.name)


def local_path(name: str) -> Path:
    """The local folder or file of ``name``'s weights (downloaded first where that is allowed and needed)."""
    source = fetch(resolve_model(name, with_revision=False))
    if source.path is None:
        raise ModelNotAvailableError(f"model {name!r} has no local weights ({source.kind})")
    return source.path


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
