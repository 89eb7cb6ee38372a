"""One converseg_node serving three cameras with one model, over real DDS (tiny preset): per-camera topics,
queries that name a camera, fair scheduling with one fast camera, malformed frames on one camera, per-camera
diagnostics."""

from __future__ import annotations

import time

import pytest
from camera_helpers import camera_diagnostics, malformed_frames, wait_for_camera_diagnostics
from diagnostic_msgs.msg import DiagnosticArray
from ros_helpers import Collector, call, image_msg, photo, spin_for, spin_until
from ros_nodes import start_node
from sensor_msgs.msg import Image
from std_msgs.msg import String
from std_srvs.srv import Trigger

from converseg_ros.msg import SegmentationQuery, SegmentationResult
from converseg_ros.ros.compat import publisher_count
from converseg_ros.ros.msgs import qos
from converseg_ros.srv import Segment

pytestmark = pytest.mark.timeout(180)
NS = "/cs_multi"
CAMERAS = ("fast", "slow_a", "slow_b")  # the fast one first: plain first-come scheduling would starve the others
RGB = photo(96)


class Cameras:
    """Publishers and result collectors of the three cameras, the query topics and services of the node."""

    def __init__(self, ros) -> None:  # noqa: ANN001
        self.ros = ros
        self.image = {c: ros.create_publisher(Image, f"{NS}/{c}/image", qos.output_qos(1)) for c in CAMERAS}
        self.results = {c: Collector(ros, SegmentationResult, f"{NS}/{c}/result") for c in CAMERAS}
        self.query_pub = ros.create_publisher(SegmentationQuery, f"{NS}/query", qos.command_qos())
        self.text_pub = ros.create_publisher(String, f"{NS}/query_text", qos.command_qos())
        self.diagnostics = Collector(ros, DiagnosticArray, "/diagnostics")
        self.segment = ros.create_client(Segment, f"{NS}/segment")
        self.clear = ros.create_client(Trigger, f"{NS}/clear_query")
        assert spin_until(
            ros,
            lambda: all(p.get_subscription_count() for p in self.image.values())
            and self.query_pub.get_subscription_count()
            and all(publisher_count(ros, r.sub) for r in self.results.values()),
            20.0,
        )
        for camera in CAMERAS:  # image_reliability: auto follows our reliable publishers
            assert wait_for_camera_diagnostics(
                ros, self.diagnostics.items, status(camera), "image_reliability", lambda v: v == "reliable"
            ), camera

    def send(self, camera: str, frame_id: str, msg: Image | None = None) -> Image:
        msg = msg or image_msg(self.ros, RGB, frame_id)
        self.image[camera].publish(msg)
        return msg

    def query(self, qid: str, text: str, mode: int = 0, camera: str = "") -> None:
        msg = SegmentationQuery(id=qid, text=text, mode=mode, camera=camera)
        msg.header.stamp = self.ros.get_clock().now().to_msg()
        self.query_pub.publish(msg)

    def answered(self, camera: str, qid: str) -> list[SegmentationResult]:
        return self.results[camera].matching(lambda r: r.query_id == qid)


def status(camera: str) -> str:
    return f"{NS}/converseg_node: camera {camera}"


@pytest.fixture(scope="module")
def cams(ros, tmp_path_factory):  # noqa: ANN001, ANN201
    log = tmp_path_factory.mktemp("multi") / "converseg_node.log"
    node = start_node(ros, NS, ["-p", f"cameras:=[{', '.join(CAMERAS)}]"], log)
    try:
        yield Cameras(ros), node
    finally:
        assert node.stop() in (0, -2), node.output()[-3000:]


@pytest.fixture(autouse=True)
def _clear_between_tests(cams):  # noqa: ANN001
    yield
    call(cams[0].ros, cams[0].clear, Trigger.Request())


def test_queries_name_their_camera_and_results_come_on_its_topics(cams) -> None:  # noqa: ANN001
    h, node = cams
    assert "cameras: fast, slow_a, slow_b" in node.output()
    h.query("named", "the cup", SegmentationQuery.MODE_ONCE, camera="slow_b")
    frames = {c: h.send(c, f"{c}_named") for c in CAMERAS}
    got = spin_until(h.ros, lambda: h.answered("slow_b", "named"), 20.0)
    assert got and got[0].success and got[0].camera == "slow_b", got and got[0].message
    assert got[0].header.frame_id == frames["slow_b"].header.frame_id
    spin_for(h.ros, 0.5)
    assert not h.answered("fast", "named") and not h.answered("slow_a", "named")

    h.query("everywhere", "the saucer", SegmentationQuery.MODE_ONCE)  # "" = every camera, once each
    for c in CAMERAS:
        h.send(c, f"{c}_every")
    assert spin_until(h.ros, lambda: all(h.answered(c, "everywhere") for c in CAMERAS), 20.0)
    spin_for(h.ros, 0.5)
    assert [len(h.answered(c, "everywhere")) for c in CAMERAS] == [1, 1, 1]
    assert {h.answered(c, "everywhere")[0].camera for c in CAMERAS} == set(CAMERAS)

    h.query("typo", "the cup", camera="slow_c")
    assert spin_until(h.ros, lambda: all(h.answered(c, "typo") for c in CAMERAS), 10.0)
    refused = h.answered("fast", "typo")[0]
    assert not refused.success and "unknown camera 'slow_c'" in refused.message, refused.message

    resp = call(h.ros, h.segment, Segment.Request(query="the cup", query_id="svc_a", camera="slow_a"))
    assert resp.success and resp.result.camera == "slow_a", resp.message
    assert resp.result.header.frame_id == "slow_a_every"
    resp = call(h.ros, h.segment, Segment.Request(query="the cup", camera="slow_c"))
    assert not resp.success and "unknown camera 'slow_c'" in resp.message


def test_query_text_is_continuous_on_every_camera_and_latched_per_camera(cams) -> None:  # noqa: ANN001
    h, _ = cams
    latched = {c: Collector(h.ros, SegmentationQuery, f"{NS}/{c}/active_query", qos.latched_qos()) for c in CAMERAS}
    h.text_pub.publish(String(data="the table"))
    got = spin_until(h.ros, lambda: all(any(q.text == "the table" for q in latched[c].items) for c in CAMERAS), 10.0)
    assert got, {c: [q.text for q in latched[c].items] for c in CAMERAS}
    qid = latched["fast"].items[-1].id
    assert {latched[c].items[-1].camera for c in CAMERAS} == set(CAMERAS)
    h.query(qid + "_wrist", "the cup", camera="slow_a")  # replaces the continuous query of slow_a only
    assert spin_until(h.ros, lambda: latched["slow_a"].items[-1].text == "the cup", 10.0)
    assert latched["fast"].items[-1].text == "the table" and latched["slow_b"].items[-1].text == "the table"


def test_a_fast_camera_does_not_starve_the_slow_ones(cams) -> None:  # noqa: ANN001
    """One camera at 30 Hz, two at 2 Hz, one continuous query on all three: each slow camera still has most
    of its frames answered (round robin over the cameras' newest frames)."""
    h, _ = cams
    h.query("fair", "the cup")
    spin_for(h.ros, 0.3)
    sent = {c: [] for c in CAMERAS}
    start = time.monotonic()
    next_slow = start
    k = 0
    while time.monotonic() - start < 6.0:
        sent["fast"].append(h.send("fast", f"fast_{k:03d}").header.frame_id)
        if time.monotonic() >= next_slow:
            for c in ("slow_a", "slow_b"):
                sent[c].append(h.send(c, f"{c}_{len(sent[c]):02d}").header.frame_id)
            next_slow += 0.5
        k += 1
        spin_for(h.ros, 1 / 30)
    spin_for(h.ros, 2.0)
    answered = {c: {r.header.frame_id for r in h.answered(c, "fair") if r.success} & set(sent[c]) for c in CAMERAS}
    counts = {c: f"{len(answered[c])}/{len(sent[c])}" for c in CAMERAS}
    print("answered frames per camera:", counts)
    for c in ("slow_a", "slow_b"):
        assert len(answered[c]) >= len(sent[c]) // 2, counts
    assert len(answered["fast"]) >= 5, counts
    fast = camera_diagnostics(h.diagnostics.items, status("fast"))
    assert int(fast["frames_dropped_overwritten"]) > 0, fast  # the fast camera's extra frames are dropped


def test_malformed_frames_on_one_camera_leave_the_others_untouched(cams) -> None:  # noqa: ANN001
    h, node = cams
    h.query("robust", "the cup")
    spin_for(h.ros, 0.3)
    before = {c: int(camera_diagnostics(h.diagnostics.items, status(c)).get("frames_rejected", 0)) for c in CAMERAS}
    for k, bad in enumerate(malformed_frames(h.ros, RGB, "slow_a_bad")):
        h.send("slow_a", "", bad)
        h.send("slow_b", f"slow_b_during_{k}")
        spin_for(h.ros, 0.15)
    assert spin_until(h.ros, lambda: h.answered("slow_b", "robust"), 10.0), "slow_b starved by slow_a's bad frames"
    spin_for(h.ros, 1.0)
    assert not h.answered("slow_a", "robust"), [r.message for r in h.answered("slow_a", "robust")]
    values = wait_for_camera_diagnostics(
        h.ros, h.diagnostics.items, status("slow_a"), "frames_rejected", lambda v: int(v) >= before["slow_a"] + 8
    )
    assert values and "slow_a_bad" not in values["last_frame_rejected"] and values["last_frame_rejected"]
    assert int(camera_diagnostics(h.diagnostics.items, status("slow_b"))["frames_rejected"]) == before["slow_b"]
    assert all(r.success for r in h.answered("slow_b", "robust"))
    assert "camera frame rejected (camera slow_a)" in node.output()
    good = h.send("slow_a", "slow_a_good")
    got = spin_until(h.ros, lambda: h.answered("slow_a", "robust"), 15.0)
    assert got and got[0].success and got[0].header.frame_id == good.header.frame_id


def test_per_camera_diagnostics(cams) -> None:  # noqa: ANN001
    h, _ = cams
    h.query("diag", "the cup", camera="fast")
    h.send("fast", "fast_diag")
    assert spin_until(h.ros, lambda: h.answered("fast", "diag"), 15.0)
    values = wait_for_camera_diagnostics(
        h.ros, h.diagnostics.items, status("fast"), "active_query", lambda v: v == "the cup"
    )
    assert values and values["camera"] == "fast" and values["image_topic"] == f"{NS}/fast/image"
    assert int(values["frames_encoded"]) >= 1 and int(values["queries_answered"]) >= 1
    name = f"{NS}/converseg_node: inference"  # /diagnostics is shared: the newest message of this node
    top = next(s for msg in reversed(h.diagnostics.items) for s in msg.status if s.name == name)
    keys = {kv.key: kv.value for kv in top.values}
    assert keys["cameras"] == "fast,slow_a,slow_b" and "pending_jobs" in keys
    per_camera = sum(int(camera_diagnostics(h.diagnostics.items, status(c))["frames_received"]) for c in CAMERAS)
    assert 0 <= per_camera - int(keys["frames_received"]) <= 5  # (read one after the other in one message)


def test_query_tool_without_camera_addresses_every_camera(cams) -> None:  # noqa: ANN001
    """converseg-query on a multi-camera node without --camera: --stop goes to every camera at once, and a
    --publish --once query is answered (and printed) once per camera; --save-overlay names the choices."""
    import subprocess
    import sys

    c, _ = cams
    tool = [sys.executable, "-m", "converseg_ros.ros.tools.client", "--namespace", NS, "--wait-service", "20"]
    start = time.monotonic()
    stop = subprocess.run(tool + ["", "--stop", "--id", "cup"], capture_output=True, text=True, timeout=60)
    assert stop.returncode == 0 and "stop sent for query cup" in stop.stdout, stop.stdout + stop.stderr
    assert time.monotonic() - start < 20.0
    once = subprocess.Popen(tool + ["the cup", "--publish", "--once", "--id", "cli_all", "--timeout", "60"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert spin_until(c.ros, lambda: all(c.answered(cam, "cli_all") for cam in CAMERAS) or once.poll() is not None,
                      60.0, step=lambda: [c.send(cam, f"cli_{cam}") for cam in CAMERAS])
    out, _ = once.communicate(timeout=60)
    assert once.returncode == 0, out
    assert all(f"camera: {cam}" in out for cam in CAMERAS), out
    overlay = subprocess.run(tool + ["the cup", "--publish", "--save-overlay", "/tmp/never.png"],
                             capture_output=True, text=True, timeout=60)
    assert overlay.returncode == 2 and "needs --camera: this node has cameras fast, slow_a, slow_b" in overlay.stderr
