"""Tools around the node, each in its own process: fail-fast configuration, the converseg-query client,
the camera replay publisher (bundled photos, rosbag2 folder and its MCAP file)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from ros_helpers import Collector, photo, spin_for, spin_until
from ros_nodes import NS, start_node
from sensor_msgs.msg import Image

from converseg_ros.msg import SegmentationResult
from converseg_ros.ros.msgs.image_codec import decode
from converseg_ros.ros.tools.node_command import node_command

pytestmark = pytest.mark.timeout(120)


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        (["-p", "preset:=no-such-model"], "unknown preset 'no-such-model'"),
        (["-p", "frame_policy:=sometimes"], "frame_policy='sometimes' is not one of"),
        (["-p", """model_overrides:='{"plm_checkpoint": "/nonexistent/p.torch"}'"""], "/nonexistent/p.torch"),
    ],
)
def test_configure_fails_fast_with_a_clear_message(params: list[str], expected: str) -> None:
    cmd = node_command("/cs_fail", {"preset": "tiny"}, params)
    out = subprocess.run(cmd, cwd="/", capture_output=True, text=True, timeout=90, check=False)
    text = out.stdout + out.stderr
    assert out.returncode == 2, text[-3000:]
    assert "configure failed" in text and expected in text, text[-3000:]


def _cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "converseg_ros.ros.tools.client", *args, "--namespace", NS],
        cwd="/",
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_query_cli_with_an_image_file_saves_the_overlay(node_proc, tmp_path: Path) -> None:  # noqa: ANN001
    rgb = photo(128)
    src = tmp_path / "cup.png"
    cv2.imwrite(str(src), rgb[:, :, ::-1])
    out_png = tmp_path / "out" / "overlay.png"
    out = _cli("the cup", "--image", str(src), "--save-overlay", str(out_png))
    assert out.returncode == 0, out.stdout + out.stderr
    assert "success: True" in out.stdout and "mask: 128x85 mono8" in out.stdout, out.stdout
    overlay = cv2.imread(str(out_png))
    assert overlay is not None and overlay.shape == (85, 128, 3)
    assert not np.array_equal(overlay[:, :, ::-1], rgb)  # tinted / banner drawn
    out = _cli("   ", "--image", str(src))
    assert out.returncode == 1 and "empty query" in out.stdout


def test_replay_photos_and_query_cli_over_topics(ros, node_proc, tmp_path: Path) -> None:  # noqa: ANN001
    """Replay publishes the bundled photo as a camera; the CLI publishes a once-query and waits for the
    result and its overlay."""
    replay = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "converseg_ros.ros.tools.replay",
            "--skimage",
            "coffee",
            "--rate",
            "5",
            "--loop",
            "--max-width",
            "160",
            "--topic",
            f"{NS}/image",
            "--frame-id",
            "replay_cam",
        ],
        cwd="/",
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        frames = Collector(ros, Image, f"{NS}/image")
        assert spin_until(ros, lambda: frames.items, 20.0), "replay published nothing"
        img = frames.items[-1]
        assert (img.width, img.height, img.encoding, img.header.frame_id) == (160, 107, "rgb8", "replay_cam")
        out_png = tmp_path / "topic_overlay.png"
        out = _cli("the cup", "--publish", "--once", "--id", "cli_once", "--save-overlay", str(out_png))
        assert out.returncode == 0, out.stdout + out.stderr
        assert "query cli_once" in out.stdout and "frame: replay_cam" in out.stdout
        assert cv2.imread(str(out_png)).shape == (107, 160, 3)
        tracked = Collector(ros, SegmentationResult, f"{NS}/result")
        out = _cli("the cup", "--publish", "--track", "--id", "cli_track")
        assert out.returncode == 0 and "query cli_track" in out.stdout and "grounded (start)" in out.stdout, out
        mine = lambda: tracked.matching(lambda r: r.query_id == "cli_track")  # noqa: E731
        assert spin_until(ros, lambda: len(mine()) >= 2, 20.0)  # it keeps running on the next frames
        later = mine()[1]  # (the untrained tiny model's low predicted IoU may ground it again: low_iou)
        assert later.success and (later.grounding_reason in ("low_iou", "low_object_score")) == later.grounded
        out = _cli("", "--stop", "--id", "cli_track")
        assert out.returncode == 0 and "stop sent for query cli_track" in out.stdout, out.stdout + out.stderr
        spin_for(ros, 1.5)
        count = len(mine())
        spin_for(ros, 1.5)  # (frames at 5 Hz: a running track would have answered)
        assert len(mine()) == count
    finally:
        replay.terminate()
        replay.wait(10)


def _write_rosbag2(folder: Path, frames: list[np.ndarray]) -> None:
    from rosbags.rosbag2 import StoragePlugin, Writer
    from rosbags.typesys import Stores, get_typestore

    store = get_typestore(Stores.ROS2_KILTED)
    RosImage, Header, Time = (
        store.types[t]
        for t in ("sensor_msgs/msg/Image", "std_msgs/msg/Header", "builtin_interfaces/msg/Time")
    )
    with Writer(folder, version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        conn = writer.add_connection("/rec/color", RosImage.__msgtype__, typestore=store)
        for k, rgb in enumerate(frames):
            msg = RosImage(
                header=Header(stamp=Time(sec=100 + k, nanosec=0), frame_id="rec_cam"),
                height=rgb.shape[0],
                width=rgb.shape[1],
                encoding="rgb8",
                is_bigendian=0,
                step=rgb.shape[1] * 3,
                data=rgb.reshape(-1),
            )
            writer.write(conn, (100 + k) * 10**9, store.serialize_cdr(msg, RosImage.__msgtype__))


@pytest.mark.parametrize("source", ["rosbag2_folder", "mcap_file"])
def test_replay_reads_recorded_bags(ros, tmp_path: Path, source: str) -> None:  # noqa: ANN001
    frames = [photo(64), photo(64)[::-1].copy(), np.zeros((43, 64, 3), np.uint8)]
    bag = tmp_path / "bag"
    _write_rosbag2(bag, frames)
    path = bag if source == "rosbag2_folder" else next(bag.glob("*.mcap"))
    topic = f"/replay_{source}"
    got = Collector(ros, Image, topic)
    cmd = [
        sys.executable,
        "-m",
        "converseg_ros.ros.tools.replay",
        "--bag",
        str(path),
        "--rate",
        "4",
        "--topic",
        topic,
        "--keep-stamps",
        "--wait-subscriber",
        "10",
    ]
    proc = subprocess.Popen(cmd, cwd="/", stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    spin_until(ros, lambda: proc.poll() is not None, 60.0)
    assert proc.returncode == 0, proc.stdout.read()
    assert spin_until(ros, lambda: len(got.items) >= 3, 5.0), f"received {len(got.items)} of 3 frames"
    for msg in got.items:
        k = msg.header.stamp.sec - 100
        assert msg.header.frame_id == "rec_cam" and 0 <= k < 3
        np.testing.assert_array_equal(decode(msg), frames[k])


def test_second_node_with_compressed_input_and_initial_query(ros, tmp_path: Path) -> None:  # noqa: ANN001
    """Two cameras = two namespaces. This one reads CompressedImage (PNG) and starts with the `query`
    parameter active and latched."""
    import array

    from sensor_msgs.msg import CompressedImage

    from converseg_ros.ros.msgs import qos
    from converseg_ros.ros.msgs.interfaces import SegmentationQuery, SegmentationResult

    node = start_node(
        ros, "/cs_second", ["-p", "query:=the table", "-p", "use_compressed:=true"], tmp_path / "second.log"
    )
    try:
        latched = Collector(ros, SegmentationQuery, "/cs_second/active_query", qos.latched_qos())
        got = spin_until(ros, lambda: latched.matching(lambda q: q.text == "the table"), 10.0)
        assert got
        results = Collector(ros, SegmentationResult, "/cs_second/result")
        pub = ros.create_publisher(CompressedImage, "/cs_second/image/compressed", qos.output_qos(1))
        rgb = photo(120)
        ok, png = cv2.imencode(".png", rgb[:, :, ::-1])
        msg = CompressedImage(format="png", data=array.array("B", png.tobytes()))
        msg.header.frame_id = "compressed_cam"
        msg.header.stamp = ros.get_clock().now().to_msg()
        r = spin_until(
            ros,
            lambda: results.matching(lambda r: r.query_id == got[0].id),
            20.0,
            step=lambda: pub.publish(msg),
        )
        assert r, node.output()[-2000:]
        assert r[0].success and r[0].header.frame_id == "compressed_cam"
        assert (r[0].mask.width, r[0].mask.height, r[0].mask.encoding) == (120, rgb.shape[0], "mono8")
    finally:
        assert node.stop() in (0, -2)
