"""cifar10_runtime.images: every input kind, every odd mode, every broken file."""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, JpegImagePlugin
from runtime_samples import (
    BLUE,
    RED,
    WHITE,
    broken_files,
    encode,
    gradient,
    left_red_right_blue,
    odd_images,
    png_header_only,
)

from cifar10_runtime import ImageError, load_image
from cifar10_runtime.images import (
    FORMATS_TEXT,
    LARGE_PIXELS,
    PILLOW_FORMATS,
    RESAMPLE,
    DecodeBudgetError,
    load_images,
)

ODD = odd_images()
BROKEN = broken_files()


def _check(array: np.ndarray) -> np.ndarray:
    assert array.shape == (32, 32, 3)
    assert array.dtype == np.uint8
    return array


# --- input kinds -------------------------------------------------------------------------


def test_every_source_kind_gives_the_same_pixels(tmp_path: Path) -> None:
    expected = gradient()
    data = encode(Image.fromarray(expected))
    path = tmp_path / "img.png"
    path.write_bytes(data)

    class Unseekable(io.RawIOBase):  # e.g. a socket or pipe: Pillow needs a copy
        def __init__(self) -> None:
            self.inner = io.BytesIO(data)

        def readable(self) -> bool:
            return True

        def readinto(self, buffer) -> int:  # type: ignore[no-untyped-def]
            chunk = self.inner.read(len(buffer))
            buffer[: len(chunk)] = chunk
            return len(chunk)

        def seekable(self) -> bool:
            return False

    with open(path, "rb") as handle:
        from_handle = load_image(handle)
    sources = {
        "str path": load_image(str(path)),
        "Path": load_image(path),
        "bytes": load_image(data),
        "bytearray": load_image(bytearray(data)),
        "memoryview": load_image(memoryview(data)),
        "file object": from_handle,
        "BytesIO": load_image(io.BytesIO(data)),
        "unseekable stream": load_image(Unseekable()),
        "PIL.Image": load_image(Image.open(io.BytesIO(data))),
        "uint8 array": load_image(expected.copy()),
    }
    for kind, array in sources.items():
        np.testing.assert_array_equal(_check(array), expected, err_msg=kind)


def test_32x32_uint8_array_is_used_without_decoding_or_copying() -> None:
    array = gradient()
    assert load_image(array) is array


@pytest.mark.parametrize(
    ("array", "expected_corner"),
    [
        (np.full((32, 32), 7, np.uint8), (7, 7, 7)),
        (np.full((32, 32, 1), 9, np.uint8), (9, 9, 9)),
        (np.zeros((32, 32, 4), np.uint8), WHITE),  # fully transparent RGBA: white
        (np.full((64, 48, 3), 200, np.uint8), (200, 200, 200)),  # resized
    ],
)
def test_other_uint8_arrays_are_converted(array: np.ndarray, expected_corner: tuple) -> None:
    assert tuple(_check(load_image(array))[0, 0]) == expected_corner


@pytest.mark.parametrize(
    ("array", "message"),
    [
        (np.zeros((32, 32, 3), np.float32), "float32"),
        (np.zeros((3, 32, 32), np.uint8), "(3, 32, 32)"),
        (np.zeros((4, 32, 32, 3), np.uint8), "predict_batch"),
        (np.zeros((0, 5, 3), np.uint8), "no pixels"),
    ],
)
def test_bad_arrays_are_refused_with_the_shape(array: np.ndarray, message: str) -> None:
    with pytest.raises(ImageError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_image(array)


def test_unsupported_source_type_is_an_image_error() -> None:
    with pytest.raises(ImageError, match="cannot read an image from a int"):
        load_image(42)  # type: ignore[arg-type]


# --- modes and formats -------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(ODD))
def test_every_odd_file_decodes_to_rgb(name: str) -> None:
    _check(load_image(ODD[name], name=name))


def test_transparency_is_composited_over_white() -> None:
    half_red = load_image(ODD["rgba_half_transparent.png"])
    assert tuple(half_red[5, 5]) == (255, 127, 127)
    assert tuple(load_image(ODD["grey_alpha_LA.png"])[0, 0]) == WHITE
    palette = load_image(ODD["palette_transparent_P.png"])
    assert tuple(palette[0, 0]) == (0, 255, 0)  # opaque palette entry
    assert tuple(palette[0, 31]) == WHITE  # the transparent index


def test_sixteen_bit_samples_are_scaled_not_clipped() -> None:
    raw = np.asarray(Image.open(io.BytesIO(ODD["sixteen_bit_I16.png"])))
    expected = (raw >> 8).astype(np.uint8)
    for name in ("sixteen_bit_I16.png", "int32_I.tiff"):
        decoded = load_image(ODD[name])
        np.testing.assert_array_equal(decoded[..., 0], expected, err_msg=name)
        np.testing.assert_array_equal(decoded[..., 0], decoded[..., 2])


def test_cmyk_grey_and_float_modes() -> None:
    assert np.all(load_image(ODD["cmyk.jpg"]) >= 250)  # CMYK 0,0,0,0 is white
    grey = load_image(ODD["grey_L.png"])
    np.testing.assert_array_equal(grey[..., 0], grey[..., 1])
    assert np.all(load_image(ODD["float_F.tiff"]) == 255)  # 300.0 clipped


def test_exif_orientation_is_applied() -> None:
    rotated = load_image(ODD["exif_rotated.jpg"])
    # Without the EXIF rotation the left half would be red; with it, the top half is.
    assert np.abs(rotated[2, 2].astype(int) - RED).max() < 20
    assert np.abs(rotated[2, 29].astype(int) - RED).max() < 20
    assert np.abs(rotated[29, 2].astype(int) - BLUE).max() < 20


def test_resize_uses_the_documented_filter() -> None:
    image = Image.fromarray(gradient(97, 61))
    expected = np.asarray(image.resize((32, 32), RESAMPLE))
    np.testing.assert_array_equal(load_image(encode(image)), expected)
    assert RESAMPLE == Image.Resampling.BILINEAR


def test_large_jpeg_is_decoded_at_reduced_size(monkeypatch: pytest.MonkeyPatch) -> None:
    photo = left_red_right_blue(2400, 1600)
    data = encode(photo, "JPEG", quality=90)
    calls: list[tuple] = []
    original = JpegImagePlugin.JpegImageFile.draft

    def spy(self, mode, size):  # type: ignore[no-untyped-def]
        result = original(self, mode, size)
        calls.append((size, self.size))
        return result

    monkeypatch.setattr(JpegImagePlugin.JpegImageFile, "draft", spy)
    decoded = load_image(data)
    assert calls == [((32, 32), (300, 200))]  # 1/8 scale: 2400x1600 -> 300x200
    full = np.asarray(Image.open(io.BytesIO(data)).convert("RGB").resize((32, 32), RESAMPLE))
    assert np.abs(decoded.astype(int) - full).mean() < 3


# --- broken files ------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_every_broken_file_is_an_image_error_naming_it(name: str, tmp_path: Path) -> None:
    path = tmp_path / name
    path.write_bytes(BROKEN[name])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a decompression-bomb *warning* would fail here
        with pytest.raises(ImageError, match=str(path)):
            load_image(path)
        with pytest.raises(ImageError, match=f"^upload-{name}"):
            load_image(BROKEN[name], name=f"upload-{name}")


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("empty.png", "empty"),
        ("text.png", "not an image"),
        ("truncated.png", "truncated"),
        ("truncated.jpg", "truncated"),
        ("bomb_warning_range.png", "decompression bomb: 10000x10000 = 100000000 pixels"),
        ("bomb_error_range.png", "decompression bomb: 10000000000 pixels"),
    ],
)
def test_broken_file_messages_say_what_is_wrong(name: str, message: str) -> None:
    with pytest.raises(ImageError, match=message):
        load_image(BROKEN[name], name=name)


def test_bomb_limit_follows_max_image_pixels(monkeypatch: pytest.MonkeyPatch) -> None:
    image = Image.fromarray(gradient(100, 100))  # 10000 pixels
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 9000)  # Pillow alone would only warn
    with pytest.raises(ImageError, match="10000 pixels exceeds"):
        load_image(encode(image))
    with pytest.raises(ImageError, match="100x100"):
        load_image(image)  # an already-open PIL.Image is checked too
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 10000)
    _check(load_image(encode(image)))


def test_missing_path_and_folder(tmp_path: Path) -> None:
    with pytest.raises(ImageError, match="no such file"):
        load_image(tmp_path / "absent.png")
    with pytest.raises(ImageError, match="is a folder"):
        load_image(tmp_path)


# --- the server's pixel budget and large-decode gate -------------------------------------


def test_pixel_budget_refuses_before_decoding() -> None:
    # Only a header: were the pixels decoded, the error would say "truncated".
    header = png_header_only(3000, 2000)
    with pytest.raises(ImageError, match=r"^up.png: 3000x2000 = 6000000 pixels is over .* 4000000"):
        load_image(header, name="up.png", max_pixels=4_000_000)
    with pytest.raises(ImageError, match="truncated"):  # no budget: decoding starts and fails
        load_image(header, name="up.png")


def test_pixel_budget_counts_jpeg_pixels_after_draft_scaling() -> None:
    big_jpeg = encode(Image.new("RGB", (2400, 2400), RED), "JPEG", quality=80)
    _check(load_image(big_jpeg, max_pixels=4_000_000))  # decoded at 1/8: 300x300
    with pytest.raises(ImageError, match="4200000 pixels is over"):
        load_image(encode(Image.new("RGB", (2100, 2000), RED)), max_pixels=4_000_000)


class Gate:
    def __init__(self) -> None:
        self.entered = 0

    def __enter__(self) -> None:
        self.entered += 1

    def __exit__(self, *exc: object) -> None:
        return None


def test_only_large_decodes_pass_the_gate() -> None:
    gate = Gate()
    _check(load_image(encode(Image.fromarray(gradient(64, 64))), large_gate=gate))
    assert gate.entered == 0
    side = int(LARGE_PIXELS**0.5) + 1
    _check(load_image(encode(Image.fromarray(gradient(side, side))), large_gate=gate))
    assert gate.entered == 1


def test_decoding_leaves_the_warning_filters_alone() -> None:
    before = list(warnings.filters)
    with pytest.raises(ImageError, match="decompression bomb"):
        load_image(BROKEN["bomb_error_range.png"])
    _check(load_image(ODD["rgb.png"]))
    assert warnings.filters == before


def test_the_gate_applies_at_the_threshold() -> None:
    gate = Gate()
    side = int(LARGE_PIXELS**0.5)
    assert side * side == LARGE_PIXELS
    _check(load_image(encode(Image.fromarray(gradient(side, side))), large_gate=gate))
    assert gate.entered == 1


def test_a_request_budget_is_checked_from_every_header_before_decoding() -> None:
    # Headers only: were any decoded, the error would say "truncated".
    named = [(f"{i}.png", png_header_only(1000, 1000)) for i in range(5)]
    with pytest.raises(DecodeBudgetError, match="5 images of this request would be 5000000"):
        load_images(named, max_total_pixels=4_000_000)
    with pytest.raises(ImageError, match="0.png: broken or truncated"):
        load_images(named, max_total_pixels=5_000_000)
    pngs = [(f"{i}.png", ODD["rgb.png"]) for i in range(3)]
    batch = load_images(pngs, max_total_pixels=3 * 1024)
    assert batch.shape == (3, 32, 32, 3) and (batch == load_image(ODD["rgb.png"])).all()


# --- formats -------------------------------------------------------------------------------


def _eps() -> bytes:
    return encode(Image.new("RGB", (32, 32), RED), "EPS")


@pytest.mark.parametrize("fmt", ["EPS", "ICO", "TGA", "PCX", "SGI", "PPM", "DDS", "QOI"])
def test_formats_outside_the_list_are_refused_from_bytes_and_paths(
    fmt: str, tmp_path: Path
) -> None:
    data = _eps() if fmt == "EPS" else encode(Image.new("RGB", (32, 32), RED), fmt)
    assert Image.open(io.BytesIO(data)).format == fmt  # Pillow itself would decode it
    path = tmp_path / f"image.{fmt.lower()}"
    path.write_bytes(data)
    for source in (data, path):
        with pytest.raises(ImageError) as caught:
            load_image(source, name="up")
        assert str(caught.value) == (
            f"up: not an image this runtime decodes (another format, or damaged). "
            f"Use {FORMATS_TEXT}."
        )


def test_the_list_is_what_the_message_names() -> None:
    assert FORMATS_TEXT == "PNG, JPEG, BMP, GIF, TIFF or WebP"
    assert "EPS" not in PILLOW_FORMATS
    decoded = {Image.open(io.BytesIO(data)).format for data in ODD.values()}
    assert decoded == set(PILLOW_FORMATS)  # every listed format is exercised by ODD


def test_an_mpo_jpeg_is_decoded_at_reduced_size(monkeypatch: pytest.MonkeyPatch) -> None:
    buffer = io.BytesIO()
    first, second = left_red_right_blue(2400, 1600), Image.new("RGB", (2400, 1600), BLUE)
    first.save(buffer, "MPO", save_all=True, append_images=[second], quality=90)
    calls: list[tuple] = []
    original = JpegImagePlugin.JpegImageFile.draft

    def spy(self, mode, size):  # type: ignore[no-untyped-def]
        result = original(self, mode, size)
        calls.append((self.format, self.size))
        return result

    monkeypatch.setattr(JpegImagePlugin.JpegImageFile, "draft", spy)
    _check(load_image(buffer.getvalue(), max_pixels=1_000_000))
    assert calls == [("MPO", (300, 200))]
