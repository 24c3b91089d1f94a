"""Pretrained weights of the image and CLIP libraries, found where each library keeps them, and downloaded there
only where downloads are allowed. Each family's pretrained default is what its library calls pretrained.

- **timm**: ``timm/<architecture>`` (timm's default tag for it) or ``timm/<architecture>.<tag>``
  (``timm/resnet50.a1_in1k``): the tag's Hub repo (``timm/<architecture>.<tag>``: ``config.json`` +
  ``model.safetensors``) in the Hugging Face cache.
- **torchvision**: a classification model of ``torchvision.models`` (``resnet50``: its weights enum's ``DEFAULT``)
  or ``<model>::<ENUM>`` (``resnet50::IMAGENET1K_V2``): the enum's file in the torch hub cache
  (``$TORCH_HOME/hub/checkpoints``), checked against the sha256 prefix in its name where it has one. It is
  downloaded from the enum's URL, or from a mirror where the operator sets ``$FINETUNER_TORCHVISION_MIRROR`` (a
  base URL that replaces ``https://download.pytorch.org/models/``: torch has no setting of its own for it).
- **open_clip**: ``openclip/<architecture>`` (tag ``openai`` where the architecture has it, else its first tag),
  ``openclip/<architecture>::<tag>`` or ``<architecture>::<tag>``: the tag's file on the Hub (open_clip's own
  ``hf_hub`` entry) in the Hugging Face cache; ``hf-hub:<org>/<name>``: a repo holding ``open_clip_config.json``
  and its weights. A Hugging Face text tower (``hf_model_name``) comes from the cache as well.

:func:`resolve_library` says where a name's weights are (kind ``cache``), that they need a download (``hub``), or
refuses in one line; :func:`download_library` downloads them as any download is (``models.hub``): progress as
``Download`` log records, resumed where an earlier try stopped, once however many processes ask, and nothing
half-written where the library reads its cache. Hub files go through ``hub.download``.
``pretrained=False`` is a random init and ``weights=`` a local file (kind ``library``). Weights load from
safetensors or with ``weights_only=True``.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from finetuner_core.models.hub import (
    DownloadReporter,
    Progress,
    cached_file,
    cached_snapshot,
    download,
    download_lock,
    downloads_allowed,
)
from finetuner_core.models.source import CACHE, HUB, LIBRARY, ResolvedModel, file_digest
from finetuner_protocol.backbones import BACKBONES, ModelNotAvailableError, backbone_family
from finetuner_protocol.model_options import ModelOptions

TIMM, TORCHVISION, OPEN_CLIP = "timm", "torchvision", "open_clip"
LIBRARY_FAMILIES = (TIMM, TORCHVISION, OPEN_CLIP)
TAG_SEPARATOR = "::"
HF_HUB_PREFIX = "hf-hub:"
OPEN_CLIP_CONFIG = "open_clip_config.json"
_TIMM_FILES = ("model.safetensors", "pytorch_model.bin")
_OPEN_CLIP_FILES = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")
_HASH_PREFIX = re.compile(r"-([a-f0-9]+)\.")  # torch.hub's HASH_REGEX: the sha256 prefix in a file's name
TORCHVISION_MIRROR_VARIABLE = "FINETUNER_TORCHVISION_MIRROR"
TORCHVISION_BASE_URL = "https://download.pytorch.org/models/"
INCOMPLETE = ".incomplete"  # in the torch hub's checkpoints folder: files on their way, with their locks


@dataclass(frozen=True)
class HubFile:
    """A file of a Hugging Face repo: the first of ``filenames`` the repo holds."""

    repo: str
    filenames: tuple[str, ...]


@dataclass(frozen=True)
class LibraryWeights:
    """Where a library name's pretrained weights live: Hub files (``files``; the first is the weights, the rest
    what building needs besides) and whole Hub repos (``repos``: a text tower's folder), or a torchvision
    ``url`` kept as ``file`` in the torch hub cache. ``what`` names them for a refusal."""

    family: str
    what: str
    files: tuple[HubFile, ...] = ()
    repos: tuple[str, ...] = ()
    url: str | None = None
    file: Path | None = None

    def local(self) -> tuple[Path, str] | None:
        """The local weights (a file, or an ``hf-hub:`` repo's folder) and their revision; None when something
        is not here."""
        if self.file is not None:
            return (self.file, torchvision_digest(self.file)) if self.file.is_file() else None
        if any(cached_snapshot(repo) is None for repo in self.repos):
            return None
        found = [_cached_file(hub_file) for hub_file in self.files]
        if any(path is None for path in found):
            return None
        weights = found[0]
        if self.files[0].filenames == (OPEN_CLIP_CONFIG,):  # an hf-hub: repo: its folder, with its weights
            return weights.parent, weights.parent.name
        return weights, weights.parent.name


def library_family(model_id: str) -> str | None:
    """The family of a library name form (after aliases): ``timm``, ``torchvision``, ``open_clip``, or a
    registered backbone's; None when ``model_id`` is none of these."""
    if model_id in BACKBONES:
        return BACKBONES[model_id].family
    if model_id.startswith(("timm/", "openclip/", HF_HUB_PREFIX)) or TAG_SEPARATOR in model_id:
        if Path(model_id).expanduser().exists():
            return None
        return backbone_family(model_id)
    if _is_torchvision_model(model_id):
        return TORCHVISION
    return None


def resolve_library(
    model_id: str,
    options: ModelOptions | dict | None = None,
    allow_download: bool | None = None,
    with_revision: bool = True,
    name: str | None = None,
) -> ResolvedModel | None:
    """Where the library name ``model_id``'s weights come from (``name``: the name asked for); None when it is
    not a library name. Kind ``library`` for a random init or a ``weights`` file, ``cache`` when the library's
    cache holds them, ``hub`` when a download is needed and allowed; otherwise :class:`ModelNotAvailableError`
    saying what to do."""
    family = library_family(model_id)
    if family is None:
        return None
    options = ModelOptions.model_validate(options or {})

    def resolved(kind: str, path: Path | None = None, revision: str | None = None) -> ResolvedModel:
        return ResolvedModel(name or model_id, model_id, kind, family, path, revision if with_revision else None)

    hub_repo = model_id.startswith(HF_HUB_PREFIX)  # its config is in the repo: needed even for a random init
    if options.pretrained and options.weights is not None:
        weights = Path(options.weights)
        if not weights.is_file():
            raise ModelNotAvailableError(f"weights file {options.weights!r} not found")
        if not hub_repo:
            return resolved(LIBRARY, weights, file_digest(weights) if with_revision else None)
    if family not in LIBRARY_FAMILIES or (not options.pretrained and not hub_repo):
        return resolved(LIBRARY)
    weights = library_weights(model_id)
    local = weights.local()
    if local is not None:
        return resolved(CACHE, *local)
    if downloads_allowed(allow_download):
        return resolved(HUB)
    raise ModelNotAvailableError(library_advice(name or model_id, weights))


def library_advice(name: str, weights: LibraryWeights) -> str:
    """The one line that says what to do about library weights that are not here and may not be downloaded."""
    if weights.file is not None:
        where = f"the torch hub cache ({weights.file.parent})"
        pull = f"download {weights.url} into that folder where downloads are allowed"
    else:
        where = "the Hugging Face cache"
        repos = sorted({f.repo for f in weights.files} | set(weights.repos))
        pull = "pull it where downloads are allowed (" + "; ".join(f"hf download {repo}" for repo in repos) + ")"
    return (
        f"model {name!r} is not available offline: its pretrained weights ({weights.what}) are not in {where}, "
        f"and nothing may be downloaded here; allow downloads (unset HF_HUB_OFFLINE), {pull}, pass "
        "model_options={'weights': '/path/to/checkpoint'} (under the operator's model roots), or "
        "{'pretrained': False} for random init"
    )


def download_library(resolved: ResolvedModel, progress: Progress | None = None) -> ResolvedModel:
    """``resolved`` (kind ``hub``) with its weights downloaded into its library's cache; then it has its local
    path and revision. ``progress`` is given ``Download`` log records as it goes. A failure raises
    :class:`ModelNotAvailableError` with the reason."""
    weights = library_weights(resolved.id)
    try:
        if weights.url is not None and weights.file is not None:
            _download_url(weights.url, weights.file, resolved.id, progress)
        for repo in dict.fromkeys(hub_file.repo for hub_file in weights.files):
            files = [hub_file.filenames for hub_file in weights.files if hub_file.repo == repo]
            download(repo, resolved.name, progress, files=files)
        weights = library_weights(resolved.id)  # an hf-hub: repo's config, here now, names its text tower
        for repo in weights.repos:
            download(repo, resolved.name, progress)
    except ModelNotAvailableError:
        raise
    except Exception as exc:  # noqa: BLE001 - any failure of the download is the reason the model is not there
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise ModelNotAvailableError(
            f"model {resolved.name!r}: the download of {weights.what} failed: {reason}"
        ) from exc
    local = weights.local()
    if local is None:
        raise ModelNotAvailableError(f"model {resolved.name!r}: {weights.what} is incomplete after its download")
    return ResolvedModel(resolved.name, resolved.id, HUB, resolved.family, *local)


# --- what each library name needs ---------------------------------------------------------------------------


def library_weights(model_id: str) -> LibraryWeights:
    """The pretrained weights the library name ``model_id`` stands for (no lookup of the caches); an unknown
    architecture or tag raises :class:`ModelNotAvailableError` naming the known ones."""
    family = library_family(model_id)
    if family == TIMM:
        return _timm_weights(model_id)
    if family == TORCHVISION:
        return _torchvision_weights(model_id)
    if family == OPEN_CLIP:
        return _open_clip_weights(model_id)
    raise ModelNotAvailableError(f"model {model_id!r} has no library weights")


def timm_name(model_id: str) -> str:
    """``timm/<architecture>[.<tag>]`` -> timm's own name (with the tag where one is given)."""
    return model_id.removeprefix("timm/")


def _timm_weights(model_id: str) -> LibraryWeights:
    import timm
    from timm.models import get_pretrained_cfg, split_model_name_tag

    architecture, tag = split_model_name_tag(timm_name(model_id))
    if not timm.is_model(architecture):
        raise ModelNotAvailableError(f"unknown timm architecture {architecture!r}; see timm.list_models()")
    try:
        cfg = get_pretrained_cfg(timm_name(model_id))
    except RuntimeError:
        cfg = None
    if cfg is None or not cfg.hf_hub_id:
        tags = ", ".join(timm.list_pretrained(f"{architecture}.*")) or "none"
        raise ModelNotAvailableError(
            f"timm has no pretrained weights {tag or 'default'!r} for {architecture} on the Hub (its tags: {tags})"
        )
    repo = cfg.hf_hub_id
    names = (cfg.hf_hub_filename,) if cfg.hf_hub_filename else _TIMM_FILES
    files = (HubFile(repo, names),) + (() if cfg.hf_hub_filename else (HubFile(repo, ("config.json",)),))
    return LibraryWeights(TIMM, f"Hugging Face repo {repo}", files)


def torchvision_name(model_id: str) -> tuple[str, str]:
    """``<model>[::<ENUM>]`` -> (model, enum name; ``DEFAULT`` when none is given)."""
    architecture, _, enum = model_id.partition(TAG_SEPARATOR)
    return architecture, enum or "DEFAULT"


def torchvision_enum(model_id: str):
    """The weights enum member ``model_id`` names (``resnet50::IMAGENET1K_V2``, or the enum's ``DEFAULT``)."""
    import torchvision

    architecture, enum = torchvision_name(model_id)
    if not _is_torchvision_model(architecture):
        raise ModelNotAvailableError(
            f"unknown torchvision model {architecture!r}; see torchvision.models.list_models(torchvision.models)"
        )
    weights = torchvision.models.get_model_weights(architecture)
    if enum not in weights.__members__:
        raise ModelNotAvailableError(
            f"torchvision {architecture} has no weights {enum!r}; its weights: {', '.join(weights.__members__)}"
        )
    return weights[enum]


def _torchvision_weights(model_id: str) -> LibraryWeights:
    import torch.hub

    member = torchvision_enum(model_id)
    file = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(member.url)
    return LibraryWeights(TORCHVISION, f"torchvision {member}: {file.name}", url=torchvision_url(member.url), file=file)


def torchvision_url(url: str) -> str:
    """Where a torchvision weights file is downloaded from: ``url``, or the same file under the operator's mirror
    (``$FINETUNER_TORCHVISION_MIRROR``)."""
    mirror = os.environ.get(TORCHVISION_MIRROR_VARIABLE, "").strip()
    if not mirror or not url.startswith(TORCHVISION_BASE_URL):
        return url
    return mirror.rstrip("/") + "/" + url.removeprefix(TORCHVISION_BASE_URL)


def torchvision_digest(path: Path) -> str:
    """``sha256:<hex>`` of a torchvision weights file, checked against the prefix in its name."""
    digest = file_digest(path)
    match = _HASH_PREFIX.search(path.name)
    if match and not digest.removeprefix("sha256:").startswith(match.group(1)):
        raise ModelNotAvailableError(
            f"weights file {path} is damaged: its sha256 does not start with {match.group(1)}; delete it"
        )
    return digest


def _is_torchvision_model(name: str) -> bool:
    if not re.fullmatch(r"[a-z0-9_]+", name):
        return False
    import torchvision

    return name in torchvision.models.list_models(module=torchvision.models)


def open_clip_name(model_id: str) -> tuple[str | None, str | None, str | None]:
    """(architecture, tag, ``hf-hub:`` repo) of an open_clip name; the tag is None where none is given."""
    if model_id.startswith(HF_HUB_PREFIX):
        return None, None, model_id.removeprefix(HF_HUB_PREFIX)
    architecture, _, tag = model_id.removeprefix("openclip/").partition(TAG_SEPARATOR)
    return architecture, tag or None, None


def open_clip_tag(architecture: str, tag: str | None) -> str:
    """The pretrained tag: the one given, else ``openai`` where the architecture has it, else its first."""
    import open_clip

    if architecture not in open_clip.list_models():
        raise ModelNotAvailableError(f"unknown open_clip architecture {architecture!r}; see open_clip.list_models()")
    tags = open_clip.list_pretrained_tags_by_model(architecture)
    if tag is None:
        if not tags:
            raise ModelNotAvailableError(f"open_clip has no pretrained weights for {architecture}")
        return "openai" if "openai" in tags else tags[0]
    if not open_clip.pretrained.is_pretrained_cfg(architecture, tag):
        raise ModelNotAvailableError(
            f"open_clip {architecture} has no pretrained tag {tag!r}; its tags: {', '.join(tags) or 'none'}"
        )
    return tag


def open_clip_text_repos(model_cfg: dict) -> tuple[str, ...]:
    """The Hugging Face repos an open_clip config's text tower is built from (model and tokenizer)."""
    text = model_cfg.get("text_cfg", {})
    return tuple(dict.fromkeys(n for n in (text.get("hf_model_name"), text.get("hf_tokenizer_name")) if n))


def _open_clip_weights(model_id: str) -> LibraryWeights:
    import open_clip

    architecture, tag, repo = open_clip_name(model_id)
    if repo is not None:
        config = HubFile(repo, (OPEN_CLIP_CONFIG,))
        found = _cached_file(config)
        repos = open_clip_text_repos(json.loads(found.read_text("utf-8")).get("model_cfg", {})) if found else ()
        files = (config, HubFile(repo, _OPEN_CLIP_FILES))
        return LibraryWeights(OPEN_CLIP, f"Hugging Face repo {repo}", files, repos)
    tag = open_clip_tag(architecture, tag)
    cfg = open_clip.get_pretrained_cfg(architecture, tag)
    if not cfg.get("hf_hub"):
        raise ModelNotAvailableError(
            f"open_clip {architecture}::{tag} is published only at {cfg.get('url')}: download it where downloads "
            "are allowed and pass model_options={'weights': '/path/to/checkpoint'} (under the operator's model roots)"
        )
    hub_repo, filename = os.path.split(cfg["hf_hub"])  # "org/name/" (the default file) or "org/name/file"
    filename = filename or _OPEN_CLIP_FILES[1]
    names = (filename,)
    if filename == _OPEN_CLIP_FILES[1]:  # open_clip's safetensors alternative comes first, as open_clip reads them
        names = _OPEN_CLIP_FILES
    elif filename.endswith((".bin", ".pth")):
        names = (filename[:-4] + ".safetensors", filename)
    repos = open_clip_text_repos(open_clip.get_model_config(architecture) or {})
    what = f"open_clip {architecture}::{tag}, Hugging Face repo {hub_repo}"
    return LibraryWeights(OPEN_CLIP, what, (HubFile(hub_repo, names),), repos)


# --- the caches and downloads ---------------------------------------------------------------------------------


def _cached_file(hub_file: HubFile) -> Path | None:
    return cached_file(hub_file.repo, hub_file.filenames)


def _download_url(url: str, target: Path, model: str, progress: Progress | None) -> None:
    """``url`` into ``target``, through ``.incomplete/<name>.partial`` next to it (resumed where an earlier try
    stopped), checked against the sha256 prefix in its name, moved into place; one download at a time per file (a
    lock next to the partial file: a second process waits, reported as ``waiting``, then finds the file)."""
    incomplete = target.parent / INCOMPLETE
    with download_lock(incomplete / f"{target.name}.lock", model, progress):
        try:
            if not target.is_file():
                _download_partial(url, target, incomplete / f"{target.name}.partial", model, progress)
        except Exception as exc:
            raise OSError(f"{url}: {' '.join(str(exc).split()) or type(exc).__name__}") from exc


def _download_partial(url: str, target: Path, partial: Path, model: str, progress: Progress | None) -> None:
    """``url`` into ``partial`` (asking for the rest only where it holds a part), then checked into ``target``."""
    done = partial.stat().st_size if partial.is_file() else 0
    answer = _open(url, done)
    if answer is None:  # the range asked starts at the end: the partial file is whole (its check says so or not)
        reporter = DownloadReporter(model, done, progress, done)
    else:
        with answer:
            if done and answer.status != 206:  # the server ignored the range: start over
                done = 0
            length = answer.headers.get("Content-Length")
            reporter = DownloadReporter(model, done + int(length) if length is not None else 0, progress, done)
            reporter.file = target.name
            with partial.open("ab" if done else "wb") as out:
                while chunk := answer.read(1 << 20):
                    out.write(chunk)
                    reporter.add(len(chunk))
        if length is not None and reporter.done < reporter.total:  # urllib ends a cut-off body without a word
            raise OSError(f"the connection closed after {reporter.done} of {reporter.total} bytes")
    match = _HASH_PREFIX.search(target.name)
    with partial.open("rb") as handle:
        digest = hashlib.file_digest(handle, "sha256").hexdigest()
    if match and not digest.startswith(match.group(1)):
        partial.unlink()
        raise ValueError(f"the bytes downloaded are not the file: their sha256 does not start with {match.group(1)}")
    os.replace(partial, target)
    reporter.total = max(reporter.total, reporter.done)
    reporter.finish()


def _open(url: str, start: int):
    """The answer to a GET of ``url`` from byte ``start`` on; None when the server says ``start`` is its end."""
    request = urllib.request.Request(url, headers={"Range": f"bytes={start}-"} if start else {})
    try:
        return urllib.request.urlopen(request, timeout=60)
    except urllib.error.HTTPError as error:
        if start and error.code == 416:  # Range Not Satisfiable
            return None
        raise
