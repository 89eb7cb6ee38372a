"""The camera host of the two-host test (run inside its network namespace): for each case, a camera publisher
with a driver's QoS sends raw rgb8 frames to ``<node namespace>/<case>/image``, then reads from the node's
/diagnostics how many the node's callback took (``frames_received``) and how many the middleware reported
lost, never complete at the node (``frames_lost_in_transport``). One JSON line per case on stdout.
Delivered = published - lost. A loss is noticed when a later frame arrives, so the count includes
``TRAILER`` extra frames that reveal losses among the last ones.

    python two_host_camera.py /ns case:reliability:width:height:hz:count [...]

reliability ``reliable`` = rclcpp's default (reliable, keep last 10), ``best_effort`` = the sensor-data QoS
(best effort, keep last 5): what camera drivers use.
"""

from __future__ import annotations

import json
import sys
import time

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image

WAIT_S = 90.0  # for the node (started at the same time) to come up and match the publisher
TRAILER = 3


def main(namespace: str, cases: list[str]) -> int:
    rclpy.init()
    node = rclpy.create_node("two_host_camera")
    counts: dict[str, dict[str, str]] = {}

    def on_diagnostics(msg: DiagnosticArray) -> None:
        for status in msg.status:
            if status.name.startswith(f"{namespace}/converseg_node: camera "):
                counts[status.name.rsplit(" ", 1)[1]] = {kv.key: kv.value for kv in status.values}

    node.create_subscription(DiagnosticArray, "/diagnostics", on_diagnostics, 10)

    def spin_until(pred, timeout: float) -> bool:  # noqa: ANN001
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if pred():
                return True
            rclpy.spin_once(node, timeout_sec=0.05)
        return bool(pred())

    for case in cases:
        name, reliability, width, height, hz, count = case.split(":")
        width, height, hz, count = int(width), int(height), float(hz), int(count)
        best_effort = reliability == "best_effort"
        qos = QoSProfile(
            history=HistoryPolicy.KEEP_LAST,
            depth=5 if best_effort else 10,
            reliability=ReliabilityPolicy.BEST_EFFORT if best_effort else ReliabilityPolicy.RELIABLE,
        )
        pub = node.create_publisher(Image, f"{namespace}/{name}/image", qos)
        ready = spin_until(  # the node subscribed, with the reliability its `auto` chose for this publisher
            lambda n=name, r=reliability, p=pub: p.get_subscription_count() > 0
            and counts.get(n, {}).get("image_reliability") == r,
            WAIT_S,
        )
        before = {k: int(counts.get(name, {}).get(k, "0")) for k in ("frames_received", "frames_lost_in_transport")}
        pixels = np.random.default_rng(0).integers(0, 255, (height, width, 3), dtype=np.uint8).tobytes()
        start = time.monotonic()
        sent = count + TRAILER if ready else 0
        for k in range(sent):
            msg = Image(height=height, width=width, encoding="rgb8", step=width * 3, data=pixels)
            now = node.get_clock().now().nanoseconds
            msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(now, 1_000_000_000)
            msg.header.frame_id = f"{name}_{k}"
            pub.publish(msg)
            due = start + (k + 1) / hz
            spin_until(lambda due=due: time.monotonic() >= due, 2.0 / hz)
        seen: dict[str, int] = {}
        for check in range(5):  # until the node's counts stop changing (diagnostics every second)
            spin_until(lambda: False, 1.2)
            latest = {k: int(counts.get(name, {}).get(k, "0")) - before[k] for k in before}
            if latest == seen and check > 0:
                break
            seen = latest
        line = {"case": name, "reliability": reliability, "size": f"{width}x{height}", "hz": hz, "published": sent,
                "received": seen["frames_received"], "lost": seen["frames_lost_in_transport"], "matched": ready}
        print(json.dumps(line), flush=True)
        node.destroy_publisher(pub)
    node.destroy_node()
    rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2:]))
