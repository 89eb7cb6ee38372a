"""Mask decoding, polygon rasterisation and the training-time mask processing (binarise + erode)."""

from __future__ import annotations

import io
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

from converseg_ros.errors import ConverSegError

Polygon = list[tuple[float, float]]


class MaskError(ConverSegError, ValueError):
    """A mask file is missing, unreadable or does not match its image."""


def read_mask(source: str | Path | bytes) -> np.ndarray:
    """Decode a mask file (or its bytes) to a bool array: alpha channel if RGBA/LA, else grayscale > 0."""
    name = "<bytes>" if isinstance(source, bytes) else str(source)
    if not isinstance(source, bytes):
        try:
            source = Path(source).read_bytes()
        except OSError as exc:
            raise MaskError(f"cannot open mask {name}: {exc.strerror}") from exc
    try:
        img = Image.open(io.BytesIO(source))
        img.load()
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        reason = "not a recognised image format" if isinstance(exc, UnidentifiedImageError) else str(exc)
        raise MaskError(f"corrupt or unsupported mask {name}: {reason}") from exc
    if img.mode in ("RGBA", "LA", "PA"):
        arr = np.asarray(img.getchannel("A"))
    elif img.mode in ("I", "I;16", "F", "1", "L"):
        arr = np.asarray(img)
    else:
        arr = np.asarray(img.convert("L"))
    return arr > 0


def rasterize_polygons(polygons: list[Polygon], height: int, width: int) -> np.ndarray:
    """Fill polygons given in pixel coordinates (x, y) into a bool mask of shape (height, width)."""
    canvas = np.zeros((height, width), np.uint8)
    for poly in polygons:
        pts = np.round(np.asarray(poly, np.float64)).astype(np.int32).reshape(-1, 1, 2)
        if len(pts) >= 3:
            cv2.fillPoly(canvas, [pts], 1)
    return canvas.astype(bool)


def erode(mask: np.ndarray, kernel: int, iterations: int) -> np.ndarray:
    """Binary erosion with an all-ones ``kernel``×``kernel`` square (the paper: 5×5, one iteration)."""
    if kernel <= 1 or iterations <= 0:
        return mask.astype(bool)
    out = cv2.erode(mask.astype(np.uint8), np.ones((kernel, kernel), np.uint8), iterations=iterations)
    return out.astype(bool)


def check_same_size(mask: np.ndarray, image_hw: tuple[int, int], item_id: str) -> None:
    """Raise MaskError when a mask's size differs from its image's size."""
    if mask.shape[:2] != tuple(image_hw):
        raise MaskError(
            f"item {item_id}: mask is {mask.shape[1]}x{mask.shape[0]} "
            f"but image is {image_hw[1]}x{image_hw[0]}"
        )
