"""Peak memory of one converseg_node serving 1 and N cameras (one model for all), and an estimate for the 3B
model (not a test). For each camera count it starts the node (its own process), publishes 640x480 frames at
--hz on every camera with one continuous and one tracked query on each, and reads the node's peak RSS
(VmHWM) after --duration seconds; the per-camera increment is measured, the model is loaded once.

    . scripts/ros_env.sh && python bench/multi_camera_memory.py [--cameras 1 3] [--duration 20]

The 3B estimate: one model (--full-rss-gib, the engine's measured peak RSS of the full-size model, README
"Speed") + the tiny node's measured per-camera increment (ROS/DDS buffers, frames) + the per-camera model
state at full size computed from its shapes (cached frame encoding, one track's memory bank), against one
node per camera (N model copies). Traffic stays on 127.0.0.1 (own ROS_DOMAIN_ID, temp log dir).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import tempfile
import time
from pathlib import Path

os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
os.environ["ROS_LOCALHOST_ONLY"] = "1"  # Humble's spelling of the same
os.environ.setdefault("ROS_DOMAIN_ID", str(os.getpid() % 100 + 1))
os.environ.setdefault("ROS_LOG_DIR", tempfile.mkdtemp(prefix="converseg-memory-"))
os.environ.setdefault("ROS_HOME", os.environ["ROS_LOG_DIR"])

import numpy as np  # noqa: E402
import rclpy  # noqa: E402
from rclpy.node import Node  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402

from converseg_ros.msg import SegmentationQuery, SegmentationResult  # noqa: E402
from converseg_ros.ros.msgs import qos  # noqa: E402
from converseg_ros.ros.msgs.image_codec import encode  # noqa: E402
from converseg_ros.ros.tools.node_command import node_command, node_env  # noqa: E402

NS = "/mem"
MIB = 2**20


def full_size_camera_state_mib(width: int = 640, height: int = 480, tracks: int = 1) -> dict[str, float]:
    """Per-camera model state of ConverSeg-Net 3B (Qwen2.5-VL-3B bf16 + SAM2 Hiera-L fp32) from its shapes:
    the cached FrameEncoding (SAM2 embedding and high-res features, Qwen prefix KV cache and hidden states,
    the RGB frame) and, per tracked query, SAM2's memory bank (7 spatial memories 64x64x64 fp32)."""
    sam = (256 * 64 * 64 + 32 * 256 * 256 + 64 * 128 * 128) * 4
    tokens = round(width / 28) * round(height / 28) + 24  # merged 28x28 patches + chat template tokens
    layers, kv_heads, head_dim, hidden = 36, 2, 128, 2048
    prefix = (layers * 2 * kv_heads * head_dim + hidden) * tokens * 2
    bank = (7 * 64 * 64 * 64 + 16 * 4 * 64) * 4
    return {"sam2_features": sam / MIB, "qwen_prefix": prefix / MIB, "rgb": width * height * 3 / MIB,
            "track_bank": tracks * bank / MIB}


class Load(Node):
    def __init__(self, cameras: list[str], width: int) -> None:
        super().__init__("converseg_memory_load")
        import cv2
        import skimage.data

        rgb = skimage.data.coffee()
        rgb = np.ascontiguousarray(cv2.resize(rgb, (width, round(rgb.shape[0] * width / rgb.shape[1]))))
        self.template = encode(rgb, "rgb8", Image())
        prefix = [f"{NS}/{c}/" if c else f"{NS}/" for c in cameras]
        self.pubs = [self.create_publisher(Image, p + "image", qos.output_qos(1)) for p in prefix]
        self.results = {p: 0 for p in prefix}
        for p in prefix:
            self.create_subscription(SegmentationResult, p + "result", lambda m, p=p: self._count(p, m),
                                     qos.output_qos(50))
        self.query_pub = self.create_publisher(SegmentationQuery, f"{NS}/query", qos.command_qos())

    def _count(self, prefix: str, msg: SegmentationResult) -> None:
        self.results[prefix] += int(msg.success)

    def ready(self) -> bool:
        return self.query_pub.get_subscription_count() > 0 and all(p.get_subscription_count() for p in self.pubs)

    def send_frames(self) -> None:
        self.template.header.stamp = self.get_clock().now().to_msg()
        for pub in self.pubs:
            pub.publish(self.template)

    def send_queries(self) -> None:
        for qid, mode in (("mem_continuous", SegmentationQuery.MODE_CONTINUOUS),
                          ("mem_tracked", SegmentationQuery.MODE_TRACK)):
            msg = SegmentationQuery(id=qid, text="the cup on the saucer", mode=mode)
            msg.header.stamp = self.get_clock().now().to_msg()
            self.query_pub.publish(msg)


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM")


def measure(count: int, args: argparse.Namespace) -> dict[str, object]:
    cameras = [""] if count == 1 and args.unnamed_single else [f"cam{i}" for i in range(count)]
    params = {"preset": args.preset, "device": "cpu"}
    extra = [] if cameras == [""] else ["-p", f"cameras:=[{', '.join(cameras)}]"]
    log = Path(os.environ["ROS_LOG_DIR"]) / f"node_{count}.log"
    proc = subprocess.Popen(node_command(NS, params, extra), stdout=open(log, "w"),  # noqa: SIM115
                            stderr=subprocess.STDOUT, start_new_session=True, env=node_env())
    load = Load(cameras, args.width)
    try:
        deadline = time.monotonic() + 180
        while not (load.ready() and "]: active" in log.read_text()):
            rclpy.spin_once(load, timeout_sec=0.1)
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError(f"node did not start; log {log}")
        idle_peak = peak_rss_mib(proc.pid)
        load.send_queries()
        t0 = time.monotonic()
        next_frame = t0
        while time.monotonic() - t0 < args.duration:
            if time.monotonic() >= next_frame:
                load.send_frames()
                next_frame += 1 / args.hz
            rclpy.spin_once(load, timeout_sec=0.005)
        peak = peak_rss_mib(proc.pid)
        answers = dict(load.results)
    finally:
        load.destroy_node()
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGINT)
            proc.wait(30)
    return {"cameras": count, "peak_rss_mib": round(peak, 1), "active_idle_peak_mib": round(idle_peak, 1),
            "answers_per_camera": list(answers.values())}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cameras", type=int, nargs="+", default=[1, 3])
    p.add_argument("--duration", type=float, default=20.0, help="seconds of frames per run (default 20)")
    p.add_argument("--hz", type=float, default=10.0, help="frames per second on each camera")
    p.add_argument("--width", type=int, default=640, help="frame width (coffee photo: 640 -> 640x480)")
    p.add_argument("--preset", default="tiny")
    p.add_argument("--unnamed-single", action="store_true", help="1 camera = the unnamed default camera")
    p.add_argument("--full-rss-gib", type=float, default=8.9,
                   help="peak RSS of one full-size engine (README Speed, bench/engine_benchmark.py)")
    p.add_argument("--json", help="also write the figures here")
    args = p.parse_args()
    rclpy.init()
    try:
        runs = [measure(n, args) for n in args.cameras]
    finally:
        rclpy.try_shutdown()
    base = runs[0]
    print(f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, preset {args.preset}, {args.width} px, "
          f"{args.hz} Hz per camera, {args.duration:.0f} s, 1 continuous + 1 tracked query per camera")
    print("| cameras | peak RSS (MiB) | after activation (MiB) | answers per camera |")
    print("|---|---|---|---|")
    for run in runs:
        print(f"| {run['cameras']} | {run['peak_rss_mib']} | {run['active_idle_peak_mib']} | "
              f"{run['answers_per_camera']} |")
    figures = {"runs": runs}
    if len(runs) > 1:
        last = runs[-1]
        extra_cams = last["cameras"] - base["cameras"]
        per_camera = (last["peak_rss_mib"] - base["peak_rss_mib"]) / extra_cams
        state = full_size_camera_state_mib(args.width, round(args.width * 3 / 4))
        state_mib = sum(state.values())
        full = args.full_rss_gib * 1024
        n = last["cameras"]
        one_node = full + (n - 1) * (max(per_camera, 0.0) + state_mib)
        print(f"\nper extra camera (tiny, measured): {per_camera:+.1f} MiB; {n} cameras / 1 camera: "
              f"{last['peak_rss_mib'] / base['peak_rss_mib']:.2f}x")
        print(f"3B estimate, per-camera model state at full size: {state_mib:.1f} MiB "
              f"({', '.join(f'{k} {v:.1f}' for k, v in state.items())})")
        print(f"3B estimate for {n} cameras: one node {one_node / 1024:.2f} GiB vs {n} nodes "
              f"{n * (full + state_mib) / 1024:.2f} GiB ({n * (full + state_mib) / one_node:.2f}x)")
        figures |= {"per_extra_camera_mib": round(per_camera, 1), "full_size_state_mib": state,
                    "estimate_3b_one_node_gib": round(one_node / 1024, 2),
                    "estimate_3b_separate_nodes_gib": round(n * (full + state_mib) / 1024, 2)}
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
