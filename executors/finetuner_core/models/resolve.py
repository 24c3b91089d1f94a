"""Where a model's weights come from: a name becomes a resolved source, the local copies first.

The order: **packaged** (the packaged MiniLM and EfficientNet-Lite0, and the two-tower model built from both) ->
the workspace's model **store** (``storage.models``, where the caller passes it) -> a **folder** on this machine
(where a request names it, only under the operator's model roots: ``backbones.check_model_source``) -> the
Hugging Face **cache** (``$HF_HUB_CACHE``, else ``$HF_HOME/hub``, read when called, through huggingface_hub's own
lookup) -> the **hub**, only when downloads are allowed (:func:`downloads_allowed`: ``HF_HUB_OFFLINE`` unset,
``$FINETUNER_DOWNLOADS`` not off, and no setting forbids them). The names of the image and CLIP libraries
(``timm/...``, torchvision models and their weights enums, ``openclip/...``, ``hf-hub:...``) resolve to their
library's pretrained weights in its own cache, or a download (``models.library``); a ``weights`` file or
``pretrained=False`` (and the MLP) is kind ``library``.

A Finetuner model name (``bert-base-en``, ...) resolves as the id it stands for (``backbones.FINETUNER_ALIASES``).
The result records the kind, the local path and the revision: the cache's commit hash, or the sha256 digest of the
packaged or local files.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Protocol

from finetuner_core.models.hub import (
    Progress,
    cached_snapshot,
    download,
    downloads_allowed,
    is_hub_id,
    snapshot_family,
)
from finetuner_core.models.library import download_library, library_family, resolve_library
from finetuner_core.models.source import (
    CACHE,
    FOLDER,
    HUB,
    LIBRARY,  # noqa: F401 - kinds and digests are read from here too
    PACKAGED,
    SOURCE_KINDS,  # noqa: F401
    STORE,
    ResolvedModel,
    file_digest,
    folder_digest,
)
from finetuner_protocol.backbones import (
    BACKBONES,
    DEFAULT_CLIP_MODEL,
    DEFAULT_IMAGE_MODEL,
    DEFAULT_TEXT_MODEL,
    ModelNotAvailableError,
    backbone_family,
    canonical,
    check_model_source,
    efficientnet_lite0_path,
    looks_like_path,
    minilm_path,
    unavailable_advice,
)
from finetuner_protocol.model_options import ModelOptions


class StoredRecord(Protocol):
    """What the resolver reads of a stored model's record (``storage.models.StoredModel``)."""

    family: str
    revision: str


class StoredModels(Protocol):
    """The workspace's model store (``storage.models.ModelStore``): a name's folder and record, or None."""

    def lookup(self, name: str) -> tuple[Path, StoredRecord] | None: ...


def resolve_model(
    name: str,
    options: ModelOptions | dict | None = None,
    roots: list[Path] | None = None,
    allow_download: bool | None = None,
    with_revision: bool = True,
    store: StoredModels | None = None,
) -> ResolvedModel:
    """Where ``name``'s weights come from, without downloading anything.

    ``roots``: where a request names a folder, the operator's model roots it must lie under (None: local use, any
    folder); ``allow_download``: the trainer's setting (None: the environment decides, :func:`downloads_allowed`);
    ``with_revision=False`` skips the digests; ``store``: the workspace's model store, asked right after the
    packaged models (kind ``store``: the stored folder, the revision its record keeps). Raises
    :class:`ModelNotAvailableError` (one line, saying what to do) when the model is nowhere here and may not be
    downloaded."""
    options = ModelOptions.model_validate(options or {})
    model_id = canonical(name)

    def resolved(kind: str, family: str, path: Path | None = None, revision: str | None = None) -> ResolvedModel:
        return ResolvedModel(name, model_id, kind, family, path, revision if with_revision else None)

    if model_id in (DEFAULT_TEXT_MODEL, DEFAULT_IMAGE_MODEL, DEFAULT_CLIP_MODEL):
        return _packaged(model_id, resolved, with_revision)
    stored = store.lookup(model_id) if store is not None else None
    if stored is not None:
        return resolved(STORE, stored[1].family, stored[0], stored[1].revision)
    folder = Path(model_id).expanduser()
    library = resolve_library(model_id, options, allow_download, with_revision, name)  # timm, torchvision, ...
    if library is not None:
        return library
    if folder.is_dir() and (roots is None or looks_like_path(model_id)):  # a request names folders by path
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


def fetch(resolved: ResolvedModel, progress: Progress | None = None) -> ResolvedModel:
    """``resolved`` with its weights on this machine: a ``hub`` model is downloaded into the Hugging Face cache
    (then it is the cache's, with its commit hash), a library's weights into that library's cache; ``progress`` is
    told how far the download is (``Download`` log records, see ``hub.download``); anything else is returned as it
    is."""
    if resolved.kind != HUB or resolved.path is not None:
        return resolved
    if library_family(resolved.id) is not None:  # timm, torchvision, open_clip weights: each library's own files
        return download_library(resolved, progress)
    path = download(resolved.id, resolved.name, progress)
    return ResolvedModel(resolved.name, resolved.id, HUB, snapshot_family(resolved.id, path), path, path.name)


def local_path(name: str, progress: Progress | None = None) -> Path:
    """The local folder or file of ``name``'s weights (downloaded first where that is allowed and needed)."""
    source = fetch(resolve_model(name, with_revision=False), progress)
    if source.path is None:
        raise ModelNotAvailableError(f"model {name!r} has no local weights ({source.kind})")
    return source.path
