"""Start-up parameters of converseg_node, each compared with the shared node (the defaults) on the same
frames: a second node reading CompressedImage JPEG with ``frame_id_override``, ``publish_region_masks:
false``, ``contour_max_points: 5`` and ``image_depth: 20``."""

from __future__ import annotations

import array
from collections.abc import Iterator

import cv2
import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.node import Node
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from ros_helpers import Collector, call, check_mask, image_msg, photo, spin_for, spin_until
from ros_nodes import NS, NodeProcess, start_node
from sensor_msgs.msg import CompressedImage, Image
from std_srvs.srv import Trigger

from converseg_ros.ros.msgs.interfaces import SegmentationQuery, SegmentationResult
from converseg_ros.srv import Segment

pytestmark = pytest.mark.timeout(180)
OPT = "/cs_options"
OVERRIDE = "override_cam"
CONTOUR_POINTS = 5
DEPTH = 20
RGB = photo(160, "chelsea")
BURST_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=DEPTH, reliability=ReliabilityPolicy.RELIABLE)


@pytest.fixture(scope="module")
def opt(ros: Node, node_proc: NodeProcess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    params = {
        "use_compressed": "true",
        "frame_id_override": OVERRIDE,
        "publish_region_masks": "false",
        "contour_max_points": str(CONTOUR_POINTS),
        "image_depth": str(DEPTH),
    }
    extra = [arg for name, value in params.items() for arg in ("-p", f"{name}:={value}")]
    node = start_node(ros, OPT, extra, tmp_path_factory.mktemp("opt") / "options.log")
    yield node
    assert node.stop() in (0, -2), node.output()[-3000:]


def jpeg(rgb: np.ndarray, frame_id: str, ros: Node) -> tuple[CompressedImage, np.ndarray]:
    """A CompressedImage JPEG of ``rgb`` and the RGB pixels a decoder gets back from it."""
    ok, data = cv2.imencode(".jpg", rgb[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 90])
    assert ok
    msg = CompressedImage(format="rgb8; jpeg compressed bgr8", data=array.array("B", data.tobytes()))
    msg.header.frame_id = frame_id
    msg.header.stamp = ros.get_clock().now().to_msg()
    return msg, np.ascontiguousarray(cv2.imdecode(data, cv2.IMREAD_COLOR)[:, :, ::-1])


def segment(ros: Node, ns: str, rgb: np.ndarray, qid: str) -> SegmentationResult:
    client = ros.create_client(Segment, f"{ns}/segment")
    req = Segment.Request(query="the cat", query_id=qid)
    req.image = image_msg(ros, rgb, qid)
    resp = call(ros, client, req)
    ros.destroy_client(client)
    assert resp.success, resp.message
    return resp.result


def topic_result(ros: Node, msg: CompressedImage, qid: str) -> SegmentationResult:
    """Publish ``msg`` on the options node's image/compressed until a continuous query answers it."""
    pub = ros.create_publisher(CompressedImage, f"{OPT}/image/compressed", BURST_QOS)
    query_pub = ros.create_publisher(SegmentationQuery, f"{OPT}/query", BURST_QOS)
    results = Collector(ros, SegmentationResult, f"{OPT}/result")
    stamp = (msg.header.stamp.sec, msg.header.stamp.nanosec)
    try:
        assert spin_until(ros, lambda: pub.get_subscription_count() and query_pub.get_subscription_count(), 10.0)
        query_pub.publish(SegmentationQuery(id=qid, text="the cat"))
        answered = lambda: results.matching(  # noqa: E731
            lambda r: r.query_id == qid and (r.header.stamp.sec, r.header.stamp.nanosec) == stamp
        )
        got = spin_until(ros, answered, 20.0, step=lambda: pub.publish(msg))
        assert got, f"no result for {qid}"
        return got[0]
    finally:
        clear = ros.create_client(Trigger, f"{OPT}/clear_query")
        call(ros, clear, Trigger.Request())
        ros.destroy_client(clear)
        ros.destroy_publisher(pub)
        ros.destroy_publisher(query_pub)
        ros.destroy_subscription(results.sub)


def test_jpeg_through_the_node_with_frame_id_override(ros: Node, opt: NodeProcess) -> None:
    """A JPEG frame on image/compressed gives the mask of its decoded RGB pixels (sent raw to the service;
    the same pixels in BGR order give another one); an empty frame_id is replaced, a set one kept."""
    msg, decoded = jpeg(RGB, "", ros)
    r = topic_result(ros, msg, "jpeg_empty_frame")
    assert r.success, r.message
    assert r.header.frame_id == OVERRIDE and r.mask.header.frame_id == OVERRIDE
    assert all(g.header.frame_id == OVERRIDE for g in r.regions)
    expected = msg.header
    expected.frame_id = OVERRIDE
    mask = check_mask(r.mask, RGB.shape[1], RGB.shape[0], expected)
    raw = segment(ros, OPT, decoded, "raw")
    np.testing.assert_array_equal(mask, check_mask(raw.mask, RGB.shape[1], RGB.shape[0], raw.header))
    swapped = segment(ros, OPT, np.ascontiguousarray(decoded[:, :, ::-1]), "swapped")
    assert (check_mask(swapped.mask, RGB.shape[1], RGB.shape[0], swapped.mask.header) != mask).mean() > 0.01

    msg, _ = jpeg(RGB, "own_cam", ros)
    r = topic_result(ros, msg, "jpeg_own_frame")
    assert r.success and r.header.frame_id == "own_cam" and r.mask.header.frame_id == "own_cam"


def test_region_masks_off_and_contour_points_capped(ros: Node, node_proc: NodeProcess, opt: NodeProcess) -> None:
    """Same frame to both nodes: the same mask and regions; the options node sends no region masks and at most
    CONTOUR_POINTS contour points (pixels of the region), the shared node the masks and longer contours."""
    full = segment(ros, NS, RGB, "defaults")
    cut = segment(ros, OPT, RGB, "options")
    assert full.regions and cut.regions
    assert bytes(full.mask.data) == bytes(cut.mask.data)
    boxes = [(g.bbox.x_offset, g.bbox.y_offset, g.bbox.width, g.bbox.height) for g in full.regions]
    assert boxes == [(g.bbox.x_offset, g.bbox.y_offset, g.bbox.width, g.bbox.height) for g in cut.regions]
    assert all(g.mask.width > 0 and len(g.mask.data) == g.mask.width * g.mask.height for g in full.regions)
    assert all((g.mask.width, g.mask.height, len(g.mask.data)) == (0, 0, 0) for g in cut.regions)
    assert max(len(g.contour) for g in full.regions) > CONTOUR_POINTS
    mask = check_mask(cut.mask, RGB.shape[1], RGB.shape[0], cut.header)
    for region in cut.regions:
        assert 3 <= len(region.contour) <= CONTOUR_POINTS
        b = region.bbox
        for p in region.contour:
            assert b.x_offset <= p.x < b.x_offset + b.width and b.y_offset <= p.y < b.y_offset + b.height
            assert mask[int(p.y), int(p.x)], (p.x, p.y)


def frames_received(ros: Node, diagnostics: Collector, ns: str) -> int:
    """frames_received from a diagnostics message of the node in ``ns`` published after this call."""
    name = f"{ns}/converseg_node:"
    seen = len(diagnostics.items)
    got = spin_until(
        ros, lambda: [s for m in diagnostics.items[seen:] for s in m.status if s.name.startswith(name)], 5.0
    )
    assert got, f"no diagnostics from {ns}"
    return int({kv.key: kv.value for kv in got[-1].values}["frames_received"])


def test_image_depth_keeps_a_burst_of_frames(ros: Node, node_proc: NodeProcess, opt: NodeProcess) -> None:
    """20 frames published back to back: the options node (image_depth 20) receives all of them, the shared
    node (image_depth 1) keeps only the newest ones that reach it before its callback runs."""
    diagnostics = Collector(ros, DiagnosticArray, "/diagnostics")
    compressed, _ = jpeg(photo(64), "burst", ros)
    raw = image_msg(ros, photo(64), "burst")
    got = {}
    for ns, topic, msg_type, msg in ((OPT, "image/compressed", CompressedImage, compressed), (NS, "image", Image, raw)):
        pub = ros.create_publisher(msg_type, f"{ns}/{topic}", BURST_QOS)
        assert spin_until(ros, lambda: pub.get_subscription_count(), 10.0)  # noqa: B023
        spin_for(ros, 1.5)  # `auto` inputs re-check their publishers every second
        before = frames_received(ros, diagnostics, ns)
        for _ in range(DEPTH):
            pub.publish(msg)
        spin_for(ros, 1.0)
        got[ns] = frames_received(ros, diagnostics, ns) - before
        ros.destroy_publisher(pub)
    ros.destroy_subscription(diagnostics.sub)
    assert got[OPT] == DEPTH and got[NS] < DEPTH // 2, got
