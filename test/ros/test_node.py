"""converseg_node in its own process (tiny preset, Fast DDS on localhost), driven from this process.

The tests share one node process (tests run in file order; the lifecycle test comes last).
"""

from __future__ import annotations

import array

import cv2
import numpy as np
import pytest
import yaml
from lifecycle_msgs.msg import Transition
from lifecycle_msgs.srv import ChangeState, GetState
from rcl_interfaces.srv import GetParameters
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from ros_helpers import (
    Collector,
    Harness,
    call,
    check_mask,
    image_msg,
    photo,
    same_header,
    spin_for,
    spin_until,
)
from ros_nodes import NS, REPO
from sensor_msgs.msg import Image
from std_msgs.msg import String
from std_srvs.srv import SetBool, Trigger

from converseg_ros.msg import SegmentationQuery, SegmentationResult
from converseg_ros.ros.msgs import qos
from converseg_ros.srv import Segment

pytestmark = pytest.mark.timeout(120)
RGB = photo(160)  # 160 x 107
H, W = RGB.shape[:2]


@pytest.fixture(scope="module")
def h(ros, node_proc):  # noqa: ANN001
    harness = Harness(ros, NS, RGB)
    yield harness
    harness.close()


@pytest.fixture(autouse=True)
def _clear_between_tests(h, node_proc):  # noqa: ANN001
    yield
    assert node_proc.alive(), node_proc.output()[-3000:]
    call(h.ros, h.clear, Trigger.Request())


def check_result(r: SegmentationResult, source: Image, qid: str, text: str) -> None:
    assert r.success, r.message
    assert (r.query_id, r.query) == (qid, text)
    assert same_header(r.header, source.header)
    mask = check_mask(r.mask, source.width, source.height, source.header)
    assert 0.0 <= r.score <= 1.0 and r.inference_ms > 0 and r.latency_ms > 0
    for region in r.regions:
        b = region.bbox
        assert (
            region.id.startswith(f"{qid}/")
            and region.query_id == qid
            and same_header(region.header, r.header)
        )
        assert (
            0 <= b.x_offset
            and b.x_offset + b.width <= source.width
            and b.y_offset + b.height <= source.height
        )
        assert (region.mask.width, region.mask.height, region.mask.encoding) == (b.width, b.height, "mono8")
        crop = check_mask(region.mask, b.width, b.height, source.header)
        assert (
            crop.sum() <= region.area_px + 1
            and mask[b.y_offset : b.y_offset + b.height, b.x_offset : b.x_offset + b.width][crop].all()
        )
        assert b.x_offset <= region.centroid_x <= b.x_offset + b.width and not region.has_position


def test_image_then_query(h: Harness) -> None:
    frame = h.send_image("cam_itq")
    h.send_query("itq", "the cup on the saucer")
    r = h.result_for("itq")
    assert r is not None, "no result"
    check_result(r, frame, "itq", "the cup on the saucer")
    mask = spin_until(h.ros, lambda: h.masks.matching(lambda m: same_header(m.header, frame.header)), 5.0)
    assert mask, "no mask on the mask topic"
    check_mask(mask[0], W, H, frame.header)


def test_query_then_image_and_overlay_only_when_subscribed(h: Harness) -> None:
    spin_for(h.ros, 1.2)  # earlier frames are now older than max_image_age_s: the query must wait
    h.send_query("qti", "a place to put a hot pan")
    spin_for(h.ros, 1.0)
    assert h.result_for("qti", timeout=0.1) is None, "answered without a fresh frame"
    frame = h.send_image("cam_qti")
    r = h.result_for("qti")
    assert r is not None
    check_result(r, frame, "qti", "a place to put a hot pan")
    overlay = spin_until(
        h.ros, lambda: h.overlays.matching(lambda m: same_header(m.header, frame.header)), 5.0
    )
    assert overlay and (overlay[0].encoding, overlay[0].width, overlay[0].height) == ("rgb8", W, H)


def test_query_text_topic_and_latched_active_query(h: Harness) -> None:
    h.text_pub.publish(String(data="  the saucer  "))
    spin_for(h.ros, 0.5)
    late = Collector(h.ros, SegmentationQuery, f"{NS}/active_query", qos.latched_qos())  # subscribes late
    got = spin_until(h.ros, lambda: late.matching(lambda q: q.text == "the saucer"), 5.0)
    assert got, f"late subscriber saw {[q.text for q in late.items]}"
    qid = got[0].id
    assert qid and got[0].mode == SegmentationQuery.MODE_CONTINUOUS
    frame = h.send_image("cam_text")
    r = h.result_for(
        qid, pred=lambda r: r.header.frame_id == "cam_text"
    )  # (an earlier fresh frame may come first)
    assert r is not None
    check_result(r, frame, qid, "the saucer")
    call(h.ros, h.clear, Trigger.Request())
    assert spin_until(h.ros, lambda: late.items[-1].text == "", 5.0), "clear_query not latched"


def test_service_inline_image_bgr8_odd_size_with_overlay(h: Harness) -> None:
    rgb = photo(97)
    req = Segment.Request(query="the cup", query_id="svc_inline", return_overlay=True)
    req.image = image_msg(h.ros, rgb, "inline_cam", encoding="bgr8")
    resp = call(h.ros, h.segment, req)
    assert resp.success, resp.message
    check_result(resp.result, req.image, "svc_inline", "the cup")
    assert (resp.overlay.encoding, resp.overlay.width, resp.overlay.height) == ("rgb8", 97, rgb.shape[0])
    assert same_header(resp.overlay.header, req.image.header)
    assert not h.results.matching(lambda r: r.query_id == "svc_inline"), "service answers are not published"


def test_service_camera_latest_and_next(h: Harness) -> None:
    frame = h.send_image("cam_latest")
    resp = call(
        h.ros, h.segment, Segment.Request(query="the cup", query_id="svc_latest", frame_policy="latest")
    )
    assert resp.success, resp.message
    check_result(resp.result, frame, "svc_latest", "the cup")

    future = h.segment.call_async(Segment.Request(query="the cup", query_id="svc_next", frame_policy="next"))
    spin_for(h.ros, 0.5)
    assert not future.done(), "policy next answered without a new frame"
    frame2 = h.send_image("cam_next")
    assert spin_until(h.ros, future.done, 15.0)
    resp = future.result()
    assert resp.success, resp.message
    check_result(resp.result, frame2, "svc_next", "the cup")


def test_service_timeout_and_bad_requests(h: Harness) -> None:
    resp = call(h.ros, h.segment, Segment.Request(query="the cup", frame_policy="next", timeout_s=0.5))
    assert not resp.success and f"no camera frame received on {NS}/image for 0.5 s" in resp.message, resp.message
    resp = call(h.ros, h.segment, Segment.Request(query="   "))
    assert not resp.success and "empty query" in resp.message
    resp = call(h.ros, h.segment, Segment.Request(query="x" * 501))
    assert not resp.success and "max_query_chars" in resp.message
    resp = call(h.ros, h.segment, Segment.Request(query="the cup", frame_policy="sometimes"))
    assert not resp.success and "frame_policy" in resp.message
    h.send_query("bad_topic_query", "")
    r = h.result_for("bad_topic_query", timeout=5.0)
    assert r is not None and not r.success and "empty query" in r.message


def test_waiting_calls_never_starve_the_camera(h: Harness) -> None:
    """Six concurrent `next` calls: four wait (the rest are refused as busy right away) and the frame sent
    while they wait still reaches the node and answers all four."""
    futures = [
        h.segment.call_async(
            Segment.Request(query="the cup", query_id=f"wait{k}", frame_policy="next", timeout_s=20.0)
        )
        for k in range(6)
    ]
    busy = spin_until(
        h.ros, lambda: [f for f in futures if f.done()] if sum(f.done() for f in futures) >= 2 else None, 10.0
    )
    assert busy and all(not f.result().success and "busy" in f.result().message for f in busy)
    spin_for(h.ros, 0.3)
    frame = h.send_image("cam_waiting")
    assert spin_until(h.ros, lambda: all(f.done() for f in futures), 20.0)
    answered = [f.result() for f in futures if f not in busy]
    assert len(answered) == 4
    for resp in answered:
        assert resp.success, resp.message
        assert same_header(resp.result.header, frame.header)


def test_stale_frames_rejected(h: Harness) -> None:
    stale_before = int(h.diag("frames_stale"))
    spin_for(h.ros, 1.2)  # frames of earlier tests turn stale
    h.send_query("stale", "the cup")
    h.send_image("cam_old", age_s=5.0)
    spin_for(h.ros, 1.5)
    assert h.result_for("stale", timeout=0.1) is None, "a 5 s old frame was answered"
    resp = call(h.ros, h.segment, Segment.Request(query="the cup", frame_policy="latest", timeout_s=0.7))
    assert not resp.success and "no camera frame received" in resp.message, resp.message
    assert "s old > max_image_age_s=1.0" in resp.message, resp.message
    assert spin_until(h.ros, lambda: int(h.diag("frames_stale")) > stale_before, 5.0)
    fresh = h.send_image("cam_fresh")
    r = h.result_for("stale")
    assert r is not None
    check_result(r, fresh, "stale", "the cup")


def malformed_images(node) -> list[Image]:  # noqa: ANN001
    """Twenty broken frames: wrong step, truncated data, unknown encodings, zero sizes."""
    bad = []
    for k in range(5):
        m = image_msg(node, RGB, f"bad_step_{k}")
        m.step = W * 3 - 1 - k  # shorter than a row
        bad.append(m)
        m = image_msg(node, RGB, f"bad_trunc_{k}")
        m.data = array.array("B", bytes(m.data)[: (k + 1) * 100])
        bad.append(m)
        m = image_msg(node, RGB, f"bad_enc_{k}")
        m.encoding = ["rgb9", "16UC1", "64FC4", "", "jpeg"][k]  # unknown, depth, unknown, none, compressed
        bad.append(m)
        m = image_msg(node, RGB, f"bad_zero_{k}")
        if k % 2:
            m.width, m.step = 0, 0
        else:
            m.height = 0
        bad.append(m)
    return bad


def test_malformed_frames_are_rejected_in_the_callback(h: Harness, node_proc) -> None:  # noqa: ANN001
    """Twenty malformed frames never reach the model (no 'bad image' results), are counted, and the next good
    frame is answered; the service still reports a malformed inline image."""
    spin_for(h.ros, 1.2)  # no fresh frame left: every answer below comes from the frames sent here
    rejected_before = int(h.fresh_diag("frames_rejected"))
    h.send_query("robust", "the cup")
    spin_for(h.ros, 0.2)
    for m in malformed_images(h.ros):
        h.image_pub.publish(m)
        spin_for(h.ros, 0.05)
    spin_for(h.ros, 1.0)
    assert not h.results.matching(lambda r: r.query_id == "robust"), "a malformed frame reached the model"
    assert spin_until(h.ros, lambda: int(h.fresh_diag("frames_rejected")) >= rejected_before + 15, 5.0)
    assert h.diag("last_frame_rejected"), "no reason for the rejected frames"
    assert node_proc.alive()
    good = h.send_image("cam_good")
    r = h.result_for("robust", pred=lambda r: r.header.frame_id == "cam_good")
    assert r is not None, node_proc.output()[-2000:]
    check_result(r, good, "robust", "the cup")
    assert "camera frame rejected" in node_proc.output()
    for m in malformed_images(h.ros)[::5]:  # the service reports them too
        resp = call(h.ros, h.segment, Segment.Request(query="the cup", image=m))
        assert not resp.success and "bad image" in resp.message, resp.message


def test_once_query_after_a_malformed_frame_is_answered_on_a_good_one(h: Harness) -> None:
    """Issue 7 item 4: good frame, then a raw Image claiming encoding 'jpeg', then a once-query: it is
    answered on the good frame (before, the newest frame, the malformed one, answered it with 'bad image')."""
    spin_for(h.ros, 1.2)
    good = h.send_image("cam_before_jpeg")
    bad = image_msg(h.ros, RGB, "cam_jpeg")
    bad.encoding = "jpeg"
    h.image_pub.publish(bad)
    spin_for(h.ros, 0.2)
    h.send_query("after_jpeg", "the cup", once=True)
    r = h.result_for("after_jpeg")
    assert r is not None, "once-query not answered"
    check_result(r, good, "after_jpeg", "the cup")
    assert "jpeg" in h.fresh_diag("last_frame_rejected")
    later = h.send_image("cam_after_jpeg")
    h.send_query("after_jpeg_2", "the saucer", once=True)
    r = h.result_for("after_jpeg_2")
    assert r is not None
    check_result(r, later, "after_jpeg_2", "the saucer")


def test_once_query_without_camera_fails_after_frame_timeout(h: Harness) -> None:
    """A once-query never waits forever: with no camera frame it is answered, failed, after frame_timeout_s
    (lowered at run time here), naming the topic."""
    from rcl_interfaces.msg import Parameter, ParameterType, ParameterValue
    from rcl_interfaces.srv import SetParameters

    client = h.ros.create_client(SetParameters, f"{NS}/converseg_node/set_parameters")

    def set_timeout(value: float) -> None:
        value_msg = ParameterValue(type=ParameterType.PARAMETER_DOUBLE, double_value=value)
        request = SetParameters.Request(parameters=[Parameter(name="frame_timeout_s", value=value_msg)])
        resp = call(h.ros, client, request)
        assert resp.results[0].successful, resp.results[0].reason

    set_timeout(1.5)
    try:
        spin_for(h.ros, 1.2)  # the latest frame is stale now
        h.send_query("no_camera", "the cup", once=True)
        r = h.result_for("no_camera", timeout=10.0)
        assert r is not None, "the once-query was never answered"
        assert not r.success and f"no camera frame received on {NS}/image for 1.5 s" in r.message, r.message
        resp = call(h.ros, h.segment, Segment.Request(query="the cup", frame_policy="next"))
        assert not resp.success and f"no camera frame received on {NS}/image for 1.5 s" in resp.message
    finally:
        set_timeout(5.0)


def test_once_query_and_enable(h: Harness) -> None:
    call(h.ros, h.enable, SetBool.Request(data=False))
    h.send_query("paused", "the cup")
    h.send_image("cam_paused")
    spin_for(h.ros, 1.0)
    assert h.result_for("paused", timeout=0.1) is None, "disabled node answered a topic query"
    h.send_image("cam_paused_2")
    resp = call(
        h.ros, h.segment, Segment.Request(query="the cup", query_id="svc_paused", frame_policy="latest")
    )
    assert resp.success, "the service must keep answering while disabled"
    call(h.ros, h.enable, SetBool.Request(data=True))
    call(h.ros, h.clear, Trigger.Request())
    spin_for(h.ros, 1.2)
    h.send_query("once", "the saucer", once=True)
    first = h.send_image("cam_once_1")
    r = h.result_for("once")
    assert r is not None
    check_result(r, first, "once", "the saucer")
    h.send_image("cam_once_2")
    spin_for(h.ros, 1.0)
    assert len(h.results.matching(lambda r: r.query_id == "once")) == 1, "a once-query was answered twice"


def test_newest_frame_wins_and_frames_never_queue(h: Harness) -> None:
    """20 large frames published back to back (faster than the model): most are dropped, never queued; the
    answers come in frame order and the newest frame is answered."""
    big = photo(640)
    spin_for(h.ros, 1.2)
    h.send_query("burst", "the cup")
    spin_for(h.ros, 0.3)
    for k in range(20):
        h.image_pub.publish(image_msg(h.ros, big, f"burst_{k:02d}"))
    last = image_msg(h.ros, big, "burst_zz")  # sorts after burst_NN
    r = h.result_for(
        "burst", pred=lambda r: r.header.frame_id == "burst_zz", step=lambda: h.image_pub.publish(last)
    )
    assert r is not None, "the newest frame was not answered"
    spin_for(h.ros, 0.3)
    seen = [r.header.frame_id for r in h.results.matching(lambda r: r.query_id == "burst")]
    burst = [f for f in seen if f != "burst_zz"]
    assert len(burst) <= 12, f"{len(burst)} of 20 burst frames answered: frames queue behind the model"
    assert seen == sorted(seen), seen  # never an older frame after a newer one


def test_queries_on_one_frame_share_its_encoding(h: Harness) -> None:
    spin_for(h.ros, 1.2)
    h.send_query("share_a", "the cup")
    frame = h.send_image("cam_share")
    first = h.result_for("share_a", pred=lambda r: r.header.frame_id == "cam_share")
    assert first is not None and first.encode_ms > 0
    resp = call(
        h.ros, h.segment, Segment.Request(query="the saucer", query_id="share_b", frame_policy="latest")
    )
    assert resp.success, resp.message
    check_result(resp.result, frame, "share_b", "the saucer")
    assert resp.result.encode_ms == 0.0, "the frame was encoded again for a second query"


CAMERA_QOS = {  # what camera drivers publish with: rclcpp's default (reliable) and the sensor-data profile
    "reliable": QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=10, reliability=ReliabilityPolicy.RELIABLE),
    "best_effort": QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=5, reliability=ReliabilityPolicy.BEST_EFFORT),
}


def camera_frames(h: Harness, pub, count: int, rate_hz: float) -> int:  # noqa: ANN001
    """Publish ``count`` 640x480 rgb8 frames at ``rate_hz`` like a camera; how many the node received."""
    vga = np.ascontiguousarray(cv2.resize(photo(640), (640, 480)))
    before = int(h.fresh_diag("frames_received"))
    for k in range(count):
        pub.publish(image_msg(h.ros, vga, f"camera_{k:03d}"))
        spin_for(h.ros, 1.0 / rate_hz)
    spin_for(h.ros, 1.0)
    return int(h.fresh_diag("frames_received")) - before


@pytest.mark.parametrize("kind", ["reliable", "best_effort"])
def test_camera_qos_is_matched_and_640x480_frames_arrive(h: Harness, node_proc, kind: str) -> None:  # noqa: ANN001
    """image_reliability: auto. A camera publishing 640x480 rgb8 at 5 Hz with a driver's QoS: the node
    subscribes with what it offers (best effort as soon as one best-effort publisher is there, reliable again
    once only reliable ones are left) and receives at least 95 % of the frames; a once-query is answered."""
    pub = h.ros.create_publisher(Image, f"{NS}/image", CAMERA_QOS[kind])
    try:
        assert spin_until(h.ros, lambda: h.fresh_diag("image_reliability") == kind, 10.0), node_proc.output()[-2000:]
        assert spin_until(h.ros, lambda: pub.get_subscription_count() > 0, 10.0)
        logged = f"input {NS}/image: subscribed " + (
            "best_effort (2 publisher(s) offering best_effort + reliable)"
            if kind == "best_effort"
            else "reliable (1 publisher(s) offering reliable)"  # unchanged by a second reliable publisher
        )
        assert logged in node_proc.output(), node_proc.output()[-2000:]
        received = camera_frames(h, pub, 20, 5.0)
        assert received >= 19, f"{kind} camera: the node received {received} of 20 frames"
        h.send_query(f"camera_{kind}", "the cup", once=True)
        r = h.result_for(f"camera_{kind}", step=lambda: pub.publish(image_msg(h.ros, RGB, "camera_last")))
        assert r is not None and r.success, r and r.message
    finally:
        h.ros.destroy_publisher(pub)
    assert spin_until(h.ros, lambda: h.fresh_diag("image_reliability") == "reliable", 10.0)


def test_depth_gives_3d_positions_and_markers(h: Harness) -> None:
    from sensor_msgs.msg import CameraInfo
    from visualization_msgs.msg import Marker, MarkerArray

    from converseg_ros.ros.msgs.image_codec import encode

    markers = Collector(h.ros, MarkerArray, f"{NS}/markers", qos.output_qos(1))
    depth_pub = h.ros.create_publisher(Image, f"{NS}/depth", qos.output_qos(1))
    info_pub = h.ros.create_publisher(CameraInfo, f"{NS}/camera_info", qos.output_qos(1))
    spin_until(h.ros, lambda: depth_pub.get_subscription_count() and info_pub.get_subscription_count(), 10.0)
    spin_for(h.ros, 1.2)
    frame = image_msg(h.ros, RGB, "cam_depth")
    fx, cx, cy = 100.0, W / 2, H / 2
    info = CameraInfo(header=frame.header, width=W, height=H, k=[fx, 0.0, cx, 0.0, fx, cy, 0.0, 0.0, 1.0])
    depth = encode(np.full((H // 2, W // 2), 1500, np.uint16), "16UC1", Image(), frame.header)  # half size
    for _ in range(3):
        info_pub.publish(info)
        depth_pub.publish(depth)
        spin_for(h.ros, 0.05)
    h.send_query("depth", "the cup")
    for _ in range(3):
        h.image_pub.publish(frame)
        spin_for(h.ros, 0.03)
    r = h.result_for("depth", pred=lambda r: r.header.frame_id == "cam_depth")
    assert r is not None and r.regions
    for region in r.regions:
        assert region.has_position
        assert region.position.z == pytest.approx(1.5, abs=1e-3)
        assert region.position.x == pytest.approx((region.centroid_x - cx) * 1.5 / fx, abs=1e-3)
        assert region.position.y == pytest.approx((region.centroid_y - cy) * 1.5 / fx, abs=1e-3)
    got = spin_until(
        h.ros, lambda: markers.matching(lambda m: same_header(m.markers[0].header, frame.header)), 5
    )
    assert got, "no markers for the frame"
    ms = got[0].markers
    assert ms[0].action == Marker.DELETEALL
    spheres = [m for m in ms if m.type == Marker.SPHERE]
    assert len(spheres) == len(r.regions) and all(m.ns == "depth" for m in spheres)


def test_params_yaml_loaded(h: Harness) -> None:
    shipped = yaml.safe_load((REPO / "config" / "segment.yaml").read_text())["/**"]["ros__parameters"]
    names = sorted(set(shipped) - {"preset", "device", "use_depth"})  # overridden for the tests
    client = h.ros.create_client(GetParameters, f"{NS}/converseg_node/get_parameters")
    resp = call(h.ros, client, GetParameters.Request(names=names + ["preset"]))
    from rclpy.parameter import parameter_value_to_python

    got = dict(zip(names + ["preset"], (parameter_value_to_python(v) for v in resp.values), strict=True))
    assert got["preset"] == "tiny"
    assert {n: got[n] for n in names} == {n: shipped[n] for n in names}


def test_runtime_parameters(h: Harness) -> None:
    from rcl_interfaces.msg import Parameter, ParameterType, ParameterValue
    from rcl_interfaces.srv import SetParameters

    client = h.ros.create_client(SetParameters, f"{NS}/converseg_node/set_parameters")
    late = Collector(h.ros, SegmentationQuery, f"{NS}/active_query", qos.latched_qos())

    def param(name: str, value: str) -> Parameter:
        return Parameter(
            name=name, value=ParameterValue(type=ParameterType.PARAMETER_STRING, string_value=value)
        )

    resp = call(h.ros, client, SetParameters.Request(parameters=[param("query", "the handle of the cup")]))
    assert resp.results[0].successful, resp.results[0].reason
    assert spin_until(h.ros, lambda: late.items and late.items[-1].text == "the handle of the cup", 5.0)
    resp = call(h.ros, client, SetParameters.Request(parameters=[param("frame_policy", "sometimes")]))
    assert not resp.results[0].successful and "frame_policy" in resp.results[0].reason
    resp = call(h.ros, client, SetParameters.Request(parameters=[param("device", "cuda")]))
    assert not resp.results[0].successful  # read-only after start: change it and re-configure
    resp = call(h.ros, client, SetParameters.Request(parameters=[param("preset", "no-such-preset")]))
    assert not resp.results[0].successful and "no-such-preset" in resp.results[0].reason  # (a swap: checked first)
    resp = call(h.ros, client, SetParameters.Request(parameters=[param("query", "")]))
    assert resp.results[0].successful and spin_until(h.ros, lambda: late.items[-1].text == "", 5.0)


def test_deactivate_frees_and_activate_reloads(h: Harness, node_proc) -> None:  # noqa: ANN001
    change = h.ros.create_client(ChangeState, f"{NS}/converseg_node/change_state")
    state = h.ros.create_client(GetState, f"{NS}/converseg_node/get_state")
    assert call(
        h.ros, change, ChangeState.Request(transition=Transition(id=Transition.TRANSITION_DEACTIVATE))
    ).success
    assert call(h.ros, state, GetState.Request()).current_state.label == "inactive"
    assert "inactive: model freed" in node_proc.output()
    resp = call(h.ros, h.segment, Segment.Request(query="the cup", frame_policy="latest", timeout_s=1.0))
    assert not resp.success and "not active" in resp.message
    assert call(
        h.ros,
        change,
        ChangeState.Request(transition=Transition(id=Transition.TRANSITION_ACTIVATE)),
        timeout=60,
    ).success
    assert call(h.ros, state, GetState.Request()).current_state.label == "active"
    assert node_proc.output().count("model loaded in") == 2
    req = Segment.Request(query="the cup", query_id="after_reload")
    req.image = image_msg(h.ros, RGB, "cam_reload")
    resp = call(h.ros, h.segment, req)
    assert resp.success, resp.message
    check_result(resp.result, req.image, "after_reload", "the cup")
