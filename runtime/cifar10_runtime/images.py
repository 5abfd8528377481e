"""Turn anything image-like into the uint8 [32,32,3] RGB array the model takes.

Sources: a path, bytes, a binary file object, a `PIL.Image`, or a uint8 HWC array
(a 32x32x3 array is used as is, without a copy). Files are decoded with Pillow, in the
formats of FORMATS only (Pillow's `formats=`): the other 37 it knows include EPS, which
runs Ghostscript on the file, and a dozen rarely seen ones whose parsers no upload needs.

1. the header is read first; anything over `PIL.Image.MAX_IMAGE_PIXELS` is refused as a
   possible decompression bomb (Pillow raises `DecompressionBombError` past twice that
   limit and only warns below it, so the size is checked here too), and so is anything over
   the caller's `max_pixels` budget (the server's `--max-pixels`), before any decoding;
2. JPEGs are decoded at reduced size with `Image.draft` (DCT scaling: 1/2, 1/4, 1/8,
   never below 32x32), which makes a 12-megapixel photo cost about as much as a thumbnail;
   the pixel budget counts the pixels really decoded, so it applies after that scaling;
   `load_images` (a request's files) also bounds the pixels of all its images together,
   from their headers, before decoding any;
3. the EXIF orientation is applied;
4. every mode becomes RGB: transparency (RGBA, LA, PA, P with a transparent colour) is
   composited over white, CMYK/L/1/P/YCbCr are converted, 16-bit samples (I;16*, I) are
   scaled to 8 bits by dropping the low byte, float (F) samples are clipped to 0..255;
5. the image is resized to exactly 32x32 with Pillow's BILINEAR filter (RESAMPLE;
   Pillow widens its support when shrinking, so it also antialiases). The aspect ratio
   is not kept: CIFAR-10 images are square, and cropping would drop part of the object.
Steps 3-5 are cifar10_runtime.image_pixels.

Every failure raises ImageError naming the file (or the name passed by the caller).
"""

from __future__ import annotations

import contextlib
import io
import os
from collections.abc import Sequence
from contextlib import AbstractContextManager as ContextManager
from typing import Any, BinaryIO, TypeAlias

import numpy as np
from PIL import Image, UnidentifiedImageError

from cifar10_runtime.errors import ImageError, first_line
from cifar10_runtime.image_pixels import RESAMPLE, SIZE, from_array, to_array

__all__ = [
    "FORMATS",
    "FORMATS_TEXT",
    "LARGE_PIXELS",
    "PILLOW_FORMATS",
    "RESAMPLE",
    "DecodeBudgetError",
    "ImageSource",
    "load_image",
    "load_images",
    "source_name",
]

# Decodes of this many pixels or more go through the caller's `large_gate` (the server bounds
# how many run at once); smaller ones, nearly every real upload, never wait.
LARGE_PIXELS = 1_000_000
# The formats decoded: (Pillow's format id, the name people know). Every one is decoded in
# process by Pillow's own code or libjpeg/libpng/libtiff/libwebp, none runs a program. JPEG
# includes its MPO variant (phones' multi-picture JPEGs), which Pillow opens as JPEG.
FORMATS = (
    ("PNG", "PNG"),
    ("JPEG", "JPEG"),
    ("BMP", "BMP"),
    ("GIF", "GIF"),
    ("TIFF", "TIFF"),
    ("WEBP", "WebP"),
)
PILLOW_FORMATS = tuple(pillow for pillow, _ in FORMATS)
# "PNG, JPEG, BMP, GIF, TIFF or WebP": the error message, the docs and openapi.json say this.
FORMATS_TEXT = ", ".join(name for _, name in FORMATS[:-1]) + f" or {FORMATS[-1][1]}"

ImageSource: TypeAlias = (
    str | os.PathLike | bytes | bytearray | memoryview | BinaryIO | Image.Image | np.ndarray
)


def source_name(source: Any) -> str:
    """How error messages name an image source."""
    if isinstance(source, str | os.PathLike):
        return os.fspath(source)
    if isinstance(source, bytes | bytearray | memoryview):
        return f"<{len(source)} bytes>"
    if isinstance(source, np.ndarray):
        return "<array>"
    if isinstance(source, Image.Image):
        return getattr(source, "filename", "") or "<PIL.Image>"
    return str(getattr(source, "name", "") or f"<{type(source).__name__}>")


def load_image(
    source: ImageSource,
    name: str | None = None,
    max_pixels: int | None = None,
    large_gate: ContextManager[Any] | None = None,
) -> np.ndarray:
    """Decode `source` into a uint8 [32,32,3] RGB array; raise ImageError naming it.

    `max_pixels` refuses files whose decoded size is over it (checked from the header,
    before decoding); `large_gate` (e.g. a threading.BoundedSemaphore) is held while an
    image of more than LARGE_PIXELS pixels decodes, to bound how many run at once.
    """
    name = name or source_name(source)
    limits = _Limits(max_pixels, large_gate)
    if isinstance(source, np.ndarray):
        return from_array(source, name)
    if isinstance(source, Image.Image):
        limits.check(source.size, name)
        return _guarded(to_array, source, name)
    if isinstance(source, str | os.PathLike):
        return _from_path(os.fspath(source), name, limits)
    if isinstance(source, bytes | bytearray | memoryview):
        if len(source) == 0:
            raise ImageError(_empty(name))
        return _decode(io.BytesIO(source), name, limits)
    if hasattr(source, "read"):
        return _decode(source, name, limits)
    raise ImageError(
        f"{name}: cannot read an image from a {type(source).__name__}. Pass a path, bytes, "
        "a binary file object, a PIL.Image or a uint8 HxWx3 array."
    )


def _empty(name: str) -> str:
    return f"{name}: empty (0 bytes), not an image. Send the file's content."


class DecodeBudgetError(ImageError):
    """A request's images together are over its pixel budget (the server answers 413)."""


def load_images(
    named: Sequence[tuple[str, bytes]],
    max_pixels: int | None = None,
    large_gate: ContextManager[Any] | None = None,
    max_total_pixels: int | None = None,
) -> np.ndarray:
    """Decode one request's (name, bytes) images into uint8 [N,32,32,3].

    Every header is read first, so a body whose images add up to more than
    `max_total_pixels` (after JPEG draft scaling) is refused before any pixel is decoded.
    """
    limits = _Limits(max_pixels, large_gate)
    batch = np.empty((len(named), *SIZE, 3), dtype=np.uint8)
    with contextlib.ExitStack() as stack:
        opened = []
        total = 0
        for name, data in named:
            if len(data) == 0:
                raise ImageError(_empty(name))
            image = stack.enter_context(_open(io.BytesIO(data), name, limits))
            total += image.size[0] * image.size[1]
            opened.append((name, image))
        if max_total_pixels is not None and total > max_total_pixels:
            raise DecodeBudgetError(
                f"the {len(named)} images of this request would be {total} decoded pixels, "
                f"over this server's budget of {max_total_pixels} per request "
                "(--max-request-pixels). Send fewer or smaller images per request."
            )
        for i, (name, image) in enumerate(opened):
            with limits.gate(image.size):
                batch[i] = _guarded(to_array, image, name)
    return batch


class _Limits:
    def __init__(self, max_pixels: int | None, large_gate: ContextManager[Any] | None) -> None:
        self.max_pixels = max_pixels
        self.large_gate = large_gate

    def check(self, size: tuple[int, int], name: str, budget: bool = True) -> None:
        pixels = size[0] * size[1]
        limit = Image.MAX_IMAGE_PIXELS
        if limit is not None and pixels > limit:
            found = f"{size[0]}x{size[1]} = {pixels} pixels"
            raise ImageError(_bomb_message(name, found))
        if budget and self.max_pixels is not None and pixels > self.max_pixels:
            raise ImageError(
                f"{name}: {size[0]}x{size[1]} = {pixels} pixels is over this server's budget "
                f"of {self.max_pixels} pixels (--max-pixels). The model needs 32x32: "
                "shrink the image first."
            )

    def gate(self, size: tuple[int, int]) -> ContextManager[Any]:
        if self.large_gate is not None and size[0] * size[1] >= LARGE_PIXELS:
            return self.large_gate
        return contextlib.nullcontext()


def _from_path(path: str, name: str, limits: _Limits) -> np.ndarray:
    try:
        size = os.stat(path).st_size
    except FileNotFoundError:
        raise ImageError(f"{name}: no such file. Check the path.") from None
    except OSError as exc:
        raise ImageError(f"{name}: cannot read ({exc.strerror}).") from None
    if os.path.isdir(path):
        raise ImageError(f"{name}: is a folder, not an image file.")
    if size == 0:
        raise ImageError(f"{name}: empty file (0 bytes), not an image. Replace or remove it.")
    try:
        with open(path, "rb") as handle:
            return _decode(handle, name, limits)
    except OSError as exc:
        raise ImageError(f"{name}: cannot read ({exc.strerror or exc}).") from None


def _decode(handle: BinaryIO, name: str, limits: _Limits) -> np.ndarray:
    with _open(handle, name, limits) as image, limits.gate(image.size):
        return _guarded(to_array, image, name)


def _open(handle: BinaryIO, name: str, limits: _Limits) -> Image.Image:
    """Read the header (formats of FORMATS only), set JPEG's DCT scale, check the sizes."""
    try:
        # Pillow raises DecompressionBombError past 2x MAX_IMAGE_PIXELS; between 1x and 2x
        # it only warns, and limits.check below refuses those. The process's warning
        # filters are left alone: swapping them would race between decoding threads.
        image = Image.open(handle, formats=PILLOW_FORMATS)
    except UnidentifiedImageError:
        raise ImageError(
            f"{name}: not an image this runtime decodes (another format, or damaged). "
            f"Use {FORMATS_TEXT}."
        ) from None
    except (Image.DecompressionBombWarning, Image.DecompressionBombError) as exc:
        pixels = str(exc).split(" pixels")[0].removeprefix("Image size (")
        raise ImageError(_bomb_message(name, f"{pixels} pixels")) from None
    except Exception as exc:  # Pillow raises many types for damaged headers
        raise ImageError(f"{name}: broken image header ({_reason(exc)}).") from None
    try:
        limits.check(image.size, name, budget=False)  # the file's own size: bomb limit
        image.draft(None, SIZE)  # JPEG (and MPO): only sets the DCT scale; others: no-op
        limits.check(image.size, name)
    except BaseException:
        image.close()
        raise
    return image


def _guarded(convert: Any, image: Image.Image, name: str) -> np.ndarray:
    try:
        return convert(image, name)
    except ImageError:
        raise
    except Exception as exc:  # truncated data surfaces here, when the pixels are decoded
        raise ImageError(
            f"{name}: broken or truncated image ({_reason(exc)}). Re-save or replace the file."
        ) from None


def _reason(exc: BaseException) -> str:
    """A library's error as `Type: first line`, cut short: never a dump in a one-line error."""
    return f"{type(exc).__name__}: {first_line(exc, limit=160)}"


def _bomb_message(name: str, found: str) -> str:
    return (
        f"{name}: refused as a possible decompression bomb: {found} exceeds "
        f"PIL.Image.MAX_IMAGE_PIXELS ({Image.MAX_IMAGE_PIXELS}). Shrink the image first."
    )
