"""Soak benchmark for converseg_node (not a test): camera images at 30 Hz and queries at 5 Hz for a few
minutes, against a node in its own process. Reports backlog (unanswered queries, pending jobs, frames
dropped vs processed), latency percentiles and the node's memory growth.

    . scripts/ros_env.sh && python bench/soak_benchmark.py --duration 180 [--preset tiny] [--width 640]

Traffic stays on 127.0.0.1 (ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST, own ROS_DOMAIN_ID, temp log dir).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
os.environ["ROS_LOCALHOST_ONLY"] = "1"  # Humble's spelling of the same
os.environ.setdefault("ROS_DOMAIN_ID", str(os.getpid() % 100 + 1))
os.environ.setdefault("ROS_LOG_DIR", tempfile.mkdtemp(prefix="converseg-soak-"))
os.environ.setdefault("ROS_HOME", os.environ["ROS_LOG_DIR"])

import psutil  # noqa: E402
import rclpy  # noqa: E402
from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from rclpy.node import Node  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402

from converseg_ros.msg import SegmentationQuery, SegmentationResult  # noqa: E402
from converseg_ros.ros.msgs import qos  # noqa: E402
from converseg_ros.ros.msgs.image_codec import encode  # noqa: E402
from converseg_ros.ros.tools.node_command import node_command, node_env  # noqa: E402

NS = "/soak"
QUERIES = ["the cup", "a surface where I could put a hot cup down", "the saucer", "something I could grab"]


def photo(width: int) -> np.ndarray:
    import cv2
    import skimage.data

    rgb = skimage.data.coffee()
    return np.ascontiguousarray(cv2.resize(rgb, (width, round(rgb.shape[0] * width / rgb.shape[1]))))


def percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    a = np.asarray(values)
    return {f"p{p}": round(float(np.percentile(a, p)), 1) for p in (50, 90, 99)} | {
        "max": round(float(a.max()), 1)
    }


class Soak(Node):
    """Publishes frames and queries on timers; records results and diagnostics."""

    def __init__(self, width: int, image_hz: float, query_hz: float) -> None:
        super().__init__("converseg_soak")
        self.template = encode(photo(width), "rgb8", Image())
        self.template.header.frame_id = "soak_camera"
        self.image_pub = self.create_publisher(Image, f"{NS}/image", qos.output_qos(1))
        self.query_pub = self.create_publisher(SegmentationQuery, f"{NS}/query", qos.command_qos())
        self.create_subscription(SegmentationResult, f"{NS}/result", self.on_result, qos.output_qos(100))
        self.create_subscription(DiagnosticArray, "/diagnostics", self.on_diag, qos.output_qos())
        self.sent_frames = 0
        self.sent_queries: dict[str, float] = {}
        self.answered: dict[str, float] = {}
        self.results = 0
        self.failed = 0
        self.latency_ms: list[float] = []
        self.inference_ms: list[float] = []
        self.diag: dict[str, str] = {}
        self.max_pending = 0
        self.running = False
        self.create_timer(1.0 / image_hz, self.send_frame)
        self.create_timer(1.0 / query_hz, self.send_query)

    def send_frame(self) -> None:
        if not self.running:
            return
        self.template.header.stamp = self.get_clock().now().to_msg()
        self.image_pub.publish(self.template)
        self.sent_frames += 1

    def send_query(self) -> None:
        if not self.running:
            return
        qid = f"once-{len(self.sent_queries)}"
        msg = SegmentationQuery(
            id=qid, text=QUERIES[len(self.sent_queries) % len(QUERIES)], mode=SegmentationQuery.MODE_ONCE
        )
        msg.header.stamp = self.get_clock().now().to_msg()
        self.sent_queries[qid] = time.monotonic()
        self.query_pub.publish(msg)

    def on_result(self, msg: SegmentationResult) -> None:
        self.results += 1
        if not msg.success:
            self.failed += 1
            return
        self.latency_ms.append(msg.latency_ms)
        self.inference_ms.append(msg.encode_ms + msg.inference_ms)
        if msg.query_id in self.sent_queries and msg.query_id not in self.answered:
            self.answered[msg.query_id] = (time.monotonic() - self.sent_queries[msg.query_id]) * 1e3

    def on_diag(self, msg: DiagnosticArray) -> None:
        for status in msg.status:
            if status.name.startswith(f"{NS}/converseg_node"):
                self.diag = {kv.key: kv.value for kv in status.values}
                self.max_pending = max(self.max_pending, int(self.diag.get("pending_jobs", 0)))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--duration", type=float, default=180.0, help="seconds of load (default 180)")
    p.add_argument("--preset", default="tiny")
    p.add_argument("--width", type=int, default=640, help="image width (default 640; coffee photo aspect)")
    p.add_argument("--image-hz", type=float, default=30.0)
    p.add_argument("--query-hz", type=float, default=5.0)
    p.add_argument("--json", help="also write the figures here")
    args = p.parse_args()

    log = Path(os.environ["ROS_LOG_DIR"]) / "soak_node.log"
    node_proc = subprocess.Popen(
        node_command(NS, {"preset": args.preset, "device": "cpu", "query": "the cup on the saucer"}),
        stdout=open(log, "w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
        env=node_env(),
    )  # noqa: SIM115
    rclpy.init()
    soak = Soak(args.width, args.image_hz, args.query_hz)
    proc = psutil.Process(node_proc.pid)
    try:
        deadline = time.monotonic() + 180
        while not soak.diag.get("preset") or soak.diag.get("frames_received") is None:
            rclpy.spin_once(soak, timeout_sec=0.1)
            if time.monotonic() > deadline or node_proc.poll() is not None:
                print(f"node did not start; log {log}", file=sys.stderr)
                return 2
        while "queries_answered" not in soak.diag:  # active
            rclpy.spin_once(soak, timeout_sec=0.1)
        time.sleep(2.0)
        rss_start = proc.memory_info().rss / 2**20
        rss_samples = [(0.0, rss_start)]
        soak.running = True
        t0 = time.monotonic()
        next_sample = t0 + 10
        while time.monotonic() - t0 < args.duration:
            rclpy.spin_once(soak, timeout_sec=0.01)
            if time.monotonic() >= next_sample:
                rss_samples.append((time.monotonic() - t0, proc.memory_info().rss / 2**20))
                next_sample += 10
        soak.running = False
        stop_t = time.monotonic()
        drain_t0 = time.monotonic()
        while len(soak.answered) < len(soak.sent_queries) and time.monotonic() - drain_t0 < 10:
            rclpy.spin_once(soak, timeout_sec=0.05)
        drain_s = time.monotonic() - drain_t0
        settle = time.monotonic() + 1.5  # one more diagnostics message with the final counters
        while time.monotonic() < settle:
            rclpy.spin_once(soak, timeout_sec=0.05)
        elapsed = time.monotonic() - t0
        rss_end = proc.memory_info().rss / 2**20
    finally:
        soak.destroy_node()
        rclpy.try_shutdown()
        if node_proc.poll() is None:
            os.killpg(node_proc.pid, signal.SIGINT)
            node_proc.wait(30)

    second_half = [(t, m) for t, m in rss_samples if t >= args.duration / 2]
    slope = float(np.polyfit(*zip(*second_half, strict=True), 1)[0]) * 60 if len(second_half) >= 2 else None
    d = soak.diag
    figures = {
        "duration_s": round(elapsed, 1),
        "preset": args.preset,
        "image": f"{args.width} px wide rgb8",
        "frames_sent": soak.sent_frames,
        "frames_received_by_node": int(d.get("frames_received", 0)),
        "frames_encoded": int(d.get("frames_encoded", 0)),
        "batches": int(d.get("batches", 0)),
        "frames_dropped_overwritten": int(d.get("frames_dropped_overwritten", 0)),
        "frames_stale": int(d.get("frames_stale", 0)),
        "results": soak.results,
        "failed_results": soak.failed,
        "once_queries_sent": len(soak.sent_queries),
        "once_queries_answered": len(soak.answered),
        "backlog_unanswered_after_drain": len(soak.sent_queries) - len(soak.answered),
        "unanswered_sent_s_before_stop": [
            round(stop_t - t, 2) for q, t in soak.sent_queries.items() if q not in soak.answered
        ],
        "node_pending_jobs_at_end": int(d.get("pending_jobs", 0)),
        "max_pending_jobs": soak.max_pending,
        "drain_s": round(drain_s, 2),
        "result_latency_ms": percentiles(soak.latency_ms),
        "model_ms_per_result": percentiles(soak.inference_ms),
        "query_response_ms": percentiles(list(soak.answered.values())),
        "node_rss_mb": {
            "start": round(rss_start, 1),
            "end": round(rss_end, 1),
            "growth": round(rss_end - rss_start, 1),
            "slope_second_half_mb_per_min": None if slope is None else round(slope, 2),
            "samples_every_10s": [round(m) for _, m in rss_samples],
        },
    }
    print(json.dumps(figures, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
