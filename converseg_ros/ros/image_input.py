"""Incoming camera messages (Image, CompressedImage, depth) -> numpy arrays the engine accepts."""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from converseg_ros.ros import cv_bridge_compat
from converseg_ros.ros.image_codec import (
    DEFAULT_MAX_PIXELS,
    ImageCodecError,
    decode,
    to_depth_m,
    to_rgb8,
)

MAX_COMPRESSED_BYTES = 64 * 1024 * 1024


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
    size = len(msg.data)
    if size == 0:
        raise ImageCodecError(f"empty compressed image (format={msg.format!r})")
    if size > MAX_COMPRESSED_BYTES:
        raise ImageCodecError(f"compressed image of {size} bytes exceeds {MAX_COMPRESSED_BYTES}")
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
