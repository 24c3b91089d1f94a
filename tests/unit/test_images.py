import base64
import io
import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from finetuner_protocol.data import DataError
from finetuner_protocol.data.images import (
    DEFAULT_LIMITS,
    ImageLimits,
    image_from_png_bytes,
    image_to_png_bytes,
    load_image,
    load_images,
    looks_like_image_reference,
)


def pattern(height: int = 12, width: int = 16) -> np.ndarray:
    """A uint8 HWC image whose pixels all differ, so a wrong transpose or channel order shows."""
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)


def encoded(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def png_header(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width`` x ``height`` but holds almost no pixel data."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0")) + chunk(b"IEND", b"")


def reason_of(value, **kwargs) -> str:
    """The single problem's reason of the DataError that loading ``value`` raises."""
    with pytest.raises(DataError) as info:
        load_image(value, "item 0", **kwargs)
    assert [p.where for p in info.value.problems] == ["item 0"]
    return info.value.problems[0].reason


def rgb_pixels(image: Image.Image) -> np.ndarray:
    assert isinstance(image, Image.Image)
    assert image.mode == "RGB"
    return np.asarray(image)


@pytest.fixture
def cifar_files(data_dir) -> list[Path]:
    files = [
        data_dir / "cifar10" / "test" / "cat" / "0000.jpg",
        data_dir / "cifar10" / "test" / "ship" / "0001.jpg",
    ]
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        pytest.fail(f"CIFAR-10 files not found: {missing}")
    return files


# Accepted inputs


@pytest.mark.parametrize("as_path", [False, True])
def test_png_file_by_str_or_path(tmp_path, as_path):
    pixels = pattern()
    file = tmp_path / "a.png"
    Image.fromarray(pixels).save(file)
    image = load_image(file if as_path else str(file), "row 1")
    assert np.array_equal(rgb_pixels(image), pixels)


def test_real_cifar10_jpegs(cifar_files):
    for file in cifar_files:
        image = load_image(file, str(file))
        assert image.size == (32, 32)
        assert rgb_pixels(image).std() > 0


def test_file_handles_are_closed(tmp_path):
    fds = Path("/proc/self/fd")
    if not fds.is_dir():
        pytest.skip("needs /proc/self/fd to count open files")
    good, cut = tmp_path / "a.png", tmp_path / "cut.jpg"
    Image.fromarray(pattern()).save(good)
    cut.write_bytes(encoded(Image.fromarray(pattern(64, 64)), "JPEG")[:300])
    before = len(list(fds.iterdir()))
    images = [load_image(good, "row 1") for _ in range(5)]
    for _ in range(5):
        with pytest.raises(DataError):
            load_image(cut, "row 2")
    assert len(list(fds.iterdir())) == before
    assert len(images) == 5


def test_relative_path_resolves_against_base_dir(tmp_path, monkeypatch):
    pixels = pattern()
    (tmp_path / "images").mkdir()
    Image.fromarray(pixels).save(tmp_path / "images" / "x.png")
    monkeypatch.chdir(tmp_path / "images")  # so a path resolved against the working directory would miss
    image = load_image("images/x.png", "train.csv row 2", base_dir=tmp_path)
    assert np.array_equal(rgb_pixels(image), pixels)


def test_relative_path_without_base_dir_uses_working_directory(tmp_path, monkeypatch):
    Image.fromarray(pattern()).save(tmp_path / "x.png")
    monkeypatch.chdir(tmp_path)
    assert load_image("x.png", "row 1").size == (16, 12)


def test_absolute_path_ignores_base_dir(tmp_path):
    file = tmp_path / "x.png"
    Image.fromarray(pattern()).save(file)
    assert load_image(str(file), "row 1", base_dir=tmp_path / "elsewhere").size == (16, 12)


def test_png_bytes_and_bytearray():
    pixels = pattern()
    data = encoded(Image.fromarray(pixels), "PNG")
    assert np.array_equal(rgb_pixels(load_image(data, "doc 0")), pixels)
    assert np.array_equal(rgb_pixels(load_image(bytearray(data), "doc 0")), pixels)


@pytest.mark.parametrize("fmt", ["JPEG", "BMP", "GIF", "WEBP", "TIFF"])
def test_other_encoded_formats(fmt):
    image = load_image(encoded(Image.fromarray(pattern()), fmt), "doc 0")
    assert image.size == (16, 12)
    assert image.mode == "RGB"


def test_jpeg_bytes_of_real_cifar10_file(cifar_files):
    data = cifar_files[0].read_bytes()
    assert np.array_equal(np.asarray(load_image(data, "doc 0")), np.asarray(load_image(cifar_files[0], "f")))


@pytest.mark.parametrize("media_type", ["image/png", "IMAGE/PNG"])
def test_data_uri(media_type):
    pixels = pattern()
    payload = base64.b64encode(encoded(Image.fromarray(pixels), "PNG")).decode()
    image = load_image(f"data:{media_type};base64,{payload}", "doc 0")
    assert np.array_equal(rgb_pixels(image), pixels)


def test_data_uri_with_line_breaks_in_payload():
    payload = base64.encodebytes(encoded(Image.fromarray(pattern()), "PNG")).decode()
    assert "\n" in payload
    assert load_image(f"data:image/png;base64,{payload}", "doc 0").size == (16, 12)


def test_grayscale_file_becomes_rgb(tmp_path):
    gray = pattern()[:, :, 0]
    file = tmp_path / "g.png"
    Image.fromarray(gray, mode="L").save(file)
    pixels = rgb_pixels(load_image(file, "row 1"))
    assert all(np.array_equal(pixels[:, :, c], gray) for c in range(3))


def test_rgba_file_drops_alpha(tmp_path):
    rgba = np.concatenate([pattern(), np.full((12, 16, 1), 7, np.uint8)], axis=2)
    file = tmp_path / "a.png"
    Image.fromarray(rgba, mode="RGBA").save(file)
    assert np.array_equal(rgb_pixels(load_image(file, "row 1")), rgba[:, :, :3])


def test_palette_with_transparency_becomes_rgb():
    image = Image.fromarray(pattern()).convert("P")
    image.info["transparency"] = 0
    data = encoded(image, "PNG")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert load_image(data, "doc 0").mode == "RGB"


def test_sixteen_bit_grayscale_is_scaled_not_clipped():
    values = np.array([[0, 257 * 100, 65535] * 4] * 9, dtype=np.uint16)
    data = encoded(Image.fromarray(values), "PNG")
    pixels = rgb_pixels(load_image(data, "doc 0"))
    assert pixels[0, :3, 0].tolist() == [0, 100, 255]


def test_exif_orientation_is_applied():
    exif = Image.Exif()
    exif[0x0112] = 6  # rotated 90 degrees: stored 16 wide x 12 high, shown 12 wide x 16 high
    data = encoded(Image.fromarray(pattern()), "JPEG", exif=exif)
    assert load_image(data, "doc 0").size == (12, 16)


def test_pil_image_is_accepted_and_copied():
    source = Image.fromarray(pattern()).convert("L")
    image = load_image(source, "doc 0")
    assert image.mode == "RGB"
    assert image is not source


@pytest.mark.parametrize("layout", ["HWC", "CHW"])
def test_numpy_uint8(layout):
    pixels = pattern()
    array = pixels if layout == "HWC" else pixels.transpose(2, 0, 1)
    assert np.array_equal(rgb_pixels(load_image(array, "doc 0")), pixels)


@pytest.mark.parametrize("layout", ["HWC", "CHW"])
def test_numpy_float_in_unit_range(layout):
    pixels = pattern()
    floats = pixels.astype(np.float32) / 255.0
    array = floats if layout == "HWC" else floats.transpose(2, 0, 1)
    assert np.array_equal(rgb_pixels(load_image(array, "doc 0")), pixels)


def test_numpy_float64_extremes():
    array = np.zeros((8, 8, 3))
    array[0, 0] = 1.0
    pixels = rgb_pixels(load_image(array, "doc 0"))
    assert pixels[0, 0].tolist() == [255, 255, 255]
    assert pixels[1, 1].tolist() == [0, 0, 0]


def test_numpy_integers_in_byte_range():
    pixels = pattern()
    assert np.array_equal(rgb_pixels(load_image(pixels.astype(np.int64), "doc 0")), pixels)


@pytest.mark.parametrize("shape", [(12, 16), (12, 16, 1), (1, 12, 16)])
def test_numpy_grayscale(shape):
    gray = pattern()[:, :, 0]
    pixels = rgb_pixels(load_image(gray.reshape(shape), "doc 0"))
    assert pixels.shape == (12, 16, 3)
    assert all(np.array_equal(pixels[:, :, c], gray) for c in range(3))


@pytest.mark.parametrize("layout", ["HWC", "CHW"])
def test_numpy_rgba(layout):
    rgba = np.concatenate([pattern(), np.zeros((12, 16, 1), np.uint8)], axis=2)
    array = rgba if layout == "HWC" else rgba.transpose(2, 0, 1)
    assert np.array_equal(rgb_pixels(load_image(array, "doc 0")), rgba[:, :, :3])


def test_torch_float_chw():
    pixels = pattern()
    tensor = torch.from_numpy(pixels).permute(2, 0, 1).float() / 255.0
    assert np.array_equal(rgb_pixels(load_image(tensor, "doc 0")), pixels)


def test_torch_uint8_hwc_and_grad_and_half():
    pixels = pattern()
    assert np.array_equal(rgb_pixels(load_image(torch.from_numpy(pixels), "doc 0")), pixels)
    floats = (torch.from_numpy(pixels).permute(2, 0, 1).float() / 255.0).requires_grad_()
    assert np.array_equal(rgb_pixels(load_image(floats, "doc 0")), pixels)
    assert load_image(floats.detach().to(torch.bfloat16), "doc 0").size == (16, 12)


def test_torch_grayscale_2d():
    gray = torch.from_numpy(pattern()[:, :, 0])
    assert np.array_equal(rgb_pixels(load_image(gray, "doc 0"))[:, :, 1], gray.numpy())


def test_ambiguous_layout_follows_each_library():
    # 3 x 8 x 3: numpy reads it as HWC (3 high, 8 wide), torch as CHW (8 high, 3 wide)
    limits = ImageLimits(min_side=1)
    array = np.zeros((3, 8, 3), np.uint8)
    assert load_image(array, "doc 0", limits=limits).size == (8, 3)
    assert load_image(torch.from_numpy(array), "doc 0", limits=limits).size == (3, 8)


# Refused inputs


def test_missing_file_names_resolved_path(tmp_path):
    reason = reason_of("missing/x.png", base_dir=tmp_path)
    assert reason == f"file not found: {(tmp_path / 'missing' / 'x.png').resolve()}"


def test_directory(tmp_path):
    (tmp_path / "folder.png").mkdir()
    assert reason_of(tmp_path / "folder.png") == f"not a file: {(tmp_path / 'folder.png').resolve()} is a directory"


def test_empty_path():
    assert reason_of("  ") == "empty image path"


def test_url_is_not_fetched():
    reason = reason_of("https://example.com/cat.jpg")
    assert reason.startswith("URLs are not fetched ('https://example.com/cat.jpg')")


def test_not_an_image_bytes(tmp_path):
    expected = "not a readable image: the data is in no image format that can be decoded"
    assert reason_of(b"hello, this is text") == expected
    file = tmp_path / "notes.jpg"
    file.write_text("not a jpeg")
    assert reason_of(file) == expected


def test_corrupt_png_data():
    data = bytearray(encoded(Image.fromarray(pattern()), "PNG"))
    start = data.index(b"IDAT") + 4
    data[start : start + 40] = bytes(40)
    reason = reason_of(bytes(data))
    assert reason.startswith("corrupt or truncated image: ")
    assert len(reason) < 220


@pytest.mark.parametrize("source", ["generated", "cifar"])
def test_truncated_jpeg(source, cifar_files):
    if source == "cifar":
        data = cifar_files[1].read_bytes()
    else:
        data = encoded(Image.fromarray(pattern(64, 64)), "JPEG", quality=95)
    reason = reason_of(data[: len(data) // 2])
    assert reason.startswith("corrupt or truncated image: ")
    assert "truncated" in reason


def test_truncated_file_on_disk(tmp_path):
    data = encoded(Image.fromarray(pattern(64, 64)), "JPEG", quality=95)
    file = tmp_path / "cut.jpg"
    file.write_bytes(data[: len(data) // 2])
    assert "truncated" in reason_of(file)


def test_data_uri_not_base64():
    reason = reason_of("data:image/png,rawbytes")
    assert reason == "data URI is not base64-encoded: expected 'data:image/<type>;base64,<data>'"


def test_data_uri_bad_base64():
    reason = reason_of("data:image/png;base64,@@not*base64@@")
    assert reason.startswith("data URI payload is not valid base64 (")


def test_data_uri_without_comma():
    assert reason_of("data:image/png;base64") == "malformed data URI: no ',' between the media type and the data"


@pytest.mark.parametrize(
    "uri, media_type",
    [("data:text/plain;base64,aGVsbG8=", "text/plain"), ("data:;base64,aGVsbG8=", "text/plain")],
)
def test_data_uri_non_image_media_type(uri, media_type):
    expected = f"data URI has media type {media_type!r}, not an image type (image/png, image/jpeg, ...)"
    assert reason_of(uri) == expected


def test_data_uri_image_type_with_non_image_payload():
    payload = base64.b64encode(b"just text").decode()
    assert reason_of(f"data:image/png;base64,{payload}").startswith("not a readable image")


@pytest.mark.parametrize("shape, count", [((12, 16, 2), 2), ((12, 16, 5), 5), ((2, 12, 16), 2), ((5, 12, 16), 5)])
def test_wrong_channel_count(shape, count):
    reason = reason_of(np.zeros(shape, np.uint8))
    assert reason == f"array has {count} channels (shape {shape}); allowed: 1, 3 or 4 channels, as HWC or CHW"


def test_wrong_channel_count_tensor():
    assert reason_of(torch.zeros(2, 12, 16)).startswith("array has 2 channels (shape (2, 12, 16))")


@pytest.mark.parametrize("shape", [(1, 3, 12, 16), (12,), ()])
def test_wrong_number_of_dimensions(shape):
    reason = reason_of(np.zeros(shape, np.uint8))
    expected = f"array has {len(shape)} dimensions (shape {shape}); expected 2 (H, W) or 3 (H, W, C or C, H, W)"
    assert reason == expected


def test_four_dimensional_tensor():
    assert reason_of(torch.zeros(1, 3, 12, 16)).startswith("array has 4 dimensions (shape (1, 3, 12, 16))")


@pytest.mark.parametrize("low, high", [(-0.5, 1.0), (0.0, 255.0), (0.0, np.inf)])
def test_float_out_of_range(low, high):
    array = np.full((12, 16, 3), 0.5)
    array[0, 0, 0], array[1, 1, 1] = low, high
    assert reason_of(array) == f"float array values lie in [{low:g}, {high:g}]; expected values in [0, 1]"


def test_float_nan():
    array = np.full((12, 16, 3), 0.5, np.float32)
    array[3, 3, 0] = np.nan
    assert reason_of(array) == "float array contains NaN values; expected values in [0, 1]"
    assert reason_of(torch.from_numpy(array)) == "float array contains NaN values; expected values in [0, 1]"


def test_integers_out_of_byte_range():
    array = np.full((12, 16, 3), 300, np.int32)
    assert reason_of(array) == "integer array values lie in [300, 300]; expected values in [0, 255]"


def test_bool_array():
    reason = reason_of(np.zeros((12, 16), bool))
    assert reason == "array of dtype bool is not an image; expected uint8 (0..255) or float (0..1)"


@pytest.mark.parametrize(
    "value, name", [(42, "builtins.int"), ([1, 2, 3], "builtins.list"), (None, "builtins.NoneType")]
)
def test_unsupported_type(value, name):
    assert reason_of(value).startswith(f"unsupported value of type {name}; expected a file path")


def test_too_small_array_and_file(tmp_path):
    expected = "image is too small: 16 x 4 pixels; each side must be at least 8 pixels"
    assert reason_of(np.zeros((4, 16, 3), np.uint8)) == expected
    file = tmp_path / "thin.png"
    Image.new("RGB", (16, 4)).save(file)
    assert reason_of(file) == expected


def test_empty_array_is_too_small():
    assert reason_of(np.zeros((0, 0), np.uint8)).startswith("image is too small: 0 x 0 pixels")


def test_too_large_side_from_header_only():
    reason = reason_of(png_header(17000, 16))
    assert reason == "image is too large: 17000 x 16 pixels; each side must be at most 16384 pixels"


def test_too_many_pixels_from_header_without_warning():
    # 12000 x 9000 is past Pillow's warning threshold but within its hard limit: the limits decide
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        reason = reason_of(png_header(12000, 9000))
    assert reason == "image is too large: 12000 x 9000 = 108000000 pixels; the limit is 100000000 pixels in total"


def test_decompression_bomb_becomes_clear_error():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        reason = reason_of(png_header(16000, 16000))
    assert reason == "image is too large: 256000000 pixels; the limit is 100000000 pixels in total"


def test_small_limits_object():
    limits = ImageLimits(min_side=2, max_side=20, max_pixels=100)
    array = np.zeros((12, 16, 3), np.uint8)
    assert reason_of(array, limits=limits) == (
        "image is too large: 16 x 12 = 192 pixels; the limit is 100 pixels in total"
    )
    assert reason_of(np.zeros((30, 4, 3), np.uint8), limits=limits) == (
        "image is too large: 4 x 30 pixels; each side must be at most 20 pixels"
    )
    assert load_image(np.zeros((10, 10, 3), np.uint8), "doc 0", limits=limits).size == (10, 10)


def test_error_message_names_dataset_and_place():
    with pytest.raises(DataError) as info:
        load_image(b"junk", "train.csv row 4", dataset="train")
    assert str(info.value).splitlines() == [
        "train data rejected: 1 problem",
        "  train.csv row 4: not a readable image: the data is in no image format that can be decoded",
    ]


# ImageLimits


def test_default_limits():
    assert (DEFAULT_LIMITS.min_side, DEFAULT_LIMITS.max_side, DEFAULT_LIMITS.max_pixels) == (
        8,
        16384,
        100_000_000,
    )
    assert ImageLimits() == DEFAULT_LIMITS


@pytest.mark.parametrize(
    "options, message",
    [
        ({"min_side": 0}, "greater than or equal to 1"),
        ({"max_pixels": -5}, "greater than or equal to 1"),
        ({"min_side": 10, "max_side": 9}, "max_side (9) is smaller than min_side (10)"),
        ({"min_side": 10, "max_pixels": 99}, "max_pixels (99) is smaller than min_side squared (100)"),
        ({"min_side": 8.5}, "valid integer"),
        ({"min_side": True}, "valid integer"),
        ({"max_size": 10}, "Extra inputs are not permitted"),
    ],
)
def test_limits_are_validated(options, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        ImageLimits(**options)


def test_limits_are_frozen():
    with pytest.raises(ValueError):
        DEFAULT_LIMITS.min_side = 1


# looks_like_image_reference


@pytest.mark.parametrize(
    "value",
    [
        "cat.jpg",
        "a/b/C.JPEG",
        "x.png",
        "x.bmp",
        "x.gif",
        "x.webp",
        "x.tif",
        "x.TIFF",
        " dog.png ",
        "data:image/png;base64,AA==",
    ],
)
def test_image_references(value):
    assert looks_like_image_reference(value)


@pytest.mark.parametrize(
    "value",
    ["a photo of a cat", "png", "cat.jpg is cute", "report.pdf", "data:text/plain;base64,aGk=", "", "x.jpgx"],
)
def test_not_image_references(value):
    assert not looks_like_image_reference(value)


# load_images


def test_load_images_returns_all_in_order(tmp_path, cifar_files):
    Image.fromarray(pattern()).save(tmp_path / "x.png")
    values = ["x.png", cifar_files[0], pattern(10, 9)]
    images = load_images(values, ["row 1", "row 2", "row 3"], base_dir=tmp_path)
    assert [image.size for image in images] == [(16, 12), (32, 32), (9, 10)]


def test_load_images_lists_every_problem(tmp_path):
    Image.fromarray(pattern()).save(tmp_path / "ok.png")
    values = [
        "ok.png",
        "gone.png",
        b"junk",
        np.zeros((12, 16, 2), np.uint8),
        "ok.png",
        np.zeros((2, 2), np.uint8),
    ]
    wheres = [f"train.csv row {i}" for i in range(2, 8)]
    with pytest.raises(DataError) as info:
        load_images(values, wheres, base_dir=tmp_path, dataset="train")
    problems = info.value.problems
    assert [p.where for p in problems] == [
        "train.csv row 3",
        "train.csv row 4",
        "train.csv row 5",
        "train.csv row 7",
    ]
    assert problems[0].reason == f"file not found: {(tmp_path / 'gone.png').resolve()}"
    assert problems[1].reason.startswith("not a readable image")
    assert problems[2].reason.startswith("array has 2 channels")
    assert problems[3].reason.startswith("image is too small")
    assert str(info.value).startswith("train data rejected: 4 problems\n")


def test_load_images_needs_one_place_per_value():
    with pytest.raises(ValueError, match="2 values but 1 places"):
        load_images([b"a", b"b"], ["row 1"])


def test_load_images_empty():
    assert load_images([], []) == []


# PNG storage


def test_png_round_trip_is_exact(cifar_files):
    for source in [Image.fromarray(pattern()), load_image(cifar_files[0], "f")]:
        data = image_to_png_bytes(source)
        assert data.startswith(b"\x89PNG\r\n\x1a\n")
        restored = image_from_png_bytes(data)
        assert restored.mode == "RGB"
        assert restored.size == source.size
        assert np.array_equal(np.asarray(restored), np.asarray(source))


def test_png_from_bytes_refuses_other_formats_and_junk():
    jpeg = encoded(Image.fromarray(pattern()), "JPEG")
    with pytest.raises(DataError) as info:
        image_from_png_bytes(jpeg)
    assert info.value.problems[0].reason == "not a PNG image (found JPEG)"
    with pytest.raises(DataError) as info:
        image_from_png_bytes(b"junk", where="run abc image 3")
    assert info.value.problems[0].where == "run abc image 3"
