"""Engine outputs -> ROS messages (results, regions, markers, detections). No inference here."""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np
from builtin_interfaces.msg import Time
from geometry_msgs.msg import Point, Point32
from sensor_msgs.msg import Image, RegionOfInterest
from std_msgs.msg import Header
from visualization_msgs.msg import Marker, MarkerArray

from converseg_ros.ros.msgs.image_codec import encode_mask
from converseg_ros.ros.msgs.interfaces import AffordanceRegion, SegmentationResult
from converseg_ros.serving.queries import Outcome, Query

try:  # optional: not installable from pip here
    from vision_msgs.msg import Detection2D, Detection2DArray, ObjectHypothesisWithPose

    HAVE_VISION_MSGS = True
except Exception:  # noqa: BLE001 - absent or broken: the detections output is simply off
    HAVE_VISION_MSGS = False


def stamp_ns(stamp: Any) -> int:
    """builtin_interfaces/Time -> integer nanoseconds."""
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


def ns_to_time(ns: int) -> Time:
    """Integer nanoseconds -> builtin_interfaces/Time."""
    return Time(sec=int(ns // 1_000_000_000), nanosec=int(ns % 1_000_000_000))


def copy_header(header: Any, frame_id_override: str = "") -> Header:
    """A copy of the source header (stamp + frame_id); ``frame_id_override`` fills an empty frame_id."""
    frame_id = header.frame_id or frame_id_override
    return Header(stamp=Time(sec=header.stamp.sec, nanosec=header.stamp.nanosec), frame_id=frame_id)


def region_crop_mask(mask: np.ndarray, region: Any) -> np.ndarray:
    """The region's own pixels inside its bbox: the mask cropped to the bbox, limited to the region's
    outer contour (so another region reaching into the box is left out)."""
    x, y, w, h = (int(v) for v in region.bbox)
    crop = mask[y : y + h, x : x + w].astype(bool)
    contour = getattr(region, "contour", None)
    if contour is not None and len(contour) >= 3:
        inside = np.zeros((h, w), np.uint8)
        cv2.fillPoly(
            inside, [np.asarray(contour, np.int32).reshape(-1, 1, 2) - np.array([x, y], np.int32)], 1
        )
        crop &= inside.astype(bool)
    return crop


def contour_points(contour: Any, max_points: int) -> list[Point32]:
    """(K, 2) pixel contour -> at most ``max_points`` evenly spaced Point32 (z = 0)."""
    if contour is None or max_points <= 0 or len(contour) == 0:
        return []
    pts = np.asarray(contour).reshape(-1, 2)
    if len(pts) > max_points:
        pts = pts[np.linspace(0, len(pts) - 1, max_points).round().astype(np.int64)]
    return [Point32(x=float(px), y=float(py), z=0.0) for px, py in pts]


def region_msg(
    region: Any,
    mask: np.ndarray,
    header: Header,
    query: Query,
    *,
    with_mask: bool,
    contour_max_points: int,
    position: tuple[float, float, float] | None,
) -> AffordanceRegion:
    """One engine Region -> AffordanceRegion."""
    x, y, w, h = (int(v) for v in region.bbox)
    msg = AffordanceRegion(
        header=header,
        id=f"{query.id}/{int(region.index)}",
        query_id=query.id,
        query=query.text,
        label=query.text,
        score=float(region.score),
    )
    msg.bbox = RegionOfInterest(x_offset=x, y_offset=y, width=w, height=h, do_rectify=False)
    msg.centroid_x, msg.centroid_y = float(region.centroid[0]), float(region.centroid[1])
    msg.area_px = int(region.area)
    if with_mask and w > 0 and h > 0:
        encode_mask(region_crop_mask(mask, region), msg.mask, header)
    msg.contour = contour_points(getattr(region, "contour", None), contour_max_points)
    if position is not None:
        msg.has_position = True
        msg.position = Point(x=position[0], y=position[1], z=position[2])
    return msg


def result_msg(
    outcome: Outcome,
    header: Header,
    *,
    encode_ms: float,
    inference_ms: float,
    regions: list[AffordanceRegion],
    now_ns: int,
    source_stamp_ns: int,
    camera: str = "",
    model: str = "",
) -> SegmentationResult:
    """One query's Outcome -> SegmentationResult (the mask is filled for successful outcomes)."""
    q = outcome.query
    msg = SegmentationResult(
        header=header, query_id=q.id, query=q.text, query_stamp=ns_to_time(q.stamp_ns), camera=camera, model=model
    )
    msg.success = outcome.error is None
    msg.message = outcome.error or ""
    if outcome.output is not None:
        encode_mask(outcome.output.mask, msg.mask, header)
        msg.score = float(outcome.output.score)
        msg.regions = regions
    msg.encode_ms = float(encode_ms)
    msg.inference_ms = float(inference_ms)
    msg.latency_ms = float(max(0, now_ns - source_stamp_ns) / 1e6)
    msg.grounded = bool(outcome.grounded)
    msg.grounding_age = int(outcome.grounding_age)
    msg.grounding_reason = outcome.reason
    return msg


def markers_msg(header: Header, results: list[SegmentationResult]) -> MarkerArray:
    """DELETEALL, then a sphere and a text label at every region with a 3D position."""
    out = MarkerArray(markers=[Marker(header=header, action=Marker.DELETEALL)])
    for result in results:
        for k, region in enumerate(result.regions):
            if not region.has_position:
                continue
            sphere = Marker(
                header=header, ns=result.query_id, id=2 * k, type=Marker.SPHERE, action=Marker.ADD
            )
            sphere.pose.position = region.position
            sphere.pose.orientation.w = 1.0
            sphere.scale.x = sphere.scale.y = sphere.scale.z = 0.05
            sphere.color.r, sphere.color.g, sphere.color.b, sphere.color.a = 1.0, 0.3, 0.1, 0.9
            text = Marker(header=header, ns=result.query_id, id=2 * k + 1, type=Marker.TEXT_VIEW_FACING)
            text.pose.position = Point(x=region.position.x, y=region.position.y - 0.06, z=region.position.z)
            text.pose.orientation.w = 1.0
            text.scale.z = 0.04
            text.color.r = text.color.g = text.color.b = text.color.a = 1.0
            text.text = f"{region.label[:40]} {region.score:.2f}"
            out.markers += [sphere, text]
    return out


def detections_msg(header: Header, results: list[SegmentationResult]) -> Any:
    """vision_msgs/Detection2DArray (one Detection2D per region, class_id = query text); None without
    vision_msgs."""
    if not HAVE_VISION_MSGS:
        return None
    out = Detection2DArray(header=header)
    for result in results:
        for region in result.regions:
            det = Detection2D(header=header, id=region.id)
            det.bbox.center.position.x = region.bbox.x_offset + region.bbox.width / 2.0
            det.bbox.center.position.y = region.bbox.y_offset + region.bbox.height / 2.0
            det.bbox.size_x, det.bbox.size_y = float(region.bbox.width), float(region.bbox.height)
            hyp = ObjectHypothesisWithPose()
            hyp.hypothesis.class_id = result.query
            hyp.hypothesis.score = float(region.score)
            if region.has_position:
                hyp.pose.pose.position = region.position
            det.results.append(hyp)
            out.detections.append(det)
    return out


def empty_image(header: Header) -> Image:
    """An Image with only a header (placeholder for absent optional images)."""
    return Image(header=header)
