"""Camera-frame delivery over the local DDS (not a test): how many raw rgb8 frames a subscriber in another
process receives, per frame size, rate, publisher QoS and Fast DDS profile, idle and after a burst.

    . scripts/ros_env.sh && python bench/frame_delivery_benchmark.py [--quick] [--json out/frames.json]

The publisher (this process) behaves like a camera driver: reliable publishers use the rclcpp default
(reliable, keep last 10), best-effort ones the sensor-data QoS (best effort, keep last 5). The subscriber
(a child process, like converseg_node) keeps the last frame only (depth 1) and takes its reliability the
way the node's ``image_reliability: auto`` does, from what the publisher offers (``--subscriber`` forces
one). Each profile row set runs the subscriber with a Fast DDS configuration:

- ``default``: no profile (what every node gets unless told otherwise);
- ``shipped``: config/fastdds_large_frames.xml, the profile the launch file gives converseg_node;
- ``shipped-208k``: the same with 208 KiB socket buffers, i.e. a robot whose net.core.rmem_max was not raised.

``--compressed`` adds rows for sensor_msgs/CompressedImage (JPEG, quality 90, of a real photo) with
the default profile, as an image_transport ``compressed`` topic carries them.

"after burst": 1000 small (32x24) frames published back to back on the same topic first. Columns:
published; received (taken by the depth-1 subscriber); ``lost`` (samples Fast DDS reports lost: never
complete at the reader; three small frames after the measured ones let it notice the last ones);
``overwritten`` (the rest: complete at the reader but replaced in its depth-1 queue by a newer frame
before the subscriber took it, i.e. a busy consumer and the node's intended "newest frame wins");
delivered = published - lost. Localhost only, own domain id, bounded in time.
"""

from __future__ import annotations

import argparse
import json
import os
import select
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
os.environ["ROS_LOCALHOST_ONLY"] = "1"  # Humble's spelling of the same
PROFILE_VARIABLES = ("FASTDDS_DEFAULT_PROFILES_FILE", "FASTRTPS_DEFAULT_PROFILES_FILE")  # Fast DDS 3.x, 2.x
os.environ.setdefault("ROS_DOMAIN_ID", str(os.getpid() % 100 + 1))
os.environ.setdefault("ROS_LOG_DIR", tempfile.mkdtemp(prefix="converseg-frames-"))
os.environ.setdefault("ROS_HOME", os.environ["ROS_LOG_DIR"])
if "--role" not in sys.argv:  # the publisher stands for an unmodified camera driver: no profile
    for _name in PROFILE_VARIABLES:
        os.environ.pop(_name, None)

import numpy as np  # noqa: E402
import rclpy  # noqa: E402
from rclpy.node import Node  # noqa: E402
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy  # noqa: E402
from sensor_msgs.msg import CompressedImage, Image  # noqa: E402

from converseg_ros.ros.compat import SubscriptionEventCallbacks  # noqa: E402
from converseg_ros.ros.msgs import qos  # noqa: E402
from converseg_ros.ros.msgs.image_codec import encode  # noqa: E402

PROFILE = REPO / "config" / "fastdds_large_frames.xml"
SIZES = ((640, 480), (1280, 720))
RATES = (2.0, 30.0)
PUBLISHERS = ("reliable", "best_effort")
BURST_FRAMES = 1000
CAMERA_QOS = {  # what camera drivers use: rclcpp's default, and the sensor-data profile
    "reliable": QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=10, reliability=ReliabilityPolicy.RELIABLE),
    "best_effort": QoSProfile(
        history=HistoryPolicy.KEEP_LAST, depth=5, reliability=ReliabilityPolicy.BEST_EFFORT
    ),
}


@dataclass
class Case:
    """One row of the table."""

    profile: str
    width: int
    height: int
    rate_hz: float
    publisher: str
    burst: bool
    encoding: str = "rgb8"  # rgb8 (sensor_msgs/Image) or jpeg (CompressedImage)
    subscriber: str = ""
    published: int = 0
    received: int = 0
    lost: int = 0
    overwritten: int = 0
    burst_received: int = 0
    error: str = ""

    @property
    def ratio(self) -> float:
        return self.received / self.published if self.published else 0.0

    @property
    def delivered(self) -> float:
        return (self.published - self.lost) / self.published if self.published else 0.0


# -- the subscriber process ------------------------------------------------------------------------------
def subscriber_main(forced: str) -> None:
    """Child: commands on stdin (one JSON object per line), answers on stdout."""
    rclpy.init()
    node = Node("frame_bench_subscriber")
    state: dict[str, Any] = {"sub": None, "frames": set(), "burst": 0, "lost": 0, "lost_before": 0}

    def on_frame(msg: Image) -> None:
        if msg.header.frame_id == "burst":
            state["burst"] += 1
        elif msg.header.frame_id != "tail":
            state["frames"].add(msg.header.frame_id)

    def on_lost(info: Any) -> None:
        state["lost"] = int(info.total_count)

    def reply(**data: Any) -> None:
        print(json.dumps(data), flush=True)

    reply(ready=True)
    while rclpy.ok():
        rclpy.spin_once(node, timeout_sec=0.005)
        if not select.select([sys.stdin], [], [], 0)[0]:
            continue
        line = sys.stdin.readline()
        if not line:
            break
        cmd = json.loads(line)
        if cmd["cmd"] == "subscribe":
            deadline = time.monotonic() + 10.0
            offered = None
            while offered is None and time.monotonic() < deadline:
                offered = qos.offered_reliability(node.get_publishers_info_by_topic(cmd["topic"]))
                rclpy.spin_once(node, timeout_sec=0.05)
            reliability = forced if forced != "auto" else offered or qos.AUTO_WITHOUT_PUBLISHERS
            events = SubscriptionEventCallbacks(message_lost=on_lost)
            state.update(frames=set(), burst=0, lost=0, lost_before=0)
            msg_type = CompressedImage if cmd.get("jpeg") else Image
            state["sub"] = node.create_subscription(
                msg_type, cmd["topic"], on_frame, qos.image_qos(reliability, 1), event_callbacks=events
            )
            reply(subscribed=reliability)
        elif cmd["cmd"] == "reset":
            state.update(frames=set(), lost_before=state["lost"])
            reply(reset=True)
        elif cmd["cmd"] == "report":
            end = time.monotonic() + cmd["grace_s"]
            while time.monotonic() < end:
                rclpy.spin_once(node, timeout_sec=0.01)
            lost = state["lost"] - state["lost_before"]
            reply(received=len(state["frames"]), lost=lost, burst=state["burst"])
            node.destroy_subscription(state["sub"])
            state["sub"] = None
        elif cmd["cmd"] == "quit":
            break
    node.destroy_node()
    rclpy.try_shutdown()


class Subscriber:
    """The child process, driven over pipes."""

    def __init__(self, profile: str, forced: str) -> None:
        env = dict(os.environ)
        for name in PROFILE_VARIABLES:
            env.pop(name, None)
            if profile != "default":
                env[name] = str(self._profile_file(profile))
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--role", "subscriber", "--subscriber", forced],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        self.ask(None, timeout=60.0)  # "ready"

    @staticmethod
    def _profile_file(profile: str) -> Path:
        if profile == "shipped":
            return PROFILE
        small = Path(tempfile.mkdtemp(prefix="converseg-frames-profile-")) / "fastdds_208k.xml"
        small.write_text(PROFILE.read_text().replace("4194304", "212992"))
        return small

    def ask(self, cmd: dict[str, Any] | None, timeout: float = 30.0) -> dict[str, Any]:
        if cmd is not None:
            self.proc.stdin.write(json.dumps(cmd) + "\n")
            self.proc.stdin.flush()
        if not select.select([self.proc.stdout], [], [], timeout)[0]:
            raise TimeoutError(f"subscriber did not answer {cmd} within {timeout} s")
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"subscriber exited (code {self.proc.poll()})")
        return json.loads(line)

    def close(self) -> None:
        try:
            self.ask({"cmd": "quit"}, timeout=0.1)
        except (TimeoutError, RuntimeError, BrokenPipeError, ValueError):
            pass
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


# -- the publisher (this process) ------------------------------------------------------------------------
def frame_msg(width: int, height: int, jpeg: bool = False) -> Image | CompressedImage:
    """The coffee photo at ``width`` x ``height``: raw rgb8, or JPEG like image_transport's compressed."""
    import array

    import cv2
    import skimage.data

    rgb = np.ascontiguousarray(cv2.resize(skimage.data.coffee(), (width, height), interpolation=cv2.INTER_AREA))
    if not jpeg:
        return encode(rgb, "rgb8", Image())
    ok, data = cv2.imencode(".jpg", rgb[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 90])
    assert ok
    return CompressedImage(format="rgb8; jpeg compressed bgr8", data=array.array("B", data.tobytes()))


def run_case(node: Node, sub: Subscriber, case: Case, frames: int, topic: str) -> None:
    """Publish ``frames`` frames at the case's rate; fill in the counts."""
    jpeg = case.encoding == "jpeg"
    pub = node.create_publisher(CompressedImage if jpeg else Image, topic, CAMERA_QOS[case.publisher])
    try:
        case.subscriber = sub.ask({"cmd": "subscribe", "topic": topic, "jpeg": jpeg})["subscribed"]
        deadline = time.monotonic() + 10.0
        while pub.get_subscription_count() < 1 and time.monotonic() < deadline:
            time.sleep(0.02)
        if pub.get_subscription_count() < 1:
            case.error = "subscriber never matched"
            sub.ask({"cmd": "report", "grace_s": 0.0})
            return
        time.sleep(0.5)  # both sides have matched
        if case.burst:
            small = frame_msg(32, 24, jpeg)
            small.header.frame_id = "burst"
            for _ in range(BURST_FRAMES):
                pub.publish(small)
            time.sleep(1.0)
            sub.ask({"cmd": "reset"})
        msg = frame_msg(case.width, case.height, jpeg)
        period = 1.0 / case.rate_hz
        start = time.monotonic()
        for k in range(frames):
            time.sleep(max(0.0, start + k * period - time.monotonic()))
            msg.header.frame_id = f"f{k:05d}"
            msg.header.stamp = node.get_clock().now().to_msg()
            pub.publish(msg)
        case.published = frames
        tail = frame_msg(32, 24, jpeg)
        tail.header.frame_id = "tail"
        for _ in range(3):  # a later sample lets a best-effort reader notice that the last frames were lost
            time.sleep(0.05)
            pub.publish(tail)
        report = sub.ask({"cmd": "report", "grace_s": 1.5})
        case.received, case.lost, case.burst_received = report["received"], report["lost"], report["burst"]
        case.overwritten = max(0, case.published - case.received - case.lost)
    finally:
        node.destroy_publisher(pub)


def table(cases: list[Case]) -> str:
    head = (
        "| profile | frame | rate | publisher | subscriber | condition | received / published | "
        "lost | overwritten | delivered |\n|---|---|---|---|---|---|---|---|---|---|"
    )
    rows = [
        f"| {c.profile} | {c.width}x{c.height} {c.encoding} | {c.rate_hz:g} Hz | {c.publisher} | {c.subscriber} | "
        f"{'after burst' if c.burst else 'idle'} | "
        + (
            f"{c.received} / {c.published} ({c.ratio:.0%}) | {c.lost} | {c.overwritten} | {c.delivered:.0%} |"
            if not c.error
            else f"not run: {c.error} | | | |"
        )
        for c in cases
    ]
    return "\n".join([head, *rows])


def summary(cases: list[Case]) -> str:
    """The table of docs/ros.md: one row per frame, rate and publisher; per profile and condition the
    frames received of those published, and in brackets the share delivered (published - lost)."""
    profiles = list(dict.fromkeys(c.profile for c in cases))
    columns = [(p, b) for p in profiles for b in (False, True)]
    head = "| frame | rate | publisher -> subscriber | " + " | ".join(
        f"{p} {'after burst' if b else 'idle'}" for p, b in columns
    )
    lines = [head + " |", "|---|---|---|" + "---|" * len(columns)]
    keys = list(dict.fromkeys((c.encoding, c.width, c.height, c.rate_hz, c.publisher) for c in cases))
    for enc, w, h, rate, pub in keys:
        key = (enc, w, h, rate, pub)
        row = {(c.profile, c.burst): c for c in cases if (c.encoding, c.width, c.height, c.rate_hz, c.publisher) == key}
        some = next(iter(row.values()))
        cells = []
        for col in columns:
            c = row.get(col)
            if c is None:
                cells.append("")
            elif c.error:
                cells.append("not run")
            else:
                cells.append(f"{c.received}/{c.published} ({c.delivered:.0%})")
        lines.append(f"| {w}x{h} {enc} | {rate:g} Hz | {pub} -> {some.subscriber} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--role", default="bench", choices=["bench", "subscriber"], help=argparse.SUPPRESS)
    p.add_argument("--profiles", default="default,shipped,shipped-208k", help="comma-separated row sets")
    p.add_argument("--subscriber", default="auto", choices=["auto", "best_effort", "reliable"])
    p.add_argument("--frames-2hz", type=int, default=20, help="frames per 2 Hz case")
    p.add_argument("--frames-30hz", type=int, default=90, help="frames per 30 Hz case")
    p.add_argument("--quick", action="store_true", help="8 frames at 2 Hz, 30 at 30 Hz")
    p.add_argument("--compressed", action="store_true", help="also JPEG CompressedImage rows (default profile)")
    p.add_argument("--max-seconds", type=float, default=900.0, help="stop starting cases after this")
    p.add_argument("--json", help="also write the rows as JSON here")
    return p.parse_args()


def main() -> int:
    args = parse_args()
    if args.role == "subscriber":
        subscriber_main(args.subscriber)
        return 0
    frames = {2.0: 8, 30.0: 30} if args.quick else {2.0: args.frames_2hz, 30.0: args.frames_30hz}
    rclpy.init()
    node = Node("frame_bench_publisher")
    cases: list[Case] = []
    started = time.monotonic()
    try:
        for profile in args.profiles.split(","):
            rows = [
                Case(profile, w, h, rate, publisher, burst)
                for (w, h) in SIZES
                for rate in RATES
                for publisher in PUBLISHERS
                for burst in (False, True)
            ]
            if args.compressed and profile == "default":
                rows += [
                    Case(profile, w, h, rate, pub, False, "jpeg")
                    for (w, h) in SIZES
                    for rate in RATES
                    for pub in PUBLISHERS
                ]
            sub = Subscriber(profile, args.subscriber)
            try:
                for case in rows:
                    cases.append(case)
                    if time.monotonic() - started > args.max_seconds:
                        case.error = f"--max-seconds {args.max_seconds:g} reached"
                        continue
                    run_case(node, sub, case, frames[case.rate_hz], f"/frame_bench/c{len(cases)}")
                    print(
                        f"{profile:>12} {case.width}x{case.height} {case.encoding} {case.rate_hz:>4g} Hz "
                        f"{case.publisher:>11} -> {case.subscriber:>11} {'burst' if case.burst else 'idle ':>5}: "
                        f"{case.received}/{case.published} lost {case.lost} overwritten {case.overwritten} "
                        f"{case.error}",
                        flush=True,
                    )
            finally:
                sub.close()
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
    print()
    print(f"Subscriber reliability: {args.subscriber}; elapsed {time.monotonic() - started:.0f} s")
    print(table(cases))
    print()
    print(summary(cases))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps([asdict(c) for c in cases], indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
