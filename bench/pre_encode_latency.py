"""Query-to-answer latency of converseg_node on a live camera stream, with and without pre-encoding, against
the cached-query time, measured side by side in one run (not a test).

A synthetic camera video (a real photo swept by a smooth camera motion, 640x480) is written as a rosbag2 and
played in a loop by converseg-replay at --rate Hz. One node (its own process) answers once-queries (frame
policy latest) sent at random moments; its `pre_encode_hz` is switched at run time between rounds:

* off          pre_encode_hz 0: a query waits for the newest frame's encoding (SAM2 + Qwen prefix) and its own
               language pass
* on @ N Hz    the node keeps the newest frame encoded while idle: the query only pays its own pass (plus,
               sometimes, the end of a pre-encoding under way)
* cached       the replay is paused (SIGSTOP) and the queries hit the frame the node already encoded: the
               cached-query time through the same topics, the reference of the ratios

    . scripts/ros_env.sh && python bench/pre_encode_latency.py [--preset tiny] [--rounds 3] [--queries 8]
    # full size: the random-weight release bench/engine_benchmark.py writes; an encoding takes minutes on a CPU
    python bench/pre_encode_latency.py --release-dir /tmp/cs-bench-release --rounds 1 --queries 2 \
        --pre-encode-hz 0.01 --settle 240 --timeout 900 --max-image-age-s 900 --rate 1

Latency is measured in this process from publishing the query to receiving its result (both over DDS on
127.0.0.1, own ROS_DOMAIN_ID). Absolute times drift on a shared machine: read the ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
os.environ["ROS_LOCALHOST_ONLY"] = "1"  # Humble's spelling of the same
os.environ.setdefault("ROS_DOMAIN_ID", str(os.getpid() % 100 + 1))
os.environ.setdefault("ROS_LOG_DIR", tempfile.mkdtemp(prefix="converseg-pre-encode-"))
os.environ.setdefault("ROS_HOME", os.environ["ROS_LOG_DIR"])

import numpy as np  # noqa: E402
import rclpy  # noqa: E402
from rcl_interfaces.srv import SetParameters  # noqa: E402
from rclpy.node import Node  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402

from converseg_ros.msg import SegmentationQuery, SegmentationResult  # noqa: E402
from converseg_ros.ros.msgs import qos  # noqa: E402
from converseg_ros.ros.tools.node_command import node_command, node_env  # noqa: E402

NS = "/pre_bench"
QUERIES = ["the cup", "the saucer", "a surface where I could put a hot cup down", "something I could grab"]


class Client(Node):
    """Sends once-queries, records when each result arrives, sets the node's parameters."""

    def __init__(self) -> None:
        super().__init__("converseg_pre_encode_bench")
        self.query_pub = self.create_publisher(SegmentationQuery, f"{NS}/query", qos.command_qos())
        self.create_subscription(SegmentationResult, f"{NS}/result", self._on_result, qos.output_qos(50))
        self.params = self.create_client(SetParameters, f"{NS}/converseg_node/set_parameters")
        self.sent: dict[str, float] = {}
        self.answers: dict[str, tuple[float, SegmentationResult]] = {}
        self._n = 0

    def _on_result(self, msg: SegmentationResult) -> None:
        if msg.query_id in self.sent and msg.query_id not in self.answers:
            self.answers[msg.query_id] = (time.monotonic(), msg)

    def spin_for(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            rclpy.spin_once(self, timeout_sec=0.002)

    def set(self, **values: object) -> None:
        request = SetParameters.Request(
            parameters=[Parameter(k, value=v).to_parameter_msg() for k, v in values.items()]
        )
        future = self.params.call_async(request)
        rclpy.spin_until_future_complete(self, future, timeout_sec=10.0)
        assert future.result() and all(r.successful for r in future.result().results), future.result()

    def ask(self, timeout: float = 30.0) -> tuple[float, SegmentationResult]:
        """One once-query; (query-to-answer ms, result)."""
        qid = f"lat{self._n}"
        msg = SegmentationQuery(id=qid, text=QUERIES[self._n % len(QUERIES)], mode=SegmentationQuery.MODE_ONCE)
        self._n += 1
        msg.header.stamp = self.get_clock().now().to_msg()
        self.sent[qid] = time.monotonic()
        self.query_pub.publish(msg)
        end = time.monotonic() + timeout
        while qid not in self.answers and time.monotonic() < end:
            rclpy.spin_once(self, timeout_sec=0.001)
        if qid not in self.answers:
            raise RuntimeError(f"no answer to {qid} in {timeout} s")
        received, result = self.answers[qid]
        if not result.success:
            raise RuntimeError(f"{qid}: {result.message}")
        return (received - self.sent[qid]) * 1e3, result


def row(latency: float, result: SegmentationResult) -> tuple[float, float, float, float]:
    """(query-to-answer ms, node encode ms, node query ms, age of the answered frame at publication ms)."""
    return latency, result.encode_ms, result.inference_ms, result.latency_ms


def phase(client: Client, queries: int, rng: random.Random, timeout: float) -> list[tuple[float, float, float, float]]:
    """``queries`` queries at random moments."""
    rows = []
    for _ in range(queries):
        client.spin_for(rng.uniform(0.25, 0.6))
        rows.append(row(*client.ask(timeout)))
    return rows


def node_params(args: argparse.Namespace) -> dict[str, object]:
    """The node's parameters: a preset, or the full-size random release in ``--release-dir`` (fp32 on CPU)."""
    params: dict[str, object] = {"preset": args.preset, "device": "cpu", "max_image_age_s": args.max_image_age_s,
                                 "pre_encode_hz": 0.0}
    if args.release_dir:
        release = Path(args.release_dir)
        files = {"vlm": "qwen", "sam2_checkpoint": "ConverSeg-Net_sam2_90000.torch.torch",
                 "plm_checkpoint": "ConverSeg-Net_plm_90000.torch", "lora": "lora_plm_adapter_90000"}
        overrides = json.dumps({k: str(release.resolve() / v) for k, v in files.items()})
        params |= {"preset": "converseg-3b", "precision": "fp32", "model_overrides": f"'{overrides}'"}  # a string
    return params


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="tiny")
    p.add_argument("--rate", type=float, default=10.0, help="camera frames per second (default 10)")
    p.add_argument("--pre-encode-hz", type=float, nargs="+", default=[2.0, 5.0])
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds of every mode")
    p.add_argument("--queries", type=int, default=8, help="queries per mode and round")
    p.add_argument("--size", default="480x640", help="frame HxW (default 480x640)")
    p.add_argument("--json", help="also write the figures here")
    p.add_argument("--release-dir", help="full size: a random-weight release written by bench/engine_benchmark.py")
    p.add_argument("--settle", type=float, default=1.0, help="seconds after switching a mode before its queries")
    p.add_argument("--timeout", type=float, default=30.0, help="seconds a query may wait for its answer")
    p.add_argument("--max-image-age-s", type=float, default=5.0, help="the node's max_image_age_s")
    args = p.parse_args()
    from converseg_ros.data.rosbag_writer import write_video_bag
    from converseg_ros.data.synthetic_video import camera_sweep

    height, width = (int(v) for v in args.size.split("x"))
    tmp = Path(os.environ["ROS_LOG_DIR"])
    import skimage.data

    bag = write_video_bag(tmp / "sweep", camera_sweep(skimage.data.coffee(), n_frames=48, size=(height, width)))
    log = tmp / "node.log"
    node = subprocess.Popen(
        node_command(NS, node_params(args)),
        stdout=open(log, "w"), stderr=subprocess.STDOUT, start_new_session=True, env=node_env(),  # noqa: SIM115
    )
    replay = subprocess.Popen(
        [sys.executable, "-m", "converseg_ros.ros.tools.replay", "--bag", str(bag), "--rate", str(args.rate), "--loop",
         "--topic", f"{NS}/image", "--wait-subscriber", "120"],
        stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, start_new_session=True,
    )
    rclpy.init()
    client = Client()
    rng = random.Random(0)
    modes = ["off", *[f"on @ {hz:g} Hz" for hz in args.pre_encode_hz], "cached"]
    rows: dict[str, list[tuple[float, float, float, float]]] = {m: [] for m in modes}
    try:
        deadline = time.monotonic() + max(180.0, args.timeout)
        while not (client.params.service_is_ready() and "]: active" in log.read_text()):
            client.spin_for(0.2)
            if time.monotonic() > deadline or node.poll() is not None:
                raise RuntimeError(f"node did not start; log {log}")
        client.spin_for(2.0)
        client.ask(max(60.0, args.timeout))  # warm: the first answers on this process's frames
        for _ in range(args.rounds):
            for mode, hz in zip(modes[:-1], [0.0, *args.pre_encode_hz], strict=True):
                client.set(pre_encode_hz=hz)
                client.spin_for(args.settle)
                rows[mode] += phase(client, args.queries, rng, args.timeout)
            client.set(pre_encode_hz=0.0)
            os.kill(replay.pid, signal.SIGSTOP)  # no new frames: the newest one stays encoded
            try:
                client.spin_for(0.3)
                client.ask(args.timeout)  # (encodes the last frame if it is not yet)
                for _ in range(args.queries):
                    latency, result = client.ask(args.timeout)
                    assert result.encode_ms == 0.0, "cached phase encoded a frame"
                    rows["cached"].append(row(latency, result))
            finally:
                os.kill(replay.pid, signal.SIGCONT)
    finally:
        client.destroy_node()
        rclpy.try_shutdown()
        for proc in (replay, node):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGINT)
                proc.wait(30)

    cached = float(np.median([r[0] for r in rows["cached"]]))
    print(f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {os.uname().nodename}, {os.cpu_count()} CPUs; "
          f"preset {node_params(args)['preset']}, "
          f"{width}x{height} at {args.rate:g} Hz, {args.rounds} interleaved rounds x "
          f"{args.queries} queries per mode")
    print("| mode | query-to-answer median (ms) | p90 (ms) | / cached | answered without encoding | node encode ms "
          "(median) | node query ms (median) | answered frame's age (median ms) |")
    print("|---|---|---|---|---|---|---|---|")
    figures = {}
    for mode in modes:
        lat = np.array([r[0] for r in rows[mode]])
        enc = np.array([r[1] for r in rows[mode]])
        inf = np.array([r[2] for r in rows[mode]])
        age = np.array([r[3] for r in rows[mode]])
        med = float(np.median(lat))
        figures[mode] = {"median_ms": round(med, 1), "p90_ms": round(float(np.percentile(lat, 90)), 1),
                         "ratio_to_cached": round(med / cached, 2), "no_encode": int((enc == 0).sum()),
                         "n": len(lat)}
        print(f"| {mode} | {med:.1f} | {np.percentile(lat, 90):.1f} | {med / cached:.2f}x | "
              f"{(enc == 0).sum()}/{len(lat)} | {np.median(enc):.1f} | {np.median(inf):.1f} | {np.median(age):.0f} |")
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
