"""3D region positions through converseg_node (the shared node, ``use_depth: true``), over DDS.

Non-uniform depth, fx != fy, a principal point off-centre, camera_info and depth at other resolutions than
the colour image, 16UC1 in millimetres and 32FC1 in metres, invalid readings (0, NaN, inf, negative)
ignored, a depth frame outside ``max_depth_skew_s`` not used. The depth publisher offers best effort (as
depth drivers do) and camera_info reliable: the node's ``auto`` inputs must follow each. Every expected
position is computed here from the pinhole model and the region's own pixels (the region masks in the
result), not with the node's depth code.
"""

from __future__ import annotations

import array
from dataclasses import dataclass

import numpy as np
import pytest
from rclpy.node import Node
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from ros_helpers import Collector, Harness, call, check_mask, image_msg, photo, same_header, spin_for, spin_until
from ros_nodes import NS
from sensor_msgs.msg import CameraInfo, Image
from std_srvs.srv import Trigger
from visualization_msgs.msg import Marker, MarkerArray

from converseg_ros.msg import AffordanceRegion, SegmentationResult
from converseg_ros.ros.msgs import qos
from converseg_ros.ros.params import NodeConfig

pytestmark = pytest.mark.timeout(120)
RGB = photo(72, "chelsea")  # 72 x 48: every region has fewer than 4096 pixels, so none is subsampled
H, W = RGB.shape[:2]
QUERY_ID, QUERY = "depth3d", "the saucer"
DEPTH_SCALE = 0.001  # config/segment.yaml: 16UC1 in millimetres
MAX_SKEW_S = NodeConfig.max_depth_skew_s  # not overridden for the shared node
SENSOR_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=5, reliability=ReliabilityPolicy.BEST_EFFORT)


@dataclass
class Rig:
    h: Harness
    depth_pub: object
    info_pub: object
    markers: Collector


def node_subscription_reliability(ros: Node, topic: str) -> set:
    """Reliabilities of the shared converseg_node's subscriptions to ``topic``, as the graph reports them."""
    return {
        info.qos_profile.reliability
        for info in ros.get_subscriptions_info_by_topic(topic)
        if info.node_name == "converseg_node" and info.node_namespace == NS
    }


@pytest.fixture(scope="module")
def rig(ros, node_proc):  # noqa: ANN001
    h = Harness(ros, NS, RGB, overlay=False)
    depth_pub = ros.create_publisher(Image, f"{NS}/depth", SENSOR_QOS)
    info_pub = ros.create_publisher(CameraInfo, f"{NS}/camera_info", qos.output_qos(1))
    markers = Collector(ros, MarkerArray, f"{NS}/markers", qos.output_qos(1))
    h.send_query(QUERY_ID, QUERY)  # continuous: every new frame is answered once
    yield Rig(h, depth_pub, info_pub, markers)
    # Leave a depth frame far from any colour stamp, so later tests' frames get no 3D position.
    parked = depth_image(np.ones((1, 1), np.float32), "32FC1")
    parked.header.stamp.sec = 1
    for _ in range(5):
        depth_pub.publish(parked)
        spin_for(ros, 0.05)
    call(ros, h.clear, Trigger.Request())
    ros.destroy_publisher(depth_pub)
    ros.destroy_publisher(info_pub)
    ros.destroy_subscription(markers.sub)
    h.close()


def depth_image(values: np.ndarray, encoding: str) -> Image:
    """A little-endian depth message built by hand (16UC1 or 32FC1), rows tight."""
    data = np.ascontiguousarray(values.astype({"16UC1": "<u2", "32FC1": "<f4"}[encoding]))
    height, width = data.shape
    return Image(
        height=height,
        width=width,
        encoding=encoding,
        is_bigendian=0,
        step=width * data.itemsize,
        data=array.array("B", data.tobytes()),
    )


def camera_info(width: int, height: int, fx: float, fy: float, cx: float, cy: float) -> CameraInfo:
    return CameraInfo(width=width, height=height, k=[fx, 0.0, cx, 0.0, fy, cy, 0.0, 0.0, 1.0])


def ramp(height: int, width: int, z0: float, per_col: float, per_row: float) -> np.ndarray:
    """Depth growing along both axes (different slopes), in the depth image's own pixels."""
    rows, cols = np.mgrid[0:height, 0:width]
    return z0 + per_col * cols + per_row * rows


def expected_position(
    region: AffordanceRegion,
    depth_m: np.ndarray,
    info: CameraInfo,
    ignore_invalid: bool = True,
    scale_intrinsics: bool = True,
) -> tuple[float, float, float] | None:
    """Pinhole model: the median valid depth under the region's pixels (the depth pixel containing each
    colour pixel's centre), back-projected through the region's centroid with the intrinsics scaled from
    camera_info's resolution to the colour image's. The keyword arguments give deliberately wrong variants
    (to show that the assertions can fail)."""
    crop = check_mask(region.mask, region.bbox.width, region.bbox.height, region.header)
    ys, xs = np.nonzero(crop)
    ys, xs = ys + region.bbox.y_offset, xs + region.bbox.x_offset
    dh, dw = depth_m.shape
    z = depth_m[
        np.minimum(((ys + 0.5) * dh / H).astype(int), dh - 1), np.minimum(((xs + 0.5) * dw / W).astype(int), dw - 1)
    ]
    if ignore_invalid:
        z = z[np.isfinite(z) & (z > 0)]
    else:
        z = np.nan_to_num(z, nan=0.0, posinf=0.0, neginf=0.0)
    if z.size == 0:
        return None
    zm = float(np.median(z))
    sx, sy = (W / info.width, H / info.height) if scale_intrinsics else (1.0, 1.0)
    fx, fy, cx, cy = info.k[0] * sx, info.k[4] * sy, info.k[2] * sx, info.k[5] * sy
    return ((region.centroid_x - cx) * zm / fx, (region.centroid_y - cy) * zm / fy, zm)


def differ(wrong: list, right: list, axis: int) -> bool:
    """Whether a wrong variant's positions differ from the right ones (by > 1 mm on ``axis``) somewhere."""
    pairs = zip(wrong, right, strict=True)
    return any(w is not None and r is not None and abs(w[axis] - r[axis]) > 1e-3 for w, r in pairs)


def segment_with_depth(
    rig: Rig, name: str, depth: Image, info: CameraInfo, depth_offset_s: float = 0.0
) -> tuple[SegmentationResult, Image]:
    """Publish camera_info and a depth frame stamped ``depth_offset_s`` from the colour frame, then the
    colour frame; the continuous query's result on it."""
    h = rig.h
    frame = image_msg(h.ros, RGB, name)
    info.header = frame.header
    depth.header.frame_id = name
    stamp = frame.header.stamp.sec * 1_000_000_000 + frame.header.stamp.nanosec + int(depth_offset_s * 1e9)
    depth.header.stamp.sec, depth.header.stamp.nanosec = divmod(stamp, 1_000_000_000)

    def publish_depth() -> None:  # the node keeps the newest of each; repeats cost nothing (best effort)
        rig.info_pub.publish(info)
        rig.depth_pub.publish(depth)

    publish_depth()
    spin_for(h.ros, 0.2)
    publish_depth()
    spin_for(h.ros, 0.1)
    h.image_pub.publish(frame)
    r = h.result_for(QUERY_ID, pred=lambda r: r.header.frame_id == name, step=publish_depth)
    assert r is not None, f"no result for frame {name}"
    assert r.success and r.regions, (r.message, len(r.regions))
    return r, frame


def assert_positions(r: SegmentationResult, depth_m: np.ndarray, info: CameraInfo) -> list:
    """Every region's position equals the pinhole model's (or is absent when no depth under it is valid)."""
    expected = [expected_position(region, depth_m, info) for region in r.regions]
    assert any(e is not None for e in expected), "no region has a valid depth: the case tests nothing"
    for region, exp in zip(r.regions, expected, strict=True):
        if exp is None:
            assert not region.has_position, region.id
            continue
        assert region.has_position, region.id
        got = (region.position.x, region.position.y, region.position.z)
        assert got == pytest.approx(exp, abs=1e-4), (region.id, got, exp)
    return expected


def markers_for(rig: Rig, frame: Image, timeout: float = 5.0) -> list[Marker] | None:
    got = spin_until(
        rig.h.ros, lambda: rig.markers.matching(lambda m: same_header(m.markers[0].header, frame.header)), timeout
    )
    return got[0].markers if got else None


def test_depth_inputs_follow_their_publishers_reliability(rig: Rig) -> None:
    """image_reliability: auto on the depth inputs: a best-effort depth publisher (sensor-data QoS) gets a
    best-effort subscription, a reliable camera_info publisher a reliable one (read from the graph)."""
    ros = rig.h.ros
    assert spin_until(
        ros,
        lambda: node_subscription_reliability(ros, f"{NS}/depth") == {ReliabilityPolicy.BEST_EFFORT}
        and node_subscription_reliability(ros, f"{NS}/camera_info") == {ReliabilityPolicy.RELIABLE},
        10.0,
    ), (node_subscription_reliability(ros, f"{NS}/depth"), node_subscription_reliability(ros, f"{NS}/camera_info"))
    assert spin_until(
        ros, lambda: rig.depth_pub.get_subscription_count() and rig.info_pub.get_subscription_count(), 10.0
    )


def test_16uc1_millimetres_non_uniform_fx_ne_fy_off_centre_half_resolution(rig: Rig) -> None:
    """16UC1 depth at half the colour resolution, growing along both axes, every other column 0 (no
    reading); camera_info at the colour resolution with fx != fy and the principal point off-centre."""
    mm = ramp(H // 2, W // 2, 600.0, 40.0, 90.0).round()
    mm[:, 1::2] = 0
    info = camera_info(W, H, fx=110.0, fy=80.0, cx=45.5, cy=17.0)
    r, frame = segment_with_depth(rig, "depth_16uc1", depth_image(mm, "16UC1"), info)
    depth_m = (mm * DEPTH_SCALE).astype(np.float32)
    expected = assert_positions(r, depth_m, info)
    # The readings of 0 count: including them would move the median of some region.
    counted = [expected_position(region, depth_m, info, ignore_invalid=False) for region in r.regions]
    assert differ(counted, expected, axis=2)
    markers = markers_for(rig, frame)
    assert markers and markers[0].action == Marker.DELETEALL
    spheres = [m for m in markers if m.type == Marker.SPHERE]
    positioned = [region for region in r.regions if region.has_position]
    assert len(spheres) == len(positioned)
    for sphere, region in zip(spheres, positioned, strict=True):
        assert (sphere.pose.position.x, sphere.pose.position.y, sphere.pose.position.z) == pytest.approx(
            (region.position.x, region.position.y, region.position.z), abs=1e-9
        )


def test_32fc1_metres_with_camera_info_and_depth_at_other_resolutions(rig: Rig) -> None:
    """32FC1 depth at 1.5x the colour resolution with NaN rows, 0 columns, +inf and negative blocks;
    camera_info at twice the colour resolution (the node must scale the intrinsics to the colour image)."""
    dh, dw = H * 3 // 2, W * 3 // 2
    z = ramp(dh, dw, 0.4, 0.015, 0.03).astype(np.float32)
    z[::3, :] = np.nan
    z[:, 1::4] = 0.0
    z[5:20, 40:60] = np.inf
    z[40:55, 10:30] = -1.0
    info = camera_info(2 * W, 2 * H, fx=190.0, fy=140.0, cx=60.0, cy=56.0)
    r, _ = segment_with_depth(rig, "depth_32fc1", depth_image(z, "32FC1"), info)
    expected = assert_positions(r, z, info)
    unscaled = [expected_position(region, z, info, scale_intrinsics=False) for region in r.regions]
    assert differ(unscaled, expected, axis=0)  # ignoring camera_info's resolution would be caught


def test_regions_without_valid_depth_get_no_position(rig: Rig) -> None:
    """Only NaN and 0 under every region: no region gets a position; markers are only cleared."""
    z = np.full((H, W), np.nan, np.float32)
    z[:, ::2] = 0.0
    info = camera_info(W, H, fx=100.0, fy=100.0, cx=W / 2, cy=H / 2)
    r, frame = segment_with_depth(rig, "depth_invalid", depth_image(z, "32FC1"), info)
    assert not any(region.has_position for region in r.regions)
    markers = markers_for(rig, frame)
    assert markers and [m.action for m in markers] == [Marker.DELETEALL]


def test_depth_outside_max_depth_skew_is_not_used(rig: Rig) -> None:
    """A depth frame stamped further than max_depth_skew_s before the colour frame gives no positions and no
    markers; one within the skew (after the colour frame) is used."""
    mm = ramp(H, W, 800.0, 10.0, 25.0).round()
    info = camera_info(W, H, fx=95.0, fy=120.0, cx=30.0, cy=30.0)
    r, frame = segment_with_depth(rig, "depth_skewed", depth_image(mm, "16UC1"), info, -(MAX_SKEW_S + 0.3))
    assert not any(region.has_position for region in r.regions)
    assert markers_for(rig, frame, timeout=1.0) is None, "markers from a depth frame outside the skew"
    r, frame = segment_with_depth(rig, "depth_in_skew", depth_image(mm, "16UC1"), info, MAX_SKEW_S - 0.2)
    assert_positions(r, (mm * DEPTH_SCALE).astype(np.float32), info)
    assert markers_for(rig, frame)
