"""Small helpers for the node tests: image messages, collecting messages, waiting, service calls."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np
import rclpy
from rclpy.node import Node
from sensor_msgs.msg import Image

from converseg_ros.ros import qos
from converseg_ros.ros.image_codec import decode, encode


def photo(width: int = 160) -> np.ndarray:
    """The coffee photo, downscaled (RGB uint8)."""
    import cv2
    import skimage.data

    rgb = skimage.data.coffee()
    h = round(rgb.shape[0] * width / rgb.shape[1])
    return np.ascontiguousarray(cv2.resize(rgb, (width, h), interpolation=cv2.INTER_AREA))


def image_msg(
    node: Node, rgb: np.ndarray, frame_id: str, age_s: float = 0.0, encoding: str = "rgb8"
) -> Image:
    """An image message stamped now (minus ``age_s``) with ``frame_id``."""
    msg = encode(rgb[:, :, ::-1] if encoding == "bgr8" else rgb, encoding, Image())
    now = node.get_clock().now().nanoseconds - int(age_s * 1e9)
    msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(now, 1_000_000_000)
    msg.header.frame_id = frame_id
    return msg


class Collector:
    """Subscribes and keeps every message."""

    def __init__(self, node: Node, msg_type: Any, topic: str, qos_profile: Any = None) -> None:
        self.items: list[Any] = []
        self.sub = node.create_subscription(
            msg_type, topic, self.items.append, qos_profile or qos.output_qos()
        )

    def matching(self, pred: Callable[[Any], bool]) -> list[Any]:
        return [m for m in self.items if pred(m)]


def spin_until(
    node: Node, pred: Callable[[], Any], timeout: float, step: Callable[[], None] | None = None
) -> Any:
    """Spin ``node`` until ``pred()`` is truthy (returns its value) or ``timeout`` passes (returns None)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = pred()
        if value:
            return value
        if step is not None:
            step()
        rclpy.spin_once(node, timeout_sec=0.05)
    return pred() or None


def spin_for(node: Node, seconds: float) -> None:
    """Spin ``node`` for ``seconds``."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        rclpy.spin_once(node, timeout_sec=0.05)


def call(node: Node, client: Any, request: Any, timeout: float = 30.0) -> Any:
    """Call a service and wait for its response."""
    assert client.wait_for_service(timeout_sec=10.0), f"service {client.srv_name} unavailable"
    future = client.call_async(request)
    rclpy.spin_until_future_complete(node, future, timeout_sec=timeout)
    assert future.done(), f"no response from {client.srv_name} within {timeout} s"
    return future.result()


def same_header(a: Any, b: Any) -> bool:
    """Stamps and frame ids equal."""
    return (a.stamp.sec, a.stamp.nanosec, a.frame_id) == (b.stamp.sec, b.stamp.nanosec, b.frame_id)


def check_mask(mask: Image, width: int, height: int, header: Any) -> np.ndarray:
    """Assert a full mono8 0/255 mask of the given size and header; return it as a bool array."""
    assert (mask.encoding, mask.width, mask.height, mask.step) == ("mono8", width, height, width)
    assert same_header(mask.header, header)
    pixels = decode(mask)
    assert set(np.unique(pixels)) <= {0, 255}
    return pixels == 255
