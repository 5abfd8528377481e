"""Odd but valid image files, and broken ones, built in memory for the runtime tests.

(The module name is unique across tests/ because pytest puts every test folder on
sys.path, and a second `helpers.py` elsewhere would shadow this one.)
"""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
from PIL import Image

RED, BLUE, WHITE = (255, 0, 0), (0, 0, 255), (255, 255, 255)
ORIENTATION = 0x0112


def encode(image: Image.Image, fmt: str = "PNG", **params: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **params)
    return buffer.getvalue()


def gradient(width: int = 32, height: int = 32) -> np.ndarray:
    """A deterministic RGB image with different values in every channel."""
    y, x = np.mgrid[0:height, 0:width]
    r = (x * 255 // max(width - 1, 1)).astype(np.uint8)
    g = (y * 255 // max(height - 1, 1)).astype(np.uint8)
    b = ((x + y) * 255 // max(width + height - 2, 1)).astype(np.uint8)
    return np.stack([r, g, b], axis=-1)


def left_red_right_blue(width: int = 64, height: int = 32) -> Image.Image:
    image = Image.new("RGB", (width, height), BLUE)
    image.paste(RED, (0, 0, width // 2, height))
    return image


def exif_rotated_jpeg() -> bytes:
    """A landscape image tagged orientation 6: viewers rotate it 90 degrees clockwise,
    which puts its left (red) half on top."""
    exif = Image.Exif()
    exif[ORIENTATION] = 6
    return encode(left_red_right_blue(), "JPEG", quality=95, exif=exif.tobytes())


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height; only the header is needed to refuse it."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 64)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def odd_images() -> dict[str, bytes]:
    """Valid files in every awkward mode/format the decoder must turn into RGB."""
    rgb = Image.fromarray(gradient())
    palette_transparent = Image.new("P", (32, 32), 0)
    palette_transparent.putpalette([255, 0, 0, 0, 255, 0] + [0] * 762)
    palette_transparent.paste(1, (0, 0, 16, 32))
    sixteen = (np.arange(32 * 32, dtype=np.uint32).reshape(32, 32) * 64).astype(np.uint16)
    frames = [Image.new("P", (32, 32), i) for i in range(3)]
    return {
        "rgb.png": encode(rgb),
        "grey_L.png": encode(rgb.convert("L")),
        "grey_alpha_LA.png": encode(Image.new("LA", (32, 32), (100, 0))),
        "palette_P.png": encode(rgb.convert("P")),
        "palette_transparent_P.png": encode(palette_transparent, transparency=0),
        "rgba_half_transparent.png": encode(Image.new("RGBA", (32, 32), (255, 0, 0, 128))),
        "cmyk.jpg": encode(Image.new("CMYK", (32, 32), (0, 0, 0, 0)), "JPEG", quality=95),
        "sixteen_bit_I16.png": encode(Image.fromarray(sixteen)),
        "int32_I.tiff": encode(Image.fromarray(sixteen.astype(np.int32)), "TIFF"),
        "float_F.tiff": encode(Image.fromarray(np.full((32, 32), 300.0, np.float32)), "TIFF"),
        "bilevel_1.png": encode(rgb.convert("1")),
        "grey.jpg": encode(rgb.convert("L"), "JPEG"),
        "exif_rotated.jpg": exif_rotated_jpeg(),
        "wide.png": encode(Image.fromarray(gradient(300, 10))),
        "tiny_1x1.png": encode(Image.new("RGB", (1, 1), RED)),
        "animated.gif": encode(frames[0], "GIF", save_all=True, append_images=frames[1:]),
        "photo.webp": encode(rgb, "WEBP", lossless=True),
        "photo.bmp": encode(rgb, "BMP"),
    }


def broken_files() -> dict[str, bytes]:
    """Files that must each give an ImageError naming them, never a crash."""
    png = encode(Image.fromarray(gradient(64, 64)))
    jpeg = encode(Image.fromarray(gradient(256, 256)), "JPEG", quality=90)
    return {
        "empty.png": b"",
        "text.png": b"this is not an image, just text\n",
        "truncated.png": png[: len(png) // 2],
        "truncated.jpg": jpeg[: len(jpeg) // 2],
        # 10000x10000 = 1e8 pixels: over MAX_IMAGE_PIXELS, where Pillow only warns.
        "bomb_warning_range.png": png_header_only(10_000, 10_000),
        # 100000x100000: over twice the limit, where Pillow raises on its own.
        "bomb_error_range.png": png_header_only(100_000, 100_000),
    }
