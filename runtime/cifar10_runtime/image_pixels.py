"""Pixels to the model's input: a decoded image or an HWC array as uint8 [32,32,3] RGB.

Steps 3-5 of cifar10_runtime.images: the EXIF orientation is applied; every mode becomes RGB
(transparency composited over white, 16-bit samples scaled to 8 bits, float samples clipped);
the image is resized to exactly 32x32 with RESAMPLE. Failures raise ImageError naming the
image.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageOps

from cifar10_runtime.errors import ImageError

SIZE = (32, 32)
RESAMPLE = Image.Resampling.BILINEAR
BACKGROUND = (255, 255, 255)
_ORIENTATION_TAG = 0x0112
_TRANSPARENT_MODES = {"RGBA", "LA", "PA", "RGBa", "La"}


def to_array(image: Image.Image, name: str) -> np.ndarray:
    if image.getexif().get(_ORIENTATION_TAG, 1) not in (0, 1):
        image = ImageOps.exif_transpose(image)
    image = _to_rgb(image)
    if image.size != SIZE:
        image = image.resize(SIZE, RESAMPLE)
    array = np.asarray(image, dtype=np.uint8)
    if array.shape != (*SIZE, 3):  # a Pillow mode this module does not know about
        raise ImageError(f"{name}: decoded to shape {array.shape}, expected (32, 32, 3).")
    return array


def _to_rgb(image: Image.Image) -> Image.Image:
    mode = image.mode
    transparent = "transparency" in image.info
    if mode == "RGB" and not transparent:
        image.load()
        return image
    if mode in _TRANSPARENT_MODES or (transparent and mode in ("P", "L", "RGB")):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (*BACKGROUND, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if mode.startswith("I;16") or mode == "I":
        # Pillow's own I -> L conversion clips at 255, which turns most 16-bit images white.
        samples = np.asarray(image).astype(np.int64)
        eight_bit = (np.clip(samples, 0, 65535) >> 8).astype(np.uint8)
        return Image.fromarray(eight_bit).convert("RGB")
    if mode == "F":
        samples = np.nan_to_num(np.asarray(image, dtype=np.float32))
        return Image.fromarray(np.clip(samples, 0, 255).astype(np.uint8)).convert("RGB")
    return image.convert("RGB")


def from_array(array: np.ndarray, name: str) -> np.ndarray:
    if array.dtype != np.uint8:
        raise ImageError(
            f"{name}: arrays must be uint8 HxWx3 RGB. Received: {array.dtype} {array.shape}. "
            "For floats in [0,1] use (x * 255).round().astype(np.uint8)."
        )
    if array.shape == (*SIZE, 3):
        return array
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.ndim == 4 and array.shape[1:] == (*SIZE, 3):
        raise ImageError(
            f"{name}: got a batch {array.shape}, not one image. "
            "Use predict_batch() or predict_array() for [N,32,32,3]."
        )
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (3, 4)):
        raise ImageError(
            f"{name}: array shape {array.shape} is not an HWC image. Received: {array.shape}; "
            "needed HxWx3 (RGB), HxWx4 (RGBA), HxWx1 or HxW (grey), uint8."
        )
    if min(array.shape[:2]) == 0:
        raise ImageError(f"{name}: array shape {array.shape} has no pixels.")
    return to_array(Image.fromarray(np.ascontiguousarray(array)), name)
