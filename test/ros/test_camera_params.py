"""Per-camera parameters over real DDS (tiny preset): a head camera limited to 2 Hz and a wrist camera to its
own 10 Hz, depth subscribed on the head only, a frame_id override on the wrist only, a run-time change to one
camera that leaves the other alone, and changes refused by their declarations."""

from __future__ import annotations

import statistics
import time

import pytest
from camera_helpers import camera_diagnostics, wait_for_camera_diagnostics
from diagnostic_msgs.msg import DiagnosticArray
from rcl_interfaces.srv import SetParameters
from rclpy.parameter import Parameter
from ros_helpers import Collector, call, image_msg, photo, spin_for, spin_until
from ros_nodes import start_node
from sensor_msgs.msg import Image

from converseg_ros.msg import SegmentationQuery, SegmentationResult
from converseg_ros.ros.msgs import qos

pytestmark = pytest.mark.timeout(240)
NS = "/cs_camparams"
NODE = f"{NS}/converseg_node"
RGB = photo(96)
START = [
    "-p", "cameras:=[head, wrist]",
    "-p", "head.max_rate_hz:=2.0", "-p", "wrist.max_rate_hz:=10",  # an int: camera values are coerced
    "-p", "head.use_depth:=true",
    "-p", "wrist.frame_id_override:=wrist_optical",
]


def status(camera: str) -> str:
    return f"{NODE}: camera {camera}"


@pytest.fixture(scope="module")
def rig(ros, tmp_path_factory):  # noqa: ANN001, ANN201
    node = start_node(ros, NS, START, tmp_path_factory.mktemp("camparams") / "node.log")
    pubs = {c: ros.create_publisher(Image, f"{NS}/{c}/image", qos.output_qos(1)) for c in ("head", "wrist")}
    results = {c: Collector(ros, SegmentationResult, f"{NS}/{c}/result") for c in ("head", "wrist")}
    diagnostics = Collector(ros, DiagnosticArray, "/diagnostics")
    query = ros.create_publisher(SegmentationQuery, f"{NS}/query", qos.command_qos())
    assert spin_until(ros, lambda: all(p.get_subscription_count() for p in pubs.values()), 20.0)
    try:
        yield node, pubs, results, diagnostics, query
    finally:
        assert node.stop() in (0, -2), node.output()[-3000:]


def set_params(ros, **values) -> list:  # noqa: ANN001, ANN003
    client = ros.create_client(SetParameters, f"{NODE}/set_parameters")
    request = SetParameters.Request(
        parameters=[Parameter(name.replace("__", "."), value=v).to_parameter_msg() for name, v in values.items()]
    )
    resp = call(ros, client, request)
    ros.destroy_client(client)
    return resp.results


def test_each_camera_has_its_own_rate_depth_and_frame_id(ros, rig) -> None:  # noqa: ANN001
    node, pubs, results, _diagnostics, query = rig
    def subs(topic: str) -> int:
        return len(ros.get_subscriptions_info_by_topic(f"{NS}/{topic}"))

    assert spin_until(ros, lambda: subs("head/depth") == 1 and subs("head/camera_info") == 1, 10.0)
    assert subs("wrist/depth") == 0 and subs("wrist/camera_info") == 0  # use_depth on the head only
    query.publish(SegmentationQuery(id="c", text="the cup", mode=SegmentationQuery.MODE_CONTINUOUS))
    spin_for(ros, 0.5)
    start = time.monotonic()
    while time.monotonic() - start < 5.0:  # both cameras at 20 Hz, frames without a frame_id
        for pub in pubs.values():
            pub.publish(image_msg(ros, RGB, ""))
        spin_for(ros, 0.05)
    spin_for(ros, 1.0)
    got = {c: [r for r in results[c].items if r.query_id == "c" and r.success] for c in pubs}
    stamps = {c: [r.header.stamp.sec + r.header.stamp.nanosec * 1e-9 for r in got[c]] for c in got}
    gaps = {c: [b - a for a, b in zip(s, s[1:], strict=False)] for c, s in stamps.items()}
    print({c: len(v) for c, v in got.items()}, {c: round(min(g), 3) for c, g in gaps.items() if g})
    assert 2 <= len(got["head"]) <= 12, len(got["head"])  # at most 2 Hz over ~5 s
    # (the source stamps of the frames answered: a frame may wait a little before the worker takes it)
    assert statistics.median(gaps["head"]) >= 0.45
    assert len(got["wrist"]) >= len(got["head"]) + 3, (len(got["wrist"]), len(got["head"]))
    assert len(got["wrist"]) <= 10 * 5.5 + 1 and statistics.median(gaps["wrist"]) >= 0.09
    assert {r.header.frame_id for r in got["wrist"]} == {"wrist_optical"}
    assert {r.header.frame_id for r in got["head"]} == {""}


def test_a_runtime_change_to_one_camera_leaves_the_other_alone(ros, rig) -> None:  # noqa: ANN001
    _node, _pubs, _results, diagnostics, _query = rig
    head = wait_for_camera_diagnostics(ros, diagnostics.items, status("head"), "setting.max_rate_hz", bool)
    assert head["setting.max_rate_hz"] == "2.0" and head["setting.use_depth"] == "True"
    assert [r.successful for r in set_params(ros, wrist__max_rate_hz=1.5, wrist__overlay_alpha=0.2)] == [True] * 2
    wrist = wait_for_camera_diagnostics(
        ros, diagnostics.items, status("wrist"), "setting.max_rate_hz", lambda v: v == "1.5"
    )
    assert wrist["setting.overlay_alpha"] == "0.2"
    head = camera_diagnostics(diagnostics.items, status("head"))
    assert head["setting.max_rate_hz"] == "2.0" and head["setting.overlay_alpha"] == "0.5"
    # node-wide: cameras without their own value follow it (overlay_alpha on the head), the others keep theirs
    assert set_params(ros, overlay_alpha=0.8, max_rate_hz=4.0)[0].successful
    head = wait_for_camera_diagnostics(
        ros, diagnostics.items, status("head"), "setting.overlay_alpha", lambda v: v == "0.8"
    )
    assert head["setting.max_rate_hz"] == "2.0"
    assert camera_diagnostics(diagnostics.items, status("wrist"))["setting.overlay_alpha"] == "0.2"


def test_changes_are_checked_against_their_declarations(ros, rig) -> None:  # noqa: ANN001
    [bad_rate] = set_params(ros, head__max_rate_hz=-1.0)
    assert not bad_rate.successful and "head.max_rate_hz=-1.0 is outside [0, 1e+06]" in bad_rate.reason
    [bad_type] = set_params(ros, wrist__max_rate_hz="fast")
    assert not bad_type.successful and "wrist.max_rate_hz='fast' is not a float" in bad_type.reason
    [read_only] = set_params(ros, wrist__use_depth=True)  # camera inputs are fixed once subscribed
    assert not read_only.successful
    [timeout] = set_params(ros, frame_timeout_s=0.0)  # refused at configure, and now at run time too
    assert not timeout.successful and "frame_timeout_s" in timeout.reason
    [alpha] = set_params(ros, head__overlay_alpha=1.5)
    assert not alpha.successful and "outside [0, 1]" in alpha.reason
