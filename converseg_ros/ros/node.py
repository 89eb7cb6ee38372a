"""converseg_node: a lifecycle node that turns camera images + conversational queries into masks and
affordance regions. It only converts messages and calls the engine (on one worker thread).

Lifecycle: configure validates parameters and model files (fails with a clear message), activate loads and
warms up the model and subscribes, deactivate unsubscribes and frees the model. With ``autostart`` (default)
the node configures and activates itself. Topics, services and parameters: docs/ros.md.
"""

from __future__ import annotations

import gc
import itertools
import threading
import time
from typing import Any

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rcl_interfaces.msg import SetParametersResult
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup, ReentrantCallbackGroup
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from std_msgs.msg import Header, String
from std_srvs.srv import SetBool, Trigger
from visualization_msgs.msg import MarkerArray

from converseg_ros.ros import conversions as conv
from converseg_ros.ros import params, qos
from converseg_ros.ros.depth import Intrinsics, region_position
from converseg_ros.ros.frame_slot import Frame, LatestSlot
from converseg_ros.ros.image_codec import ImageCodecError, encode
from converseg_ros.ros.image_input import (
    check_compressed,
    check_image,
    compressed_to_rgb8,
    depth_to_m,
    image_to_rgb8,
)
from converseg_ros.ros.interfaces import Segment, SegmentationQuery, SegmentationResult
from converseg_ros.ros.matched_input import MatchedInput
from converseg_ros.ros.model import ModelChoice, check_model, load_engine
from converseg_ros.ros.worker import (
    MODE_CONTINUOUS,
    MODE_ONCE,
    Batch,
    InferenceWorker,
    Job,
    Outcome,
    Query,
    WorkerSettings,
    free_accelerator_cache,
)

NODE_NAME = "converseg_node"
# Executor threads (converseg_ros.ros.run): the input/timer group needs one, each waiting segment call holds
# one. Calls beyond MAX_WAITING_CALLS are refused ("busy") so waiting calls can never starve the images.
EXECUTOR_THREADS = 6
MAX_WAITING_CALLS = EXECUTOR_THREADS - 2
UNTRAINED_BANNER = "UNTRAINED model ({preset}): masks carry no meaning"
INPUT_RECHECK_S = 1.0  # how often `image_reliability: auto` inputs re-read what their publishers offer


class ConverSegNode(LifecycleNode):
    """The ROS face of ConverSegEngine (see the module docstring)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(NODE_NAME, **kwargs)
        params.declare(self)
        self.cfg = params.read(self)
        self.choice: ModelChoice | None = None
        self.engine: Any = None
        self.worker: InferenceWorker | None = None
        self.slot = LatestSlot(on_put=self._wake_worker)
        self.active = False
        self.frames_received = 0
        self._ids = itertools.count(1)
        self._active_query: Query | None = None
        self._enabled = True
        self._waiting_calls = 0
        self._calls_lock = threading.Lock()
        self._depth: tuple[Any, int] | None = None  # (depth message, stamp ns)
        self._intrinsics: Intrinsics | None = None
        self._cs_inputs_group = MutuallyExclusiveCallbackGroup()
        self._cs_service_group = ReentrantCallbackGroup()
        self._cs_subs: list[Any] = []
        self._cs_inputs: list[MatchedInput] = []  # camera inputs (QoS matched to their publishers)
        self._cs_recheck: Any = None
        self._cs_pubs: dict[str, Any] = {}
        self._cs_srvs: list[Any] = []
        self._cs_timer: Any = None
        self.add_on_set_parameters_callback(self._on_set_parameters)

    # -- lifecycle ---------------------------------------------------------------------------------
    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Read and validate parameters and model files; create publishers and services."""
        self.get_logger().info(f"[{NODE_NAME}] configuring")
        cfg = params.read(self)
        problems = params.validate(cfg)
        if not problems:
            try:
                self.choice = check_model(cfg)
            except Exception as exc:  # noqa: BLE001 - any failure here is a configuration error
                problems.append(f"model preset {cfg.preset!r}: {exc}")
        if problems:
            for problem in problems:
                self.get_logger().error(f"[{NODE_NAME}] configure failed: {problem}")
            return TransitionCallbackReturn.FAILURE
        self.cfg = cfg
        out = qos.output_qos
        self._cs_pubs = {
            "result": self.create_publisher(SegmentationResult, "result", out(50)),
            "mask": self.create_publisher(Image, "mask", out(1)),
            "overlay": self.create_publisher(Image, "overlay", out(1)),
            "active_query": self.create_publisher(SegmentationQuery, "active_query", qos.latched_qos()),
            "markers": self.create_publisher(MarkerArray, "markers", out(1)),
            "diagnostics": self.create_publisher(DiagnosticArray, "/diagnostics", out(10)),
        }
        if cfg.publish_detections and conv.HAVE_VISION_MSGS:
            self._cs_pubs["detections"] = self.create_publisher(conv.Detection2DArray, "detections", out(10))
        elif cfg.publish_detections:
            self.get_logger().info(f"[{NODE_NAME}] vision_msgs not importable: no detections output")
        self._cs_srvs = [
            self.create_service(Segment, "segment", self._on_segment, callback_group=self._cs_service_group),
            self.create_service(SetBool, "enable", self._on_enable, callback_group=self._cs_service_group),
            self.create_service(
                Trigger, "clear_query", self._on_clear_query, callback_group=self._cs_service_group
            ),
        ]
        if cfg.query.strip() and self._active_query is None:
            self._active_query = self._make_query("", cfg.query, 0, MODE_CONTINUOUS)
        self._publish_active_query()
        if cfg.diagnostics_period_s > 0:
            self._cs_timer = self.create_timer(
                cfg.diagnostics_period_s, self._publish_diagnostics, callback_group=self._cs_inputs_group
            )
        c = self.choice
        self.get_logger().info(
            f"[{NODE_NAME}] configured: preset {c.preset} ({c.description}), "
            f"device {c.device}, precision {c.precision}"
        )
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Load and warm up the model, start the worker, subscribe."""
        cfg, choice = self.cfg, self.choice
        self.get_logger().info(f"[{NODE_NAME}] activating: loading {choice.preset} on {choice.device}")
        try:
            t0 = time.perf_counter()
            self.engine = load_engine(cfg, choice)
            load_s = time.perf_counter() - t0
            t0 = time.perf_counter()
            if cfg.warmup:
                self.engine.warmup()
            warm_s = time.perf_counter() - t0
        except Exception as exc:  # noqa: BLE001 - report and stay inactive
            self.get_logger().error(
                f"[{NODE_NAME}] activate failed: cannot load the model: {type(exc).__name__}: {exc}"
            )
            self._free_engine()
            return TransitionCallbackReturn.FAILURE
        self.get_logger().info(f"[{NODE_NAME}] model loaded in {load_s:.1f} s, warm-up {warm_s:.1f} s")
        if not choice.trained:
            self.get_logger().warning(f"[{NODE_NAME}] " + UNTRAINED_BANNER.format(preset=choice.preset))
        self.worker = InferenceWorker(
            self.engine,
            self.slot,
            self._decode,
            self._publish_batch,
            self._now_ns,
            self._worker_settings(),
            on_stale=self._on_stale,
            on_expired=self._on_expired,
        )
        self.worker.set_enabled(self._enabled)
        self.worker.set_continuous(self._active_query)
        self._subscribe()
        self.worker.source = self._cs_inputs[0].topic
        self.worker.start()
        self.active = True
        self.get_logger().info(f"[{NODE_NAME}] active")
        return super().on_activate(state)

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Unsubscribe, stop the worker, free the model (and GPU memory)."""
        self._deactivate()
        self.get_logger().info(f"[{NODE_NAME}] inactive: model freed")
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Destroy publishers, services and timers."""
        self._teardown()
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Free everything."""
        self._deactivate()
        self._teardown()
        return TransitionCallbackReturn.SUCCESS

    def _deactivate(self, wait_s: float = 30.0, free_model: bool = True) -> None:
        """Unsubscribe, stop the worker (waiting up to ``wait_s`` for a running inference), free the model
        (at process exit ``free_model=False``: the exit frees it faster)."""
        self.active = False
        if self._cs_recheck is not None:
            self.destroy_timer(self._cs_recheck)
            self._cs_recheck = None
        for sub in self._cs_subs:
            self.destroy_subscription(sub)
        self._cs_subs = []
        for matched in self._cs_inputs:
            matched.destroy()
        self._cs_inputs = []
        if self.worker is not None:
            stopped = self.worker.stop(wait_s)
            self.worker = None
            if not stopped:  # only when exiting (short wait): the process exit frees the model under it
                self.get_logger().warning(f"[{NODE_NAME}] inference still running after {wait_s:.0f} s")
                free_model = False
        self.slot.clear()
        if free_model:
            self._free_engine()
        self.engine = None

    def _free_engine(self) -> None:
        if self.engine is not None:
            try:
                self.engine.close()
            except Exception as exc:  # noqa: BLE001
                self.get_logger().warning(f"[{NODE_NAME}] engine.close failed: {exc}")
        self.engine = None
        gc.collect()
        free_accelerator_cache()

    def _teardown(self) -> None:
        if self._cs_timer is not None:
            self.destroy_timer(self._cs_timer)
            self._cs_timer = None
        for srv in self._cs_srvs:
            self.destroy_service(srv)
        self._cs_srvs = []
        for pub in self._cs_pubs.values():
            self.destroy_publisher(pub)
        self._cs_pubs = {}

    def _subscribe(self) -> None:
        cfg = self.cfg

        def matched(msg_type: Any, topic: str, callback: Any, depth: int = 1) -> MatchedInput:
            return MatchedInput(
                self,
                msg_type,
                topic,
                callback,
                cfg.image_reliability,
                depth,
                self._cs_inputs_group,
                lambda text: self.get_logger().info(f"[{NODE_NAME}] {text}"),
            )

        if cfg.use_compressed:
            self._cs_inputs.append(matched(CompressedImage, "image/compressed", self._on_image, cfg.image_depth))
        else:
            self._cs_inputs.append(matched(Image, "image", self._on_image, cfg.image_depth))
        if cfg.use_depth:
            self._cs_inputs += [
                matched(Image, "depth", self._on_depth),
                matched(CameraInfo, "camera_info", self._on_camera_info),
            ]
        if cfg.image_reliability == "auto":
            self._cs_recheck = self.create_timer(
                INPUT_RECHECK_S, self._recheck_inputs, callback_group=self._cs_inputs_group
            )
        self._cs_subs += [
            self.create_subscription(
                SegmentationQuery,
                "query",
                self._on_query,
                qos.command_qos(),
                callback_group=self._cs_inputs_group,
            ),
            self.create_subscription(
                String,
                "query_text",
                self._on_query_text,
                qos.command_qos(),
                callback_group=self._cs_inputs_group,
            ),
        ]

    def _recheck_inputs(self) -> None:
        """Follow the publishers' reliability (same callback group as the inputs: never mid-callback)."""
        for matched in self._cs_inputs:
            matched.refresh()

    # -- inputs (never wait for the model) ---------------------------------------------------------
    def _now_ns(self) -> int:
        return self.get_clock().now().nanoseconds

    def _wake_worker(self) -> None:
        worker = self.worker
        if worker is not None:
            worker.notify()

    def _on_image(self, msg: Image | CompressedImage) -> None:
        """Store the frame if it can be decoded (cheap checks, no decoding); count and log it otherwise."""
        self.frames_received += 1
        try:
            if isinstance(msg, CompressedImage):
                check_compressed(msg)
            else:
                check_image(msg, self.cfg.use_cv_bridge, self.cfg.max_image_pixels)
        except ImageCodecError as exc:
            self.slot.reject(str(exc))
            self.get_logger().warning(
                f"[{NODE_NAME}] camera frame rejected: {exc}", throttle_duration_sec=self.cfg.log_throttle_s
            )
            return
        self.slot.put(msg, conv.stamp_ns(msg.header.stamp), self._now_ns())

    def _on_depth(self, msg: Image) -> None:
        self._depth = (msg, conv.stamp_ns(msg.header.stamp) or self._now_ns())

    def _on_camera_info(self, msg: CameraInfo) -> None:
        self._intrinsics = Intrinsics.from_camera_info(msg)

    def _make_query(self, qid: str, text: str, stamp_ns: int, mode: int) -> Query:
        """Validated Query (raises ValueError with the reason); assigns an id when none is given."""
        text = text.strip()
        if not text:
            raise ValueError("empty query")
        if len(text) > self.cfg.max_query_chars:
            raise ValueError(
                f"query of {len(text)} characters exceeds max_query_chars={self.cfg.max_query_chars}"
            )
        if mode not in (MODE_CONTINUOUS, MODE_ONCE):
            raise ValueError(f"unknown query mode {mode}")
        qid = qid.strip()[:128] or f"q{next(self._ids)}"
        return Query(qid, text, stamp_ns or self._now_ns(), mode)

    def _on_query(self, msg: SegmentationQuery) -> None:
        try:
            query = self._make_query(msg.id, msg.text, conv.stamp_ns(msg.header.stamp), int(msg.mode))
        except ValueError as exc:
            self._report_bad_query(msg.id, msg.text, msg.header, str(exc))
            return
        self._accept(query)

    def _on_query_text(self, msg: String) -> None:
        try:
            query = self._make_query("", msg.data, 0, MODE_CONTINUOUS)
        except ValueError as exc:
            self._report_bad_query("", msg.data, Header(), str(exc))
            return
        self._accept(query)

    def _accept(self, query: Query) -> None:
        self.get_logger().info(
            f"[{NODE_NAME}] query {query.id} ({'once' if query.mode else 'continuous'}): {query.text[:120]!r}"
        )
        if query.mode == MODE_ONCE:
            if self.worker is not None:
                job = self.worker.submit(
                    Job(query, policy=self.cfg.frame_policy, frame_timeout_s=self.cfg.frame_timeout_s)
                )
                if job.done.is_set() and job.outcome is not None and job.outcome.error:  # refused (busy)
                    self._report_bad_query(query.id, query.text, Header(), job.outcome.error, prefix="")
            return
        self._active_query = query
        if self.worker is not None:
            self.worker.set_continuous(query)
        self._publish_active_query()

    def _report_bad_query(
        self, qid: str, text: str, header: Any, reason: str, prefix: str = "bad query: "
    ) -> None:
        self.get_logger().warning(
            f"[{NODE_NAME}] query refused: {reason}", throttle_duration_sec=self.cfg.log_throttle_s
        )
        pub = self._cs_pubs.get("result")
        if pub is not None:
            pub.publish(
                SegmentationResult(
                    header=conv.copy_header(header),
                    query_id=qid,
                    query=text[:200],
                    success=False,
                    message=f"{prefix}{reason}",
                )
            )

    def _publish_active_query(self) -> None:
        pub = self._cs_pubs.get("active_query")
        if pub is None:
            return
        q = self._active_query
        msg = SegmentationQuery(mode=MODE_CONTINUOUS)
        if q is not None:
            msg.id, msg.text, msg.header.stamp = q.id, q.text, conv.ns_to_time(q.stamp_ns)
        pub.publish(msg)

    def _on_expired(self, job: Job) -> None:
        """A once-query got no frame in time: answer it on `result` (service calls get their response)."""
        if job.from_service:
            return
        self._report_bad_query(job.query.id, job.query.text, Header(), job.outcome.error, prefix="")

    def _on_stale(self, frame: Frame, age_s: float) -> None:
        self.get_logger().warning(
            f"[{NODE_NAME}] stale frame rejected: {age_s:.2f} s old > "
            f"max_image_age_s={self.cfg.max_image_age_s} (check the camera clock / use_sim_time)",
            throttle_duration_sec=self.cfg.log_throttle_s,
        )

    # -- services ----------------------------------------------------------------------------------
    def _on_enable(self, req: SetBool.Request, resp: SetBool.Response) -> SetBool.Response:
        self._enabled = bool(req.data)
        if self.worker is not None:
            self.worker.set_enabled(self._enabled)
        resp.success, resp.message = True, "enabled" if self._enabled else "disabled (service still answers)"
        return resp

    def _on_clear_query(self, req: Trigger.Request, resp: Trigger.Response) -> Trigger.Response:
        had = self._active_query
        self._active_query = None
        if self.worker is not None:
            self.worker.set_continuous(None)
        self._publish_active_query()
        resp.success, resp.message = True, f"cleared {had.id}" if had else "no active query"
        return resp

    def _on_segment(self, req: Segment.Request, resp: Segment.Response) -> Segment.Response:
        worker = self.worker
        if worker is None or not self.active:
            resp.success, resp.message = False, "node is not active (model not loaded)"
            return resp
        try:
            query = self._make_query(req.query_id, req.query, 0, MODE_ONCE)
        except ValueError as exc:
            resp.success, resp.message = False, f"bad query: {exc}"
            resp.result.success, resp.result.message = False, resp.message
            return resp
        policy = req.frame_policy or self.cfg.frame_policy
        if policy not in params.POLICIES:
            resp.success, resp.message = False, f"unknown frame_policy {policy!r}; use latest or next"
            return resp
        timeout = float(req.timeout_s) if req.timeout_s > 0 else self.cfg.service_timeout_s
        frame_timeout = float(req.timeout_s) if req.timeout_s > 0 else self.cfg.frame_timeout_s
        inline = req.image if (req.image.height or req.image.width or len(req.image.data)) else None
        with self._calls_lock:
            busy = self._waiting_calls >= MAX_WAITING_CALLS
            self._waiting_calls += 0 if busy else 1
        if busy:
            resp.success, resp.message = False, f"busy: {MAX_WAITING_CALLS} segment calls already waiting"
            return resp
        try:
            job = worker.submit(
                Job(query, policy, inline_msg=inline, from_service=True, frame_timeout_s=frame_timeout)
            )
            answered = job.done.wait(min(timeout, 3600.0))
        finally:
            with self._calls_lock:
                self._waiting_calls -= 1
        if not answered:
            no_frame = worker.cancel(job)
            if not job.done.is_set():  # (else answered just now)
                resp.success = False
                resp.message = no_frame or f"timed out after {timeout:.1f} s waiting for the model"
                resp.result.query_id, resp.result.query = query.id, query.text
                return resp
        batch, outcome = job.batch, job.outcome
        if batch is None:  # answered without a frame (e.g. deactivated while waiting)
            resp.success, resp.message = False, outcome.error or "not answered"
            return resp
        header = conv.copy_header(batch.frame.msg.header, self.cfg.frame_id_override)
        resp.result = self._result(batch, outcome, header, self._depth_context(batch))
        resp.success, resp.message = resp.result.success, resp.result.message or "ok"
        if req.return_overlay and outcome.output is not None and batch.rgb is not None:
            encode(self._overlay(batch, outcome, resp.result), "rgb8", resp.overlay, header)
        return resp

    # -- outputs (worker thread) -------------------------------------------------------------------
    def _decode(self, msg: Any) -> np.ndarray:
        if isinstance(msg, CompressedImage):
            return compressed_to_rgb8(msg, self.cfg.max_image_pixels)
        return image_to_rgb8(msg, self.cfg.use_cv_bridge, self.cfg.max_image_pixels)

    def _depth_context(self, batch: Batch) -> tuple[np.ndarray, Intrinsics] | None:
        """Depth (metres) and intrinsics usable for this frame, or None."""
        if not self.cfg.use_depth or self._depth is None or self._intrinsics is None or batch.rgb is None:
            return None
        msg, depth_stamp = self._depth
        if abs(depth_stamp - batch.frame.stamp_ns) > self.cfg.max_depth_skew_s * 1e9:
            return None
        try:
            return depth_to_m(msg, self.cfg.depth_scale, self.cfg.max_image_pixels), self._intrinsics
        except ValueError as exc:
            self.get_logger().warning(
                f"[{NODE_NAME}] depth image ignored: {exc}", throttle_duration_sec=self.cfg.log_throttle_s
            )
            return None

    def _result(
        self, batch: Batch, outcome: Outcome, header: Header, depth: tuple[np.ndarray, Intrinsics] | None
    ) -> SegmentationResult:
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
                        with_mask=self.cfg.publish_region_masks,
                        contour_max_points=self.cfg.contour_max_points,
                        position=position,
                    )
                )
        return conv.result_msg(
            outcome,
            header,
            encode_ms=batch.encode_ms,
            inference_ms=batch.segment_ms,
            regions=regions,
            now_ns=self._now_ns(),
            source_stamp_ns=batch.frame.stamp_ns,
        )

    def _overlay(self, batch: Batch, outcome: Outcome, result: SegmentationResult) -> np.ndarray:
        from converseg_ros.visualization import draw_overlay

        title = f'"{outcome.query.text[:80]}"  {len(result.regions)} regions  {result.latency_ms:.0f} ms'
        if self.choice is not None and not self.choice.trained:
            title += "  |  " + UNTRAINED_BANNER.format(preset=self.choice.preset)
        out = outcome.output
        return draw_overlay(
            batch.rgb, np.asarray(out.mask, bool), out.regions, title, alpha=self.cfg.overlay_alpha
        )

    def _publish_batch(self, batch: Batch) -> None:
        """Publish results of topic queries (service answers go back to the caller only)."""
        service_queries = {id(j.query) for j in batch.jobs if j.from_service}
        outcomes = [o for o in batch.outcomes if id(o.query) not in service_queries]
        if not outcomes or not self._cs_pubs:
            return
        header = conv.copy_header(batch.frame.msg.header, self.cfg.frame_id_override)
        depth = self._depth_context(batch)
        results = []
        for outcome in outcomes:
            result = self._result(batch, outcome, header, depth)
            results.append(result)
            self._cs_pubs["result"].publish(result)
            if not result.success:
                self.get_logger().warning(
                    f"[{NODE_NAME}] query {outcome.query.id}: {result.message}",
                    throttle_duration_sec=self.cfg.log_throttle_s,
                )
                continue
            self._cs_pubs["mask"].publish(result.mask)
            overlay_pub = self._cs_pubs["overlay"]
            if self.cfg.publish_overlay and overlay_pub.get_subscription_count() > 0:
                overlay_pub.publish(encode(self._overlay(batch, outcome, result), "rgb8", Image(), header))
        if depth is not None:
            self._cs_pubs["markers"].publish(conv.markers_msg(header, results))
        if "detections" in self._cs_pubs:
            self._cs_pubs["detections"].publish(conv.detections_msg(header, results))

    # -- parameters and diagnostics ----------------------------------------------------------------
    def _worker_settings(self) -> WorkerSettings:
        c = self.cfg
        return WorkerSettings(c.max_image_age_s, c.max_rate_hz, c.min_region_area_px, c.max_regions)

    def _on_set_parameters(self, changes: list[Any]) -> SetParametersResult:
        new = {p.name: p.value for p in changes}
        if "frame_policy" in new and new["frame_policy"] not in params.POLICIES:
            return SetParametersResult(
                successful=False, reason=f"frame_policy must be one of {params.POLICIES}"
            )
        if "query" in new and len(str(new["query"])) > self.cfg.max_query_chars:
            return SetParametersResult(successful=False, reason="query longer than max_query_chars")
        for name in ("max_image_age_s", "max_rate_hz", "overlay_alpha", "frame_policy", "frame_timeout_s"):
            if name in new:
                setattr(self.cfg, name, new[name])
        if self.worker is not None:
            self.worker.settings = self._worker_settings()
        if "query" in new and self._cs_pubs:  # runtime change of the continuous query
            text = str(new["query"]).strip()
            if text:
                self._accept(self._make_query("", text, 0, MODE_CONTINUOUS))
            else:
                self._on_clear_query(Trigger.Request(), Trigger.Response())
        return SetParametersResult(successful=True)

    def _publish_diagnostics(self) -> None:
        pub = self._cs_pubs.get("diagnostics")
        if pub is None:
            return
        status = DiagnosticStatus(
            name=f"{self.get_fully_qualified_name()}: inference", hardware_id="converseg"
        )
        worker = self.worker
        stats = worker.stats if worker is not None else None
        if not self.active:
            status.level, status.message = DiagnosticStatus.WARN, "inactive (model not loaded)"
        elif stats is not None and stats.last_error:
            status.level, status.message = DiagnosticStatus.WARN, f"last error: {stats.last_error[:200]}"
        else:
            status.level, status.message = DiagnosticStatus.OK, "running"
        q = self._active_query
        values = {
            "preset": self.choice.preset if self.choice else "",
            "device": self.choice.device if self.choice else "",
            "enabled": str(self._enabled),
            "active_query": q.text[:200] if q else "",
            "image_topic": self._cs_inputs[0].topic if self._cs_inputs else "",
            "image_reliability": self._cs_inputs[0].reliability if self._cs_inputs else "",
            "frames_received": str(self.frames_received),
            "frames_rejected": str(self.slot.rejected),
            "last_frame_rejected": self.slot.last_reject[:200],
            "frames_dropped_overwritten": str(self.slot.overwritten),
        }
        if stats is not None:
            values.update(
                {
                    "frames_encoded": str(stats.frames_encoded),
                    "batches": str(stats.batches),
                    "frames_stale": str(stats.frames_stale),
                    "frames_bad": str(stats.frames_bad),
                    "queries_answered": str(stats.queries_answered),
                    "errors": str(stats.errors),
                    "encode_ms": f"{stats.last_encode_ms:.1f}",
                    "segment_ms": f"{stats.last_segment_ms:.1f}",
                    "pending_jobs": str(worker.pending_jobs),
                }
            )
        status.values = [KeyValue(key=k, value=v) for k, v in values.items()]
        pub.publish(DiagnosticArray(header=Header(stamp=self.get_clock().now().to_msg()), status=[status]))
