"""Everything converseg_node publishes, and the one owner of its publishers: each camera's result, mask,
overlay, markers, detections and latched active_query, the node's latched model_status and /diagnostics.
Created at configure, destroyed at cleanup. Results come from computed batches (publishing thread), refusals
from the commands and the worker, diagnostics from a status snapshot, model status from the model switch."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from diagnostic_msgs.msg import DiagnosticArray
from sensor_msgs.msg import Image
from std_msgs.msg import Header
from visualization_msgs.msg import MarkerArray

from converseg_ros.ros.inputs import camera_topic
from converseg_ros.ros.msgs import conversions as conv
from converseg_ros.ros.msgs import qos
from converseg_ros.ros.msgs.image_codec import encode
from converseg_ros.ros.msgs.interfaces import ModelStatus, SegmentationQuery, SegmentationResult
from converseg_ros.ros.results import ResultBuilder
from converseg_ros.serving.queries import MODE_CONTINUOUS, Batch, Job, Query, clip

REFUSAL_TEXT_CHARS = 200  # a refused query's text echoed in its result


class Outputs:
    """Publishers of ``node`` for ``cameras`` (names); ``camera(name)`` gives a camera's CameraConfig."""

    def __init__(
        self,
        node: Any,
        cameras: list[str],
        camera: Callable[[str], Any],
        results: ResultBuilder,
        publish_detections: bool,
        warn: Callable[[str], None],
    ) -> None:
        self._node, self._camera, self.results, self._warn = node, camera, results, warn
        out = qos.output_qos
        self._pubs: dict[str, dict[str, Any]] = {}
        for name in cameras:
            topic = lambda t, name=name: camera_topic(name, t)  # noqa: E731
            pubs = {
                "result": node.create_publisher(SegmentationResult, topic("result"), out(qos.RESULT_DEPTH)),
                "mask": node.create_publisher(Image, topic("mask"), out(1)),
                "overlay": node.create_publisher(Image, topic("overlay"), out(1)),
                "active_query": node.create_publisher(SegmentationQuery, topic("active_query"), qos.latched_qos()),
                "markers": node.create_publisher(MarkerArray, topic("markers"), out(1)),
            }
            if publish_detections and conv.HAVE_VISION_MSGS:
                pubs["detections"] = node.create_publisher(conv.Detection2DArray, topic("detections"), out(10))
            self._pubs[name] = pubs
        if publish_detections and not conv.HAVE_VISION_MSGS:
            warn("vision_msgs not importable: no detections output")
        self._diagnostics = node.create_publisher(DiagnosticArray, "/diagnostics", out(10))
        self._model_status = node.create_publisher(ModelStatus, "model_status", qos.latched_qos())

    def destroy(self) -> None:
        """Destroy every publisher."""
        for pub in [p for pubs in self._pubs.values() for p in pubs.values()] + [self._diagnostics,
                                                                                  self._model_status]:
            self._node.destroy_publisher(pub)
        self._pubs = {}

    # -- results -------------------------------------------------------------------------------------
    def publish_batch(self, batch: Batch) -> None:
        """Results of topic queries on the batch camera's topics (service answers go back to the caller)."""
        service = {id(j.query) for j in batch.jobs if j.from_service}
        outcomes = [o for o in batch.outcomes if id(o.query) not in service]
        pubs = self._pubs.get(batch.camera)
        if not outcomes or not pubs:
            return
        cfg = self._camera(batch.camera)
        header = self.results.header(batch)
        depth = self.results.depth_context(batch)
        results = []
        for outcome in outcomes:
            result = self.results.result(batch, outcome, header, depth)
            results.append(result)
            pubs["result"].publish(result)
            if not result.success:
                self._warn(f"query {clip(outcome.query.id)}: {result.message}")
                continue
            pubs["mask"].publish(result.mask)
            overlay = pubs["overlay"]
            if cfg.publish_overlay and overlay.get_subscription_count() > 0:
                overlay.publish(encode(self.results.overlay(batch, outcome, result), "rgb8", Image(), header))
        if depth is not None and cfg.publish_markers:
            pubs["markers"].publish(conv.markers_msg(header, results))
        if "detections" in pubs and cfg.publish_detections:
            pubs["detections"].publish(conv.detections_msg(header, results))

    def refuse(self, query_id: str, text: str, reason: str, cameras: list[str], header: Any = None) -> None:
        """A failed result (``success: false``, ``message: reason``) for ``query_id`` on each of ``cameras``."""
        self._warn(f"query refused: {reason}")
        self._answer(query_id, text, False, reason, cameras, header)

    def acknowledge(self, query_id: str, text: str, message: str, cameras: list[str]) -> None:
        """A query answered without a frame (a stop): ``success: true``, ``message``, no mask."""
        self._answer(query_id, text, True, message, cameras, None)

    def _answer(
        self, query_id: str, text: str, success: bool, message: str, cameras: list[str], header: Any
    ) -> None:
        header = conv.copy_header(header if header is not None else Header())
        header.frame_id = clip(header.frame_id)
        for name in cameras:
            pubs = self._pubs.get(name)
            if pubs:
                pubs["result"].publish(
                    SegmentationResult(
                        header=header,
                        query_id=clip(query_id),
                        query=clip(text, REFUSAL_TEXT_CHARS),
                        camera=clip(name),
                        success=success,
                        message=message,
                    )
                )

    def refuse_job(self, job: Job) -> None:
        """A once-query from a topic answered without a frame (the worker's ``on_unanswered``)."""
        cameras = [job.camera] if job.camera in self._pubs else list(self._pubs)
        self.refuse(job.query.id, job.query.text, job.outcome.error or "not answered", cameras)

    def publish_active_query(self, camera: str, query: Query | None) -> None:
        """The camera's continuous query on its latched active_query (empty text: none)."""
        pubs = self._pubs.get(camera)
        if not pubs:
            return
        msg = SegmentationQuery(mode=MODE_CONTINUOUS, camera=camera)
        if query is not None:
            msg.id, msg.text, msg.header.stamp = query.id, query.text, conv.ns_to_time(query.stamp_ns)
        pubs["active_query"].publish(msg)

    def publish_diagnostics(self, msg: DiagnosticArray) -> None:
        self._diagnostics.publish(msg)

    def publish_model_status(self, msg: ModelStatus) -> None:
        """The served model and its last change (latched)."""
        self._model_status.publish(msg)
