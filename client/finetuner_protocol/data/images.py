"""Images as they enter a data set: local files, encoded bytes, data URIs, arrays and tensors -> RGB images.

Every input is decoded in full (so truncated files are caught), checked against :class:`ImageLimits`, and
turned into an RGB :class:`PIL.Image.Image`: grayscale is repeated over three channels, an alpha channel is
dropped, and an EXIF orientation is applied. A failure raises :class:`DataError` with one :class:`Problem`
saying where and why; :func:`load_images` loads a whole data set and lists every bad item at once.

Nothing is downloaded: ``http://`` and other URLs are refused.
"""

from __future__ import annotations

import base64
import binascii
import io
import re
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError
from pydantic import BaseModel, ConfigDict, Field, model_validator

from finetuner_protocol.data.errors import DataError, Problem

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")
CHANNELS = (1, 3, 4)
URL_PATTERN = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")
BOMB_PATTERN = re.compile(r"\((\d+) pixels\) exceeds limit of (\d+) pixels")
MAX_REASON = 160


class ImageLimits(BaseModel):
    """The sizes an image may have; anything outside is refused before it is decoded in full."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    min_side: int = Field(8, ge=1, strict=True, description="smallest width or height, in pixels")
    max_side: int = Field(16384, ge=1, strict=True, description="largest width or height, in pixels")
    max_pixels: int = Field(100_000_000, ge=1, strict=True, description="largest width x height")

    @model_validator(mode="after")
    def _consistent(self) -> ImageLimits:
        if self.max_side < self.min_side:
            raise ValueError(f"max_side ({self.max_side}) is smaller than min_side ({self.min_side})")
        if self.max_pixels < self.min_side**2:
            raise ValueError(
                f"max_pixels ({self.max_pixels}) is smaller than min_side squared ({self.min_side**2}): "
                "no image could pass"
            )
        return self


DEFAULT_LIMITS = ImageLimits()


def looks_like_image_reference(value: str) -> bool:
    """Whether a text cell names an image: an image data URI or a path ending in an image extension."""
    if not isinstance(value, str):
        return False
    text = value.strip().lower()
    return text.startswith("data:image/") or text.endswith(IMAGE_EXTENSIONS)


def load_image(
    value: Any,
    where: str,
    base_dir: Path | None = None,
    limits: ImageLimits = DEFAULT_LIMITS,
    dataset: str = "image",
) -> Image.Image:
    """An RGB image from a path, encoded bytes, a data URI, a PIL image, or a numpy array / torch tensor.

    A relative path is resolved against ``base_dir`` (the folder of the CSV file that names it) when given,
    else against the working directory. Raises :class:`DataError` (data set ``dataset``) with one
    :class:`Problem` ``(where, reason)`` if ``value`` is not a usable image.
    """
    try:
        return _load(value, base_dir, limits)
    except _Refused as refused:
        raise DataError(dataset, [Problem(where, refused.reason)]) from None


def load_images(
    values: Sequence[Any],
    wheres: Sequence[str],
    base_dir: Path | None = None,
    limits: ImageLimits = DEFAULT_LIMITS,
    dataset: str = "images",
) -> list[Image.Image]:
    """Every image of a data set, or one :class:`DataError` listing each item that could not be loaded."""
    values, wheres = list(values), list(wheres)
    if len(values) != len(wheres):
        raise ValueError(f"{len(values)} values but {len(wheres)} places (wheres); they must pair up")
    images, problems = [], []
    for value, where in zip(values, wheres, strict=True):
        try:
            images.append(_load(value, base_dir, limits))
        except _Refused as refused:
            problems.append(Problem(where, refused.reason))
    if problems:
        raise DataError(dataset, problems)
    return images


def image_to_png_bytes(image: Image.Image) -> bytes:
    """The image encoded losslessly as PNG, for storing."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def image_from_png_bytes(data: bytes, where: str = "stored image") -> Image.Image:
    """An RGB image back from :func:`image_to_png_bytes`; anything but a readable PNG raises DataError."""
    try:
        return _decode(io.BytesIO(data), limits=None, expected_format="PNG")
    except _Refused as refused:
        raise DataError("stored", [Problem(where, refused.reason)]) from None


class _Refused(Exception):
    """Internal: why one value is not a usable image; becomes a Problem."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def _load(value: Any, base_dir: Path | None, limits: ImageLimits) -> Image.Image:
    """Dispatch on the kind of ``value``."""
    if isinstance(value, Image.Image):
        return _from_pil(value, limits)
    if isinstance(value, str) and value.strip().lower().startswith("data:"):
        return _decode(io.BytesIO(_data_uri_bytes(value.strip())), limits)
    if isinstance(value, str | Path):
        return _load_file(value, base_dir, limits)
    if isinstance(value, bytes | bytearray | memoryview):
        return _decode(io.BytesIO(bytes(value)), limits)
    if _is_tensor(value):
        return _from_array(_tensor_to_numpy(value), limits, channels_first=True)
    if isinstance(value, np.ndarray):
        return _from_array(value, limits, channels_first=False)
    raise _Refused(
        f"unsupported value of type {type(value).__module__}.{type(value).__qualname__}; expected a file "
        "path, encoded image bytes, a data URI, a PIL image, a numpy array or a torch tensor"
    )


def _load_file(value: str | Path, base_dir: Path | None, limits: ImageLimits) -> Image.Image:
    """Open a local file, resolving a relative path against ``base_dir``."""
    path = _resolve(value, base_dir)
    if not path.exists():
        raise _Refused(f"file not found: {path}")
    if path.is_dir():
        raise _Refused(f"not a file: {path} is a directory")
    if not path.is_file():
        raise _Refused(f"not a regular file: {path}")
    try:
        with path.open("rb") as file:
            return _decode(file, limits)
    except OSError as exc:
        raise _Refused(f"cannot read {path}: {exc.strerror or exc}") from None


def _from_pil(image: Image.Image, limits: ImageLimits) -> Image.Image:
    """An RGB copy of an image the caller already opened."""
    _check_size(image.width, image.height, limits)
    try:
        image.load()
    except Exception as exc:  # a lazily opened image is decoded here
        raise _Refused(f"corrupt or truncated image: {_brief(exc)}") from None
    return _to_rgb(image)


def _resolve(value: str | Path, base_dir: Path | None) -> Path:
    """The absolute path ``value`` names; URLs and empty strings are refused."""
    text = str(value).strip()
    if not text:
        raise _Refused("empty image path")
    if URL_PATTERN.match(text):
        raise _Refused(f"URLs are not fetched ({text[:80]!r}); give a local file path, encoded bytes or a data URI")
    path = Path(text).expanduser()
    if not path.is_absolute() and base_dir is not None:
        path = Path(base_dir) / path
    return path.resolve()


def _data_uri_bytes(uri: str) -> bytes:
    """The payload of ``data:image/<type>;base64,<data>``."""
    header, comma, payload = uri[len("data:") :].partition(",")
    if not comma:
        raise _Refused("malformed data URI: no ',' between the media type and the data")
    params = [part.strip().lower() for part in header.split(";")]
    media_type = params[0] or "text/plain"
    if not media_type.startswith("image/"):
        raise _Refused(f"data URI has media type {media_type!r}, not an image type (image/png, image/jpeg, ...)")
    if "base64" not in params[1:]:
        raise _Refused("data URI is not base64-encoded: expected 'data:image/<type>;base64,<data>'")
    try:
        return base64.b64decode("".join(payload.split()), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise _Refused(f"data URI payload is not valid base64 ({exc})") from None


def _decode(stream: BinaryIO, limits: ImageLimits | None, expected_format: str | None = None) -> Image.Image:
    """Decode an encoded image in full; the size is checked from its header before the pixels are read."""
    try:
        with warnings.catch_warnings():
            # _check_size states the limits; Pillow's own warning for large images would only repeat it.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(stream) as image:
                if expected_format is not None and image.format != expected_format:
                    raise _Refused(f"not a {expected_format} image (found {image.format})")
                if limits is not None:
                    _check_size(image.width, image.height, limits)
                image.load()
                return _to_rgb(_upright(image))
    except _Refused:
        raise
    except UnidentifiedImageError:
        raise _Refused("not a readable image: the data is in no image format that can be decoded") from None
    except Image.DecompressionBombError as exc:
        raise _Refused(_bomb_reason(str(exc), limits)) from None
    except Exception as exc:  # decoders raise many types on corrupt data; each becomes a clear refusal
        raise _Refused(f"corrupt or truncated image: {_brief(exc)}") from None


def _upright(image: Image.Image) -> Image.Image:
    """The image turned as its EXIF orientation says; an unreadable EXIF block leaves it as it is."""
    try:
        return ImageOps.exif_transpose(image)
    except Exception:  # a broken EXIF block does not make the pixels unusable
        return image


def _bomb_reason(message: str, limits: ImageLimits | None) -> str:
    """Pillow's decompression-bomb error, restated with the limit that was exceeded."""
    match = BOMB_PATTERN.search(message)
    if match is None:
        return f"image is too large to decode safely: {message}"
    pixels, decoder_limit = int(match.group(1)), int(match.group(2))
    limit = limits.max_pixels if limits is not None and pixels > limits.max_pixels else decoder_limit
    return f"image is too large: {pixels} pixels; the limit is {limit} pixels in total"


def _brief(exc: Exception) -> str:
    """An exception as one short line."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= MAX_REASON else text[: MAX_REASON - 3] + "..."


def _check_size(width: int, height: int, limits: ImageLimits) -> None:
    """Refuse images smaller or larger than ``limits``."""
    if min(width, height) < limits.min_side:
        raise _Refused(
            f"image is too small: {width} x {height} pixels; each side must be at least {limits.min_side} pixels"
        )
    if max(width, height) > limits.max_side:
        raise _Refused(
            f"image is too large: {width} x {height} pixels; each side must be at most {limits.max_side} pixels"
        )
    if width * height > limits.max_pixels:
        raise _Refused(
            f"image is too large: {width} x {height} = {width * height} pixels; the limit is "
            f"{limits.max_pixels} pixels in total"
        )


def _to_rgb(image: Image.Image) -> Image.Image:
    """A new RGB image: grayscale repeated over three channels, alpha dropped, 16-bit scaled to 8-bit."""
    if image.mode.startswith("I;16"):
        scaled = np.asarray(image, dtype=np.float64) / 257.0
        image = Image.fromarray(np.round(scaled).astype(np.uint8), mode="L")
    elif image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    try:
        return image.convert("RGB")
    except (ValueError, OSError) as exc:
        raise _Refused(f"cannot convert an image of mode {image.mode} to RGB ({_brief(exc)})") from None


def _is_tensor(value: Any) -> bool:
    """Whether ``value`` is a torch tensor (torch is not imported for this: a tensor implies it is loaded)."""
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(value, torch.Tensor)


def _tensor_to_numpy(tensor: Any) -> np.ndarray:
    """A CPU numpy copy of a tensor; low-precision floats (bfloat16, ...) become float32."""
    tensor = tensor.detach().cpu()
    if tensor.is_floating_point():
        tensor = tensor.float()
    try:
        return tensor.numpy()
    except (TypeError, RuntimeError) as exc:
        raise _Refused(f"tensor of dtype {tensor.dtype} cannot be read as an image ({_brief(exc)})") from None


def _from_array(array: np.ndarray, limits: ImageLimits, channels_first: bool) -> Image.Image:
    """An RGB image from an HW, HWC or CHW array of uint8 (0..255), integers in 0..255 or floats in 0..1."""
    hwc = _as_hwc(array, channels_first)
    _check_size(hwc.shape[1], hwc.shape[0], limits)
    pixels = _as_uint8(hwc)
    if pixels.shape[2] == 1:
        pixels = np.repeat(pixels, 3, axis=2)
    return Image.fromarray(np.ascontiguousarray(pixels[:, :, :3]), mode="RGB")


def _as_hwc(array: np.ndarray, channels_first: bool) -> np.ndarray:
    """The array as height x width x channels; a 2-D array is one grayscale channel."""
    if array.ndim == 2:
        return array[:, :, None]
    if array.ndim != 3:
        raise _Refused(
            f"array has {array.ndim} dimensions (shape {tuple(array.shape)}); expected 2 (H, W) or "
            "3 (H, W, C or C, H, W)"
        )
    first, last = array.shape[0] in CHANNELS, array.shape[2] in CHANNELS
    if first and (channels_first or not last):
        return np.transpose(array, (1, 2, 0))
    if last:
        return array
    count = min(array.shape[0], array.shape[2])
    raise _Refused(
        f"array has {count} channels (shape {tuple(array.shape)}); allowed: 1, 3 or 4 channels, as HWC or CHW"
    )


def _as_uint8(array: np.ndarray) -> np.ndarray:
    """uint8 pixels: floats must lie in [0, 1], other integers in [0, 255]."""
    if array.dtype == np.uint8:
        return array
    if np.issubdtype(array.dtype, np.floating):
        if np.isnan(array).any():
            raise _Refused("float array contains NaN values; expected values in [0, 1]")
        low, high = float(array.min()), float(array.max())
        if low < 0.0 or high > 1.0:
            raise _Refused(f"float array values lie in [{low:g}, {high:g}]; expected values in [0, 1]")
        return np.round(array * 255.0).astype(np.uint8)
    if np.issubdtype(array.dtype, np.integer):
        low, high = int(array.min()), int(array.max())
        if low < 0 or high > 255:
            raise _Refused(f"integer array values lie in [{low}, {high}]; expected values in [0, 255]")
        return array.astype(np.uint8)
    raise _Refused(f"array of dtype {array.dtype} is not an image; expected uint8 (0..255) or float (0..1)")
