"""Image decoding, validation and the square-input geometry (letterbox or squash) shared by SAM2 and
post-processing.

Every image is decoded once (EXIF orientation applied once) and both model branches see those pixels.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from converseg_ros.errors import ImageError

MAX_SIDE = 8192  # pixels; larger frames are refused (bounded memory and Qwen token count)
MAX_PIXELS = 40_000_000
MAX_ASPECT = 200  # Qwen's smart_resize refuses more extreme aspect ratios
MAX_FILE_BYTES = 200 * 1024 * 1024
# How an image becomes SAM2's square input: letterbox (the authors' demo.py and train.py) or squash
# (their eval.py, the benchmark script: stretched to the square, aspect ratio not kept).
PREPROCESSING = ("letterbox", "squash")


@dataclass(frozen=True)
class LetterboxGeometry:
    """Where an H x W image sits inside the square letterbox of side ``size``."""

    height: int
    width: int
    size: int
    new_height: int
    new_width: int
    top: int
    left: int


def letterbox_geometry(height: int, width: int, size: int) -> LetterboxGeometry:
    """Scale the longer side to ``size`` (Python round, as the reference) and centre the result."""
    scale = size / max(height, width)
    new_w = max(1, round(width * scale))
    new_h = max(1, round(height * scale))
    return LetterboxGeometry(height, width, size, new_h, new_w, (size - new_h) // 2, (size - new_w) // 2)


@dataclass(frozen=True)
class SquashGeometry:
    """An H x W image stretched to fill the square of side ``size`` (no padding, no crop)."""

    height: int
    width: int
    size: int


SquareGeometry = LetterboxGeometry | SquashGeometry


def to_square(rgb: np.ndarray, preprocess: str, size: int) -> tuple[np.ndarray, SquareGeometry]:
    """The pixels handed to SAM2's transform and where the image sits in its ``size`` x ``size`` input.

    ``letterbox`` scales and pads here. ``squash`` passes the pixels on unchanged: SAM2's transform
    resizes any image to the square itself (``to_sam_pixels``), as ``SAM2ImagePredictor.set_image`` does.
    """
    if preprocess == "letterbox":
        return letterbox(rgb, size)
    if preprocess == "squash":
        return rgb, SquashGeometry(rgb.shape[0], rgb.shape[1], size)
    raise ValueError(f"preprocess must be one of {PREPROCESSING}, got {preprocess!r}")


def letterbox(rgb: np.ndarray, size: int) -> tuple[np.ndarray, LetterboxGeometry]:
    """Resize (INTER_AREA when shrinking, INTER_LINEAR otherwise) and pad with black to size x size."""
    geo = letterbox_geometry(rgb.shape[0], rgb.shape[1], size)
    shrinking = size / max(rgb.shape[:2]) < 1
    interpolation = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
    resized = cv2.resize(rgb, (geo.new_width, geo.new_height), interpolation=interpolation)
    canvas = np.zeros((size, size) + rgb.shape[2:], dtype=rgb.dtype)
    canvas[geo.top : geo.top + geo.new_height, geo.left : geo.left + geo.new_width] = resized
    return canvas, geo


def check_size(height: int, width: int) -> None:
    """Refuse empty, huge or extremely elongated images with a clear message."""
    if height < 1 or width < 1:
        raise ImageError(f"image is empty ({width}x{height})")
    if max(height, width) > MAX_SIDE or height * width > MAX_PIXELS:
        raise ImageError(
            f"image {width}x{height} is too large (max side {MAX_SIDE}, max {MAX_PIXELS} pixels)"
        )
    if max(height, width) / min(height, width) > MAX_ASPECT:
        raise ImageError(f"image {width}x{height} has an aspect ratio above {MAX_ASPECT}")


def as_rgb(array: np.ndarray) -> np.ndarray:
    """Validate an array image and return contiguous H x W x 3 uint8 RGB.

    Accepts gray (H x W or H x W x 1), RGB and RGBA (alpha dropped, as PIL's convert("RGB")), in uint8
    or uint16 (scaled to 8 bits); anything else raises ImageError.
    """
    if not isinstance(array, np.ndarray):
        raise ImageError(f"expected a numpy array, got {type(array).__name__}")
    if array.ndim == 2:
        array = array[:, :, None]
    if array.ndim != 3 or array.shape[2] not in (1, 3, 4):
        raise ImageError(f"unsupported image shape {array.shape} (want HxW, HxWx1, HxWx3 or HxWx4)")
    check_size(array.shape[0], array.shape[1])
    if array.dtype == np.uint16:
        array = (array.astype(np.uint32) * 255 + 32767) // 65535
    elif array.dtype != np.uint8:
        raise ImageError(f"unsupported pixel type {array.dtype} (want uint8 or uint16)")
    array = array.astype(np.uint8, copy=False)
    if array.shape[2] == 1:
        array = np.repeat(array, 3, axis=2)
    return np.ascontiguousarray(array[:, :, :3])


def decode_image(source: str | Path | bytes) -> np.ndarray:
    """Decode a file path or encoded bytes to RGB uint8, applying EXIF orientation once."""
    try:
        if isinstance(source, (bytes, bytearray)):
            if len(source) > MAX_FILE_BYTES:
                raise ImageError(f"encoded image of {len(source)} bytes exceeds {MAX_FILE_BYTES}")
            image = Image.open(io.BytesIO(source))
        else:
            path = Path(source)
            if not path.is_file():
                raise ImageError(f"{path}: image file not found")
            image = Image.open(path)
        check_size(image.height, image.width)  # before decoding pixels (decompression bombs)
        image = ImageOps.exif_transpose(image)
        return _pil_to_rgb(image)
    except (UnidentifiedImageError, OSError, SyntaxError, Image.DecompressionBombError) as err:
        name = "image bytes" if isinstance(source, (bytes, bytearray)) else str(source)
        raise ImageError(f"{name}: cannot decode image ({err})") from err


def _pil_to_rgb(image: Image.Image) -> np.ndarray:
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        data = np.asarray(image)
        if data.dtype != np.uint16:
            if data.min() < 0 or data.max() > 65535:
                raise ImageError(f"unsupported {image.mode} image with values outside 0..65535")
            data = data.astype(np.uint16)
        return as_rgb(data)
    if image.mode == "F":
        raise ImageError("floating-point images are not supported; convert to 8 or 16 bits")
    image.info.pop("icc_profile", None)
    return as_rgb(np.array(image.convert("RGB")))
