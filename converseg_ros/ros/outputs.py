"""What converseg_node publishes for a computed batch: results, masks, overlays, markers and detections on the
topics of the batch's camera, and the service's answer. Conversion only (no inference)."""

from __future__ import annotations

from typing import Any

import numpy as np
from sensor_msgs.msg import Image
from std_msgs.msg import Header

from converseg_ros.ros.cameras import CameraIO
from converseg_ros.ros.msgs import conversions as conv
from converseg_ros.ros.msgs.depth import Intrinsics, region_position
from converseg_ros.ros.msgs.image_codec import encode
from converseg_ros.ros.msgs.image_input import depth_to_m
from converseg_ros.ros.msgs.interfaces import SegmentationResult
from converseg_ros.serving.worker import Batch, Outcome

UNTRAINED_BANNER = "UNTRAINED model ({preset}): masks carry no meaning"


class Outputs:
    """Converts batches for ``node`` (a ConverSegNode: its ``cfg``, ``choice``, ``cameras``, clock, logger)."""

    def __init__(self, node: Any) -> None:
        self.node = node

    def camera(self, batch: Batch) -> CameraIO | None:
        """The camera a batch came from (None for an image sent with a service call to a multi-camera node)."""
        return self.node.cameras.get(batch.camera)

    def depth_context(self, batch: Batch) -> tuple[np.ndarray, Intrinsics] | None:
        """Depth (metres) and intrinsics of the batch's camera usable for this frame, or None."""
        cfg, camera = self.node.cfg, self.camera(batch)
        if not cfg.use_depth or camera is None or camera.depth is None or camera.intrinsics is None:
            return None
        if batch.rgb is None:
            return None
        msg, depth_stamp = camera.depth
        if abs(depth_stamp - batch.frame.stamp_ns) > cfg.max_depth_skew_s * 1e9:
            return None
        try:
            return depth_to_m(msg, cfg.depth_scale, cfg.max_image_pixels), camera.intrinsics
        except ValueError as exc:
            self.node.get_logger().warning(
                f"[converseg_node] depth image ignored: {exc}", throttle_duration_sec=cfg.log_throttle_s
            )
            return None

    def result(
        self, batch: Batch, outcome: Outcome, header: Header, depth: tuple[np.ndarray, Intrinsics] | None
    ) -> SegmentationResult:
        """One query's answer on the batch's frame as a SegmentationResult."""
        cfg = self.node.cfg
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
                        region,
                        mask,
                        header,
                        outcome.query,
                        with_mask=cfg.publish_region_masks,
                        contour_max_points=cfg.contour_max_points,
                        position=position,
                    )
                )
        return conv.result_msg(
            outcome,
            header,
            encode_ms=batch.encode_ms,
            inference_ms=batch.segment_ms if outcome.inference_ms is None else outcome.inference_ms,
            regions=regions,
            now_ns=self.node._now_ns(),
            source_stamp_ns=batch.frame.stamp_ns,
            camera=batch.camera,
        )

    def overlay(self, batch: Batch, outcome: Outcome, result: SegmentationResult) -> np.ndarray:
        """The rgb8 overlay: mask tint, region boxes and labels, a banner with the query and latency."""
        from converseg_ros.visualization import draw_overlay

        title = f'"{outcome.query.text[:80]}"  {len(result.regions)} regions  {result.latency_ms:.0f} ms'
        if not outcome.grounded:
            title += f"  tracked +{outcome.grounding_age}"
        choice = self.node.choice
        if choice is not None and not choice.trained:
            title += "  |  " + UNTRAINED_BANNER.format(preset=choice.preset)
        out = outcome.output
        return draw_overlay(
            batch.rgb, np.asarray(out.mask, bool), out.regions, title, alpha=self.node.cfg.overlay_alpha
        )

    def header(self, batch: Batch) -> Header:
        """The source image's header for every output (frame_id_override fills an empty frame_id)."""
        return conv.copy_header(batch.frame.msg.header, self.node.cfg.frame_id_override)

    def publish_batch(self, batch: Batch) -> None:
        """Publish results of topic queries on the camera's topics (service answers go back to the caller)."""
        service_queries = {id(j.query) for j in batch.jobs if j.from_service}
        outcomes = [o for o in batch.outcomes if id(o.query) not in service_queries]
        camera = self.camera(batch)
        if not outcomes or camera is None or not camera.pubs:
            return
        cfg = self.node.cfg
        header = self.header(batch)
        depth = self.depth_context(batch)
        results = []
        for outcome in outcomes:
            result = self.result(batch, outcome, header, depth)
            results.append(result)
            camera.pubs["result"].publish(result)
            if not result.success:
                self.node.get_logger().warning(
                    f"[converseg_node] query {outcome.query.id}: {result.message}",
                    throttle_duration_sec=cfg.log_throttle_s,
                )
                continue
            camera.pubs["mask"].publish(result.mask)
            overlay_pub = camera.pubs["overlay"]
            if cfg.publish_overlay and overlay_pub.get_subscription_count() > 0:
                overlay_pub.publish(encode(self.overlay(batch, outcome, result), "rgb8", Image(), header))
        if depth is not None:
            camera.pubs["markers"].publish(conv.markers_msg(header, results))
        if "detections" in camera.pubs:
            camera.pubs["detections"].publish(conv.detections_msg(header, results))
