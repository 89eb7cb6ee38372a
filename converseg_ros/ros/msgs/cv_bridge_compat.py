"""Optional cv_bridge: used only when it imports cleanly (NumPy-1 builds break under NumPy 2)."""

from __future__ import annotations

from typing import Any

import numpy as np

from converseg_ros.ros.msgs.image_codec import ENCODINGS, ImageCodecError

_bridge: Any = None
_import_error: str | None = None
_tried = False


def get_bridge() -> Any | None:
    """A CvBridge instance, or None when cv_bridge is missing or broken (see unavailable_reason)."""
    global _bridge, _import_error, _tried
    if not _tried:
        _tried = True
        try:  # any Exception: a cv_bridge compiled for NumPy 1 raises AttributeError/ImportError chains
            from cv_bridge import CvBridge

            _bridge = CvBridge()
        except Exception as exc:  # noqa: BLE001 - any failure means "no cv_bridge"
            _import_error = f"{type(exc).__name__}: {exc}"
    return _bridge


def unavailable_reason() -> str | None:
    """Why cv_bridge is not used (None when it is available)."""
    get_bridge()
    return _import_error


def wants_bridge(encoding: str, policy: str) -> bool:
    """Whether ``encoding`` should be decoded by cv_bridge under ``policy`` (auto / never / always)."""
    if policy == "never":
        return False
    if policy == "always":
        return True
    return encoding not in ENCODINGS


def unsupported_message(encoding: str) -> str:
    """Why ``encoding`` cannot be decoded while cv_bridge is unavailable."""
    return (
        f"unsupported image encoding {encoding!r} (cv_bridge unavailable: {_import_error}); "
        f"supported without it: {', '.join(ENCODINGS)}"
    )


def bridge_to_rgb8(msg: Any) -> np.ndarray:
    """Decode any encoding cv_bridge knows (Bayer, YUV, 16-bit colour, ...) to HxWx3 uint8 RGB."""
    bridge = get_bridge()
    if bridge is None:
        raise ImageCodecError(unsupported_message(msg.encoding))
    try:
        rgb = bridge.imgmsg_to_cv2(msg, desired_encoding="rgb8")
    except Exception as exc:
        raise ImageCodecError(f"cv_bridge could not convert {msg.encoding!r}: {exc}") from exc
    return np.array(rgb, dtype=np.uint8, copy=True, order="C")
