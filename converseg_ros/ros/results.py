"""A computed batch as ROS messages, with the settings of the camera it came from: each query's
SegmentationResult (regions with 3D positions when that camera's depth is usable), the overlay image and the
outputs' header. Conversion only (no inference, no publishing)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from std_msgs.msg import Header

from converseg_ros.errors import ImageError
from converseg_ros.ros.inputs import DepthInput
from converseg_ros.ros.msgs import conversions as conv
from converseg_ros.ros.msgs.depth import Intrinsics, region_position
from converseg_ros.ros.msgs.image_input import depth_to_m
from converseg_ros.ros.msgs.interfaces import SegmentationResult
from converseg_ros.serving.queries import Batch, Outcome

UNTRAINED_BANNER = "UNTRAINED model ({preset}): masks carry no meaning"


class ResultBuilder:
    """Converts batches. ``camera(name)``: a camera's CameraConfig (also for "" — the unnamed camera, or an image
    sent with a service call); ``depth``: each camera's DepthInput; ``untrained()``: the preset name when the
    model is untrained, else ""; ``now_ns()``: the node clock; ``warn``: throttled warnings."""

    def __init__(
        self,
        camera: Callable[[str], Any],
        depth: dict[str, DepthInput],
        max_image_pixels: int,
        untrained: Callable[[], str],
        now_ns: Callable[[], int],
        warn: Callable[[str], None],
    ) -> None:
        self._camera, self._depth, self._max_pixels = camera, depth, max_image_pixels
        self._untrained, self._now_ns, self._warn = untrained, now_ns, warn

    def header(self, batch: Batch) -> Header:
        """The source image's header for every output (frame_id_override fills an empty frame_id)."""
        return conv.copy_header(batch.frame.msg.header, self._camera(batch.camera).frame_id_override)

    def depth_context(self, batch: Batch) -> tuple[np.ndarray, Intrinsics] | None:
        """Depth (metres) and intrinsics of the batch's camera usable for this frame, or None."""
        cfg, depth = self._camera(batch.camera), self._depth.get(batch.camera)
        if not cfg.use_depth or depth is None or batch.rgb is None:
            return None
        latest, intrinsics = depth.latest()
        if latest is None or intrinsics is None:
            return None
        msg, depth_stamp = latest
        if abs(depth_stamp - batch.frame.stamp_ns) > cfg.max_depth_skew_s * 1e9:
            return None
        try:
            return depth_to_m(msg, cfg.depth_scale, self._max_pixels), intrinsics
        except (ValueError, ImageError) as exc:
            self._warn(f"depth image ignored: {exc}")
            return None

    def result(
        self, batch: Batch, outcome: Outcome, header: Header, depth: tuple[np.ndarray, Intrinsics] | None
    ) -> SegmentationResult:
        """One query's answer on the batch's frame as a SegmentationResult."""
        cfg = self._camera(batch.camera)
        regions = []
        out = outcome.output
        if out is not None:
            mask = np.asarray(out.mask, dtype=bool)
            for region in out.regions:
                crop = conv.region_crop_mask(mask, region)
                position = None
                if depth is not None:
                    position = region_position(
                        depth[0], depth[1], mask.shape, tuple(region.bbox), crop, tuple(region.centroid)
                    )
                regions.append(
                    conv.region_msg(
                        region, mask, header, outcome.query, with_mask=cfg.publish_region_masks,
                        contour_max_points=cfg.contour_max_points, position=position,
                    )
                )
        return conv.result_msg(
            outcome,
            header,
            encode_ms=batch.encode_ms,
            inference_ms=batch.segment_ms if outcome.inference_ms is None else outcome.inference_ms,
            regions=regions,
            now_ns=self._now_ns(),
            source_stamp_ns=batch.frame.stamp_ns,
            camera=batch.camera,
            model=batch.model,
        )

    def overlay(self, batch: Batch, outcome: Outcome, result: SegmentationResult) -> np.ndarray:
        """The rgb8 overlay: mask tint, region boxes and labels, a banner with the query and latency."""
        from converseg_ros.visualization import draw_overlay

        title = f'"{outcome.query.text[:80]}"  {len(result.regions)} regions  {result.latency_ms:.0f} ms'
        if not outcome.grounded:
            title += f"  tracked +{outcome.grounding_age}"
        untrained = self._untrained()
        if untrained:
            title += "  |  " + UNTRAINED_BANNER.format(preset=untrained)
        out = outcome.output
        alpha = self._camera(batch.camera).overlay_alpha
        return draw_overlay(batch.rgb, np.asarray(out.mask, bool), out.regions, title, alpha=alpha)
