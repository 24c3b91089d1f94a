"""The Hugging Face Hub and its cache: where the cache is, whether downloads are allowed, what the cache holds,
and downloading a model into it.

The cache is the one the environment names when called (``$HF_HUB_CACHE``, else ``$HF_HOME/hub``), read through
huggingface_hub's own lookup, so that sentence-transformers, transformers, timm and open_clip find the same files.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from finetuner_protocol.backbones import FOLDER_FAMILY, HF_CLIP_FAMILY, ModelNotAvailableError

DOWNLOADS_VARIABLE = "FINETUNER_DOWNLOADS"  # 0 / false / no / off: never download, whatever else allows it
_OFF = ("0", "false", "no", "off")
_HF_TRUE = ("1", "on", "yes", "true")  # what huggingface_hub reads as true in HF_HUB_OFFLINE
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
    """Whether the Hub may be asked: not when ``setting`` is False, ``HF_HUB_OFFLINE`` is set or
    ``$FINETUNER_DOWNLOADS`` is off; otherwise ``setting`` (None: allowed)."""
    if setting is False:
        return False
    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in _HF_TRUE:
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


def snapshot_family(model_id: str, folder: Path) -> str:
    """The family that builds the Hugging Face folder ``folder``: transformers CLIP (not built yet), else the
    text family (a sentence-transformers folder, or any encoder AutoModel loads, mean-pooled)."""
    config = folder / "config.json"
    if (folder / "open_clip_config.json").is_file():
        return "open_clip"
    if config.is_file():
        try:
            model_type = json.loads(config.read_text("utf-8")).get("model_type")
        except (ValueError, OSError):
            model_type = None
        if model_type == "clip":
            return HF_CLIP_FAMILY
    return FOLDER_FAMILY


def download(model_id: str, name: str | None = None) -> Path:
    """Download ``model_id``'s snapshot into the Hugging Face cache; its folder there. A failure raises
    :class:`ModelNotAvailableError` with the reason (``name``: the name the user asked for)."""
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(model_id, cache_dir=hub_cache_dir(), ignore_patterns=DOWNLOAD_IGNORE))
    except Exception as exc:  # noqa: BLE001 - any failure of the download is the reason the model is not there
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise ModelNotAvailableError(
            f"model {name or model_id!r}: the download from the Hugging Face Hub failed: {reason}"
        ) from exc
