"""Incoming camera messages (Image, CompressedImage, depth) -> numpy arrays the engine accepts."""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from converseg_ros.ros.msgs import cv_bridge_compat
from converseg_ros.ros.msgs.image_codec import (
    DEFAULT_MAX_PIXELS,
    ImageCodecError,
    check,
    check_colour,
    decode,
    to_depth_m,
    to_rgb8,
)

MAX_COMPRESSED_BYTES = 64 * 1024 * 1024
# Leading bytes of the formats OpenCV decodes here (image_transport's compressed plugin sends JPEG or PNG).
IMAGE_MAGIC = {
    b"\xff\xd8\xff": "jpeg",
    b"\x89PNG\r\n\x1a\n": "png",
    b"BM": "bmp",
    b"II*\x00": "tiff",
    b"MM\x00*": "tiff",
    b"RIFF": "webp",
}


def check_image(msg: Any, cv_bridge_policy: str = "auto", max_pixels: int = DEFAULT_MAX_PIXELS) -> None:
    """Raise ImageCodecError unless :func:`image_to_rgb8` can decode ``msg``; reads no pixels (cheap)."""
    if not cv_bridge_compat.wants_bridge(msg.encoding, cv_bridge_policy):
        check(msg, max_pixels)
        check_colour(msg.encoding)
        return
    if cv_bridge_compat.get_bridge() is None:
        raise ImageCodecError(cv_bridge_compat.unsupported_message(msg.encoding))
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    if height <= 0 or width <= 0 or step <= 0:
        raise ImageCodecError(f"empty image (encoding={msg.encoding!r}, {width}x{height}, step={step})")
    if height * width > max_pixels:
        raise ImageCodecError(f"image larger than max_image_pixels={max_pixels}")
    if len(msg.data) < step * height:
        raise ImageCodecError(
            f"truncated data, need step*height={step * height} bytes, got {len(msg.data)} "
            f"(encoding={msg.encoding!r})"
        )


def check_compressed(msg: Any) -> None:
    """Raise ImageCodecError unless ``msg`` looks like a colour image OpenCV decodes (size, format, magic)."""
    size = len(msg.data)
    if size == 0:
        raise ImageCodecError(f"empty compressed image (format={msg.format!r})")
    if size > MAX_COMPRESSED_BYTES:
        raise ImageCodecError(f"compressed image of {size} bytes exceeds {MAX_COMPRESSED_BYTES}")
    if "compresseddepth" in msg.format.lower():
        raise ImageCodecError(f"a compressedDepth image is not a colour image (format={msg.format!r})")
    head = bytes(msg.data[:8])
    if not any(head.startswith(magic) for magic in IMAGE_MAGIC):
        raise ImageCodecError(
            f"compressed data is not {'/'.join(sorted(set(IMAGE_MAGIC.values())))} "
            f"(format={msg.format!r}, first bytes {head.hex()})"
        )


def image_to_rgb8(
    msg: Any, cv_bridge_policy: str = "auto", max_pixels: int = DEFAULT_MAX_PIXELS
) -> np.ndarray:
    """sensor_msgs/Image -> HxWx3 uint8 RGB copy; raises ImageCodecError with a clear reason."""
    if cv_bridge_compat.wants_bridge(msg.encoding, cv_bridge_policy):
        if int(msg.height) * int(msg.width) > max_pixels:
            raise ImageCodecError(f"image larger than max_image_pixels={max_pixels}")
        return cv_bridge_compat.bridge_to_rgb8(msg)
    return to_rgb8(decode(msg, max_pixels), msg.encoding)


def compressed_to_rgb8(msg: Any, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """sensor_msgs/CompressedImage (JPEG, PNG, ...) -> HxWx3 uint8 RGB."""
    check_compressed(msg)
    size = len(msg.data)
    buf = (
        np.frombuffer(msg.data, dtype=np.uint8)
        if not isinstance(msg.data, list)
        else np.asarray(msg.data, dtype=np.uint8)
    )
    bgr = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    if bgr is None:
        raise ImageCodecError(f"could not decode compressed image (format={msg.format!r}, {size} bytes)")
    if bgr.shape[0] * bgr.shape[1] > max_pixels:
        raise ImageCodecError(f"image larger than max_image_pixels={max_pixels}")
    return np.ascontiguousarray(bgr[:, :, ::-1])


def depth_to_m(msg: Any, depth_scale: float, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Depth image (16UC1/mono16 in units of ``depth_scale`` metres, or 32FC1 metres) -> float32 metres."""
    return to_depth_m(decode(msg, max_pixels), msg.encoding, depth_scale)
