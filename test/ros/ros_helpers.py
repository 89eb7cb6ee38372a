"""Small helpers for the node tests: image messages, collecting messages, waiting, service calls, and the
harness that talks to one converseg_node (imported by the tests by this module's own name)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from rclpy.node import Node
from sensor_msgs.msg import Image
from std_msgs.msg import String
from std_srvs.srv import SetBool, Trigger

from converseg_ros.msg import SegmentationQuery, SegmentationResult
from converseg_ros.ros.compat import publisher_count
from converseg_ros.ros.msgs import qos
from converseg_ros.ros.msgs.image_codec import decode, encode
from converseg_ros.srv import Segment


def photo(width: int = 160, name: str = "coffee") -> np.ndarray:
    """A photo bundled with scikit-image (coffee, chelsea, astronaut, ...), downscaled (RGB uint8)."""
    import cv2
    import skimage.data

    rgb = getattr(skimage.data, name)()
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


class Harness:
    """Publishers, subscribers and service clients of the test helper node ``ros``, talking to the
    converseg_node in namespace ``ns`` (camera frames default to ``rgb``)."""

    def __init__(self, ros: Node, ns: str, rgb: np.ndarray, overlay: bool = True) -> None:
        self.ros, self.ns, self.rgb = ros, ns, rgb
        self.image_pub = ros.create_publisher(Image, f"{ns}/image", qos.output_qos(1))
        self.query_pub = ros.create_publisher(SegmentationQuery, f"{ns}/query", qos.command_qos())
        self.text_pub = ros.create_publisher(String, f"{ns}/query_text", qos.command_qos())
        self.results = Collector(ros, SegmentationResult, f"{ns}/result")
        self.masks = Collector(ros, Image, f"{ns}/mask")
        self.overlays = Collector(ros, Image, f"{ns}/overlay", qos.output_qos(1)) if overlay else None
        self.diagnostics = Collector(ros, DiagnosticArray, "/diagnostics")
        self.segment = ros.create_client(Segment, f"{ns}/segment")
        self.enable = ros.create_client(SetBool, f"{ns}/enable")
        self.clear = ros.create_client(Trigger, f"{ns}/clear_query")
        spin_until(
            ros,
            lambda: (
                self.image_pub.get_subscription_count()
                and self.query_pub.get_subscription_count()
                and publisher_count(ros, self.results.sub)
            ),
            20.0,
        )
        # image_reliability: auto follows our reliable publisher (re-checked every second)
        spin_until(ros, lambda: self.diag("image_reliability") == "reliable", 10.0)

    def close(self) -> None:
        """Destroy every publisher, subscription and client (e.g. so the node sees no overlay subscriber)."""
        for pub in (self.image_pub, self.query_pub, self.text_pub):
            self.ros.destroy_publisher(pub)
        for col in (self.results, self.masks, self.overlays, self.diagnostics):
            if col is not None:
                self.ros.destroy_subscription(col.sub)
        for client in (self.segment, self.enable, self.clear):
            self.ros.destroy_client(client)

    def send_image(
        self, frame_id: str, age_s: float = 0.0, rgb: np.ndarray | None = None, encoding: str = "rgb8"
    ) -> Image:
        msg = image_msg(self.ros, self.rgb if rgb is None else rgb, frame_id, age_s, encoding)
        self.image_pub.publish(msg)  # once: the node follows this reliable publisher (image_reliability: auto)
        spin_for(self.ros, 0.1)
        return msg

    def send_query(self, qid: str, text: str, once: bool = False) -> None:
        msg = SegmentationQuery(id=qid, text=text, mode=SegmentationQuery.MODE_ONCE if once else 0)
        msg.header.stamp = self.ros.get_clock().now().to_msg()
        self.query_pub.publish(msg)

    def result_for(
        self,
        qid: str,
        timeout: float = 15.0,
        pred: Callable[[Any], bool] | None = None,
        step: Callable[[], None] | None = None,
    ) -> SegmentationResult | None:
        """First result for ``qid`` matching ``pred``; ``step`` runs between spins (e.g. to republish)."""
        ok = pred or (lambda r: True)
        found = lambda: next(iter(self.results.matching(lambda r: r.query_id == qid and ok(r))), None)  # noqa: E731
        return spin_until(self.ros, found, timeout, step)

    def statuses(self) -> list[DiagnosticStatus]:
        """This node's diagnostics statuses received so far (/diagnostics also carries other nodes')."""
        name = f"{self.ns}/converseg_node:"
        return [s for m in self.diagnostics.items for s in m.status if s.name.startswith(name)]

    def status(self, fresh: bool = False) -> DiagnosticStatus:
        """This node's latest diagnostics status (with ``fresh``: one published after this call)."""
        seen = len(self.statuses()) if fresh else 0
        got = spin_until(self.ros, lambda: len(self.statuses()) > seen, 5.0)
        assert got, f"no diagnostics from {self.ns}/converseg_node"
        return self.statuses()[-1]

    def diag_values(self, fresh: bool = False) -> dict[str, str]:
        """Key/values of :meth:`status`."""
        return {kv.key: kv.value for kv in self.status(fresh).values}

    def diag(self, key: str) -> str:
        return self.diag_values()[key]

    def fresh_diag(self, key: str) -> str:
        """``key`` from a diagnostics message published after this call."""
        return self.diag_values(fresh=True)[key]
