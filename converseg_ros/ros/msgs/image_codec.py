"""sensor_msgs/Image <-> numpy without cv_bridge (docs/ros.md "Images").

Decoding honours ``step`` row padding and ``is_bigendian`` and always returns a contiguous copy that owns its
memory (``np.frombuffer`` over a message's ``array.array`` shares memory with the message). Only the
encodings in :data:`ENCODINGS` are handled here; others go to cv_bridge when it imports cleanly
(:mod:`converseg_ros.ros.msgs.cv_bridge_compat`) or are refused with :class:`ImageCodecError`.
"""

from __future__ import annotations

import array
import sys
from dataclasses import dataclass
from typing import Any

import numpy as np

from converseg_ros.errors import ImageError

# encoding -> (numpy dtype without byte order, channels)
ENCODINGS: dict[str, tuple[str, int]] = {
    "rgb8": ("u1", 3),
    "bgr8": ("u1", 3),
    "rgba8": ("u1", 4),
    "bgra8": ("u1", 4),
    "mono8": ("u1", 1),
    "mono16": ("u2", 1),
    "8UC1": ("u1", 1),
    "16UC1": ("u2", 1),
    "32FC1": ("f4", 1),
}
COLOR_ENCODINGS = ("rgb8", "bgr8", "rgba8", "bgra8", "mono8", "mono16", "8UC1")
DEPTH_ENCODINGS = ("16UC1", "mono16", "32FC1")
DEFAULT_MAX_PIXELS = 4096 * 4096


class ImageCodecError(ImageError):
    """An image message that cannot be converted; the text names the reason and the message's fields."""


@dataclass(frozen=True)
class Layout:
    """What an encoding means in memory."""

    dtype: np.dtype
    channels: int


def layout(encoding: str, is_bigendian: bool = False) -> Layout:
    """Return the dtype (in the message's byte order) and channel count of ``encoding``."""
    if encoding not in ENCODINGS:
        raise ImageCodecError(f"unsupported image encoding {encoding!r}; supported: {', '.join(ENCODINGS)}")
    kind, channels = ENCODINGS[encoding]
    return Layout(np.dtype(kind).newbyteorder(">" if is_bigendian else "<"), channels)


def _describe(msg: Any) -> str:
    return (
        f"(encoding={msg.encoding!r}, {msg.width}x{msg.height}, step={msg.step}, "
        f"is_bigendian={int(msg.is_bigendian)}, {len(msg.data)} data bytes)"
    )


def check(msg: Any, max_pixels: int = DEFAULT_MAX_PIXELS) -> Layout:
    """The message's layout after checking it can be decoded, without touching its pixels (cheap).

    Raises ImageCodecError for unknown encodings, zero or oversized images, a ``step`` shorter than a row,
    or fewer than ``step * height`` data bytes.
    """
    lay = layout(msg.encoding, bool(msg.is_bigendian))
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    if height <= 0 or width <= 0:
        raise ImageCodecError(f"empty image {_describe(msg)}")
    if height * width > max_pixels:
        raise ImageCodecError(f"image larger than max_image_pixels={max_pixels} {_describe(msg)}")
    row = width * lay.channels * lay.dtype.itemsize
    if step < row:
        raise ImageCodecError(f"step shorter than a row of {row} bytes {_describe(msg)}")
    if len(msg.data) < step * height:
        raise ImageCodecError(f"truncated data, need step*height={step * height} bytes {_describe(msg)}")
    return lay


def decode(msg: Any, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Message -> array in its own encoding: (H, W) for one channel, (H, W, C) otherwise, native byte order.

    Raises ImageCodecError as :func:`check` does.
    """
    lay = check(msg, max_pixels)
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    row = width * lay.channels * lay.dtype.itemsize
    raw = _bytes_view(msg.data, step * height).reshape(height, step)[:, :row]
    pixels = np.array(raw, copy=True, order="C").view(lay.dtype)  # owns its memory, padding removed
    pixels = pixels.astype(lay.dtype.newbyteorder("="), copy=False)
    shape = (height, width) if lay.channels == 1 else (height, width, lay.channels)
    return pixels.reshape(shape)


def _bytes_view(data: Any, count: int) -> np.ndarray:
    """The first ``count`` bytes of a message's ``data`` (array.array, bytes, or a list) as uint8."""
    try:
        return np.frombuffer(data, dtype=np.uint8, count=count)
    except TypeError:
        return np.asarray(data[:count], dtype=np.uint8)


def check_colour(encoding: str) -> None:
    """Raise ImageCodecError for encodings that hold measurements, not colours (depth)."""
    if encoding in ("16UC1", "32FC1"):
        raise ImageCodecError(f"{encoding} is a depth/measurement encoding, not a colour image")


def to_rgb8(image: np.ndarray, encoding: str) -> np.ndarray:
    """Array decoded from ``encoding`` -> contiguous HxWx3 uint8 RGB (the engine's input)."""
    check_colour(encoding)
    if encoding == "mono16":
        image = ((image.astype(np.uint32) + 128) // 257).astype(np.uint8)
    if image.ndim == 2:
        return np.ascontiguousarray(np.repeat(image[:, :, None], 3, axis=2))
    if encoding.startswith("bgr"):
        image = image[:, :, 2::-1]
    return np.ascontiguousarray(image[:, :, :3])


def to_depth_m(image: np.ndarray, encoding: str, depth_scale: float) -> np.ndarray:
    """Decoded depth image -> float32 metres; 0 and non-finite values become NaN (no reading)."""
    if encoding not in DEPTH_ENCODINGS:
        raise ImageCodecError(f"depth images must be one of {DEPTH_ENCODINGS}, got {encoding!r}")
    depth = image.astype(np.float32)
    if encoding != "32FC1":
        depth *= np.float32(depth_scale)
    depth[~np.isfinite(depth) | (depth <= 0)] = np.nan
    return depth


def encode(image: np.ndarray, encoding: str, msg: Any, header: Any | None = None) -> Any:
    """Fill ``msg`` (a sensor_msgs/Image) from ``image`` in ``encoding``; tight rows, native byte order."""
    lay = layout(encoding, sys.byteorder == "big")
    expected = 2 if lay.channels == 1 else 3
    if image.ndim != expected or (lay.channels > 1 and image.shape[2] != lay.channels):
        raise ImageCodecError(f"array of shape {image.shape} does not fit encoding {encoding!r}")
    data = np.ascontiguousarray(image, dtype=lay.dtype.newbyteorder("="))
    if header is not None:
        msg.header = header
    msg.height, msg.width = int(data.shape[0]), int(data.shape[1])
    msg.encoding = encoding
    msg.is_bigendian = int(sys.byteorder == "big")
    msg.step = msg.width * lay.channels * lay.dtype.itemsize
    msg.data = array.array("B", data.tobytes())  # array.array('B') takes the setter's fast path
    return msg


def encode_mask(mask: np.ndarray, msg: Any, header: Any | None = None) -> Any:
    """Boolean (or 0/1) HxW mask -> mono8 0/255 message with ``header``."""
    return encode(np.where(np.asarray(mask, dtype=bool), np.uint8(255), np.uint8(0)), "mono8", msg, header)
