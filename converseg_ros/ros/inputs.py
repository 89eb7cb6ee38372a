"""A camera's inputs: the image (or image/compressed), depth and camera_info subscriptions of one camera with
its own settings, and their callbacks — cheap checks only, never the model: a good frame goes into the
camera's frame slot, a bad one is counted there with the reason. The newest depth frame and intrinsics are
kept in a :class:`DepthInput` the outputs read."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from sensor_msgs.msg import CameraInfo, CompressedImage, Image

from converseg_ros.errors import ImageError
from converseg_ros.ros.matched_input import MatchedInput
from converseg_ros.ros.msgs import conversions as conv
from converseg_ros.ros.msgs.depth import Intrinsics
from converseg_ros.ros.msgs.image_input import check_compressed, check_image
from converseg_ros.serving.frame_slot import LatestSlot


def camera_topic(camera: str, name: str) -> str:
    """``name`` under the camera's namespace: ``head/image``; the unnamed camera ("") keeps ``image``."""
    return f"{camera}/{name}" if camera else name


class DepthInput:
    """The newest depth frame (with its stamp) and intrinsics of one camera."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._depth: tuple[Any, int] | None = None
        self._intrinsics: Intrinsics | None = None

    def put_depth(self, msg: Any, stamp_ns: int) -> None:
        with self._lock:
            self._depth = (msg, stamp_ns)

    def put_intrinsics(self, intrinsics: Intrinsics | None) -> None:
        with self._lock:
            self._intrinsics = intrinsics

    def latest(self) -> tuple[tuple[Any, int] | None, Intrinsics | None]:
        """(depth message, stamp ns) and intrinsics, each None until received."""
        with self._lock:
            return self._depth, self._intrinsics

    def clear(self) -> None:
        with self._lock:
            self._depth, self._intrinsics = None, None


class CameraInputs:
    """The input subscriptions of one camera (created at activation, destroyed at deactivation)."""

    def __init__(
        self,
        node: Any,
        camera: Any,  # CameraConfig: its name and own settings
        slot: LatestSlot,
        depth: DepthInput,
        node_cfg: Any,  # NodeConfig: max_image_pixels, use_cv_bridge
        group: Any,
        log: Callable[[str, bool], None],  # (text, is_warning); warnings are throttled by the caller
    ) -> None:
        self._node, self._camera, self._slot, self._depth = node, camera, slot, depth
        self._cfg, self._log = node_cfg, log
        self.label = f"camera {camera.name}" if camera.name else "camera"

        def matched(msg_type: Any, name: str, callback: Callable[[Any], None], depth_: int = 1) -> MatchedInput:
            return MatchedInput(
                node, msg_type, camera_topic(camera.name, name), callback, camera.image_reliability, depth_,
                group, lambda text: log(text, False),
            )

        kind, name = (CompressedImage, "image/compressed") if camera.use_compressed else (Image, "image")
        self.inputs = [matched(kind, name, self._on_image, camera.image_depth)]
        if camera.use_depth:
            self.inputs += [matched(Image, "depth", self._on_depth), matched(CameraInfo, "camera_info", self._on_info)]

    @property
    def image_topic(self) -> str:
        """The resolved image topic."""
        return self.inputs[0].topic

    @property
    def lost(self) -> int:
        """Image messages the middleware reported lost (never complete here)."""
        return self.inputs[0].lost

    @property
    def reliability(self) -> str:
        """What the image subscription uses now."""
        return self.inputs[0].reliability

    def refresh(self) -> None:
        """Follow the publishers' reliability (``image_reliability: auto``)."""
        for matched in self.inputs:
            matched.refresh()

    def destroy(self) -> None:
        """Unsubscribe."""
        for matched in self.inputs:
            matched.destroy()
        self.inputs = []

    def _on_image(self, msg: Image | CompressedImage) -> None:
        """Store the frame if it can be decoded (cheap checks, no decoding); count and log it otherwise."""
        try:
            if isinstance(msg, CompressedImage):
                check_compressed(msg)
            else:
                check_image(msg, self._cfg.use_cv_bridge, self._cfg.max_image_pixels)
        except ImageError as exc:
            self._slot.reject(str(exc))
            where = f" ({self.label})" if self._camera.name else ""
            self._log(f"camera frame rejected{where}: {exc}", True)
            return
        now = self._node.get_clock().now().nanoseconds
        self._slot.put(msg, conv.stamp_ns(msg.header.stamp), now)

    def _on_depth(self, msg: Image) -> None:
        self._depth.put_depth(msg, conv.stamp_ns(msg.header.stamp) or self._node.get_clock().now().nanoseconds)

    def _on_info(self, msg: CameraInfo) -> None:
        self._depth.put_intrinsics(Intrinsics.from_camera_info(msg))
