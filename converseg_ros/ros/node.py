"""converseg_node: a lifecycle node that turns camera images + conversational queries into masks and
affordance regions. It only converts messages and calls the engine (on one worker thread). One node serves
one or several cameras (parameter ``cameras``) with one model.

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
from diagnostic_msgs.msg import DiagnosticArray
from rcl_interfaces.msg import SetParametersResult
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup, ReentrantCallbackGroup
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from std_msgs.msg import Header, String
from std_srvs.srv import SetBool, Trigger
from visualization_msgs.msg import MarkerArray

from converseg_ros.engine.tracking import TrackingConfig
from converseg_ros.ros import params
from converseg_ros.ros.cameras import CameraIO
from converseg_ros.ros.diagnostics import diagnostics_msg
from converseg_ros.ros.matched_input import MatchedInput
from converseg_ros.ros.msgs import conversions as conv
from converseg_ros.ros.msgs import qos
from converseg_ros.ros.msgs.depth import Intrinsics
from converseg_ros.ros.msgs.image_codec import ImageCodecError, encode
from converseg_ros.ros.msgs.image_input import check_compressed, check_image, compressed_to_rgb8, image_to_rgb8
from converseg_ros.ros.msgs.interfaces import Reground, Segment, SegmentationQuery, SegmentationResult
from converseg_ros.ros.outputs import UNTRAINED_BANNER, Outputs
from converseg_ros.serving.accounts import free_accelerator_cache
from converseg_ros.serving.frame_slot import Frame, LatestSlot
from converseg_ros.serving.model import ModelChoice, check_model, load_engine
from converseg_ros.serving.publish_queue import PublishQueue
from converseg_ros.serving.worker import (
    MODE_CONTINUOUS,
    MODE_ONCE,
    MODE_STOP,
    MODE_TRACK,
    CameraFeed,
    InferenceWorker,
    Job,
    Query,
    WorkerSettings,
)

NODE_NAME = "converseg_node"
# Executor threads (converseg_ros.ros.run): the input/timer group needs one, each waiting segment call holds
# one. Calls beyond MAX_WAITING_CALLS are refused ("busy") so waiting calls can never starve the images.
EXECUTOR_THREADS = 6
MAX_WAITING_CALLS = EXECUTOR_THREADS - 2
INPUT_RECHECK_S = 1.0  # how often `image_reliability: auto` inputs re-read what their publishers offer
MODE_NAMES = {MODE_CONTINUOUS: "continuous", MODE_ONCE: "once", MODE_TRACK: "tracked"}


class ConverSegNode(LifecycleNode):
    """The ROS face of ConverSegEngine (see the module docstring)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(NODE_NAME, **kwargs)
        params.declare(self)
        self.cfg = params.read(self)
        self.choice: ModelChoice | None = None
        self.engine: Any = None
        self.worker: InferenceWorker | None = None
        self.publisher: PublishQueue | None = None  # converts and publishes batches off the inference thread
        self.outputs = Outputs(self)
        self.cameras: dict[str, CameraIO] = {}  # by name ("" = the unnamed camera)
        self.active = False
        self.enabled = True
        self._ids = itertools.count(1)
        self._waiting_calls = 0
        self._calls_lock = threading.Lock()
        self._cs_inputs_group = MutuallyExclusiveCallbackGroup()
        self._cs_service_group = ReentrantCallbackGroup()
        self._cs_subs: list[Any] = []
        self._cs_recheck: Any = None
        self._cs_pubs: dict[str, Any] = {}  # node-level outputs (diagnostics)
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
        kept = self.cameras
        self.cameras = {name: kept.get(name) or CameraIO(name, LatestSlot()) for name in params.camera_names(cfg)}
        for camera in self.cameras.values():
            camera.slot._on_put = self._wake_worker
            self._create_outputs(camera)
        self._cs_pubs = {"diagnostics": self.create_publisher(DiagnosticArray, "/diagnostics", qos.output_qos(10))}
        group = self._cs_service_group
        self._cs_srvs = [
            self.create_service(Segment, "segment", self._on_segment, callback_group=group),
            self.create_service(SetBool, "enable", self._on_enable, callback_group=group),
            self.create_service(Trigger, "clear_query", self._on_clear_query, callback_group=group),
            self.create_service(Reground, "reground", self._on_reground, callback_group=group),
        ]
        if cfg.query.strip() and not any(c.continuous for c in self.cameras.values()):
            query = self._make_query("", cfg.query, 0, MODE_CONTINUOUS)
            for camera in self.cameras.values():
                camera.continuous = query
        for camera in self.cameras.values():
            self._publish_active_query(camera)
        if cfg.diagnostics_period_s > 0:
            self._cs_timer = self.create_timer(
                cfg.diagnostics_period_s, self._publish_diagnostics, callback_group=self._cs_inputs_group
            )
        c = self.choice
        names = ", ".join(self.cameras) if any(self.cameras) else "one unnamed camera"
        self.get_logger().info(
            f"[{NODE_NAME}] configured: preset {c.preset} ({c.description}), "
            f"device {c.device}, precision {c.precision}, cameras: {names}"
        )
        return TransitionCallbackReturn.SUCCESS

    def _create_outputs(self, camera: CameraIO) -> None:
        out, topic = qos.output_qos, camera.topic
        camera.pubs = {
            "result": self.create_publisher(SegmentationResult, topic("result"), out(50)),
            "mask": self.create_publisher(Image, topic("mask"), out(1)),
            "overlay": self.create_publisher(Image, topic("overlay"), out(1)),
            "active_query": self.create_publisher(SegmentationQuery, topic("active_query"), qos.latched_qos()),
            "markers": self.create_publisher(MarkerArray, topic("markers"), out(1)),
        }
        if self.cfg.publish_detections and conv.HAVE_VISION_MSGS:
            camera.pubs["detections"] = self.create_publisher(conv.Detection2DArray, topic("detections"), out(10))
        elif self.cfg.publish_detections:
            self.get_logger().info(f"[{NODE_NAME}] vision_msgs not importable: no detections output", once=True)

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
        self._subscribe()
        feeds = [CameraFeed(c.name, c.slot, c.image_topic) for c in self.cameras.values()]
        self.publisher = PublishQueue(self.outputs.publish_batch, self._on_publish_error)
        self.worker = InferenceWorker(
            self.engine,
            feeds,
            self._decode,
            self.publisher.put,
            self._now_ns,
            self._worker_settings(),
            on_stale=self._on_stale,
            on_expired=self._on_expired,
        )
        self.worker.set_enabled(self.enabled)
        for camera in self.cameras.values():  # the queries the node kept while the model was away
            self.worker.set_continuous(camera.continuous, camera.name)
            for query in camera.tracked.values():
                self.worker.start_track(query, camera.name)
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
        publish_wait_s = min(wait_s, 10.0) if free_model else 1.0  # at exit: within launch's 5 s in all
        self.active = False
        if self._cs_recheck is not None:
            self.destroy_timer(self._cs_recheck)
            self._cs_recheck = None
        for sub in self._cs_subs:
            self.destroy_subscription(sub)
        self._cs_subs = []
        for camera in self.cameras.values():
            for matched in camera.inputs:
                matched.destroy()
            camera.inputs = []
        if self.worker is not None:
            stopped = self.worker.stop(wait_s)
            self.worker = None
            if not stopped:  # only when exiting (short wait): the process exit frees the model under it
                self.get_logger().warning(f"[{NODE_NAME}] inference still running after {wait_s:.0f} s")
                free_model = False
        if self.publisher is not None:  # what was computed is still published (publishers live until cleanup)
            self.publisher.close(publish_wait_s)
            self.publisher = None
        for camera in self.cameras.values():
            camera.slot.clear()
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
        pubs = list(self._cs_pubs.values())
        for camera in self.cameras.values():
            pubs += camera.pubs.values()
            camera.pubs = {}
        for pub in pubs:
            self.destroy_publisher(pub)
        self._cs_pubs = {}

    def _subscribe(self) -> None:
        cfg = self.cfg

        def matched(camera: CameraIO, msg_type: Any, name: str, callback: Any, depth: int = 1) -> MatchedInput:
            return MatchedInput(
                self,
                msg_type,
                camera.topic(name),
                lambda msg: callback(camera, msg),
                cfg.image_reliability,
                depth,
                self._cs_inputs_group,
                lambda text: self.get_logger().info(f"[{NODE_NAME}] {text}"),
            )

        for camera in self.cameras.values():
            kind, name = (CompressedImage, "image/compressed") if cfg.use_compressed else (Image, "image")
            camera.inputs.append(matched(camera, kind, name, self._on_image, cfg.image_depth))
            if cfg.use_depth:
                camera.inputs += [
                    matched(camera, Image, "depth", self._on_depth),
                    matched(camera, CameraInfo, "camera_info", self._on_camera_info),
                ]
        if cfg.image_reliability == "auto":
            self._cs_recheck = self.create_timer(
                INPUT_RECHECK_S, self._recheck_inputs, callback_group=self._cs_inputs_group
            )
        group, command = self._cs_inputs_group, qos.command_qos()
        self._cs_subs += [
            self.create_subscription(SegmentationQuery, "query", self._on_query, command, callback_group=group),
            self.create_subscription(String, "query_text", self._on_query_text, command, callback_group=group),
        ]

    def _recheck_inputs(self) -> None:
        """Follow the publishers' reliability (same callback group as the inputs: never mid-callback)."""
        for camera in self.cameras.values():
            for matched in camera.inputs:
                matched.refresh()

    # -- inputs (never wait for the model) ---------------------------------------------------------
    def _now_ns(self) -> int:
        return self.get_clock().now().nanoseconds

    def _wake_worker(self) -> None:
        worker = self.worker
        if worker is not None:
            worker.notify()

    def _on_image(self, camera: CameraIO, msg: Image | CompressedImage) -> None:
        """Store the frame if it can be decoded (cheap checks, no decoding); count and log it otherwise."""
        camera.frames_received += 1
        try:
            if isinstance(msg, CompressedImage):
                check_compressed(msg)
            else:
                check_image(msg, self.cfg.use_cv_bridge, self.cfg.max_image_pixels)
        except ImageCodecError as exc:
            camera.slot.reject(str(exc))
            where = f" ({camera.label})" if camera.name else ""
            self.get_logger().warning(
                f"[{NODE_NAME}] camera frame rejected{where}: {exc}", throttle_duration_sec=self.cfg.log_throttle_s
            )
            return
        camera.slot.put(msg, conv.stamp_ns(msg.header.stamp), self._now_ns())

    def _on_depth(self, camera: CameraIO, msg: Image) -> None:
        camera.depth = (msg, conv.stamp_ns(msg.header.stamp) or self._now_ns())

    def _on_camera_info(self, camera: CameraIO, msg: CameraInfo) -> None:
        camera.intrinsics = Intrinsics.from_camera_info(msg)

    def _targets(self, camera: str) -> list[CameraIO]:
        """The cameras a query or call names ("" = every camera); ValueError for an unknown name."""
        camera = camera.strip()
        if not camera:
            return list(self.cameras.values())
        if camera not in self.cameras:
            known = ", ".join(repr(c) for c in self.cameras) if any(self.cameras) else "none (one unnamed camera)"
            raise ValueError(f"unknown camera {camera!r}; cameras: {known}")
        return [self.cameras[camera]]

    def _make_query(self, qid: str, text: str, stamp_ns: int, mode: int) -> Query:
        """Validated Query (raises ValueError with the reason); assigns an id when none is given."""
        text = text.strip()
        if not text:
            raise ValueError("empty query")
        if len(text) > self.cfg.max_query_chars:
            raise ValueError(
                f"query of {len(text)} characters exceeds max_query_chars={self.cfg.max_query_chars}"
            )
        if mode not in MODE_NAMES:
            raise ValueError(f"unknown query mode {mode}")
        qid = qid.strip()[:128] or f"q{next(self._ids)}"
        return Query(qid, text, stamp_ns or self._now_ns(), mode)

    def _on_query(self, msg: SegmentationQuery) -> None:
        try:
            targets = self._targets(msg.camera)
        except ValueError as exc:
            self._report_bad_query(msg.id, msg.text, msg.header, str(exc), list(self.cameras.values()))
            return
        if msg.mode == MODE_STOP:
            self._stop_query(msg.id.strip(), targets, msg.camera.strip())
            return
        try:
            query = self._make_query(msg.id, msg.text, conv.stamp_ns(msg.header.stamp), int(msg.mode))
        except ValueError as exc:
            self._report_bad_query(msg.id, msg.text, msg.header, str(exc), targets)
            return
        self._accept(query, targets)

    def _on_query_text(self, msg: String) -> None:
        try:
            query = self._make_query("", msg.data, 0, MODE_CONTINUOUS)
        except ValueError as exc:
            self._report_bad_query("", msg.data, Header(), str(exc), list(self.cameras.values()))
            return
        self._accept(query, list(self.cameras.values()))

    def _accept(self, query: Query, targets: list[CameraIO]) -> None:
        where = f" on {', '.join(c.name for c in targets)}" if any(c.name for c in targets) else ""
        mode = MODE_NAMES[query.mode]
        self.get_logger().info(f"[{NODE_NAME}] query {query.id} ({mode}{where}): {query.text[:120]!r}")
        for camera in targets:
            if query.mode == MODE_ONCE:
                self._submit_once(query, camera)
            elif query.mode == MODE_TRACK:
                if query.id not in camera.tracked and len(camera.tracked) >= self.cfg.max_tracks:
                    reason = f"busy: {camera.label} already tracks max_tracks={self.cfg.max_tracks} queries"
                    self._report_bad_query(query.id, query.text, Header(), reason, [camera], prefix="")
                    continue
                camera.tracked[query.id] = query
                if self.worker is not None:
                    self.worker.start_track(query, camera.name)
            else:
                camera.continuous = query
                if self.worker is not None:
                    self.worker.set_continuous(query, camera.name)
                self._publish_active_query(camera)

    def _submit_once(self, query: Query, camera: CameraIO) -> None:
        if self.worker is None:
            return
        job = Job(query, policy=self.cfg.frame_policy, frame_timeout_s=self.cfg.frame_timeout_s, camera=camera.name)
        job = self.worker.submit(job)
        if job.done.is_set() and job.outcome is not None and job.outcome.error:  # refused (busy)
            self._report_bad_query(query.id, query.text, Header(), job.outcome.error, [camera], prefix="")

    def _stop_query(self, qid: str, targets: list[CameraIO], named: str) -> None:
        """MODE_STOP: forget the continuous or tracked query ``qid`` on ``targets``."""
        stopped = 0
        for camera in targets:
            if camera.continuous is not None and camera.continuous.id == qid:
                camera.continuous = None
                stopped += 1
                self._publish_active_query(camera)
            stopped += camera.tracked.pop(qid, None) is not None
        if self.worker is not None:
            self.worker.stop_query(qid, named or None)
        if stopped:
            self.get_logger().info(f"[{NODE_NAME}] query {qid} stopped ({stopped} camera(s))")
        else:
            reason = f"no continuous or tracked query {qid!r} to stop"
            self._report_bad_query(qid, "", Header(), reason, targets, prefix="")

    def _report_bad_query(
        self, qid: str, text: str, header: Any, reason: str, cameras: list[CameraIO], prefix: str = "bad query: "
    ) -> None:
        self.get_logger().warning(
            f"[{NODE_NAME}] query refused: {reason}", throttle_duration_sec=self.cfg.log_throttle_s
        )
        for camera in cameras:
            pub = camera.pubs.get("result")
            if pub is not None:
                pub.publish(
                    SegmentationResult(
                        header=conv.copy_header(header),
                        query_id=qid,
                        query=text[:200],
                        camera=camera.name,
                        success=False,
                        message=f"{prefix}{reason}",
                    )
                )

    def _publish_active_query(self, camera: CameraIO) -> None:
        pub = camera.pubs.get("active_query")
        if pub is None:
            return
        q = camera.continuous
        msg = SegmentationQuery(mode=MODE_CONTINUOUS, camera=camera.name)
        if q is not None:
            msg.id, msg.text, msg.header.stamp = q.id, q.text, conv.ns_to_time(q.stamp_ns)
        pub.publish(msg)

    def _on_expired(self, job: Job) -> None:
        """A once-query got no frame in time: answer it on `result` (service calls get their response)."""
        if job.from_service:
            return
        cameras = [self.cameras[job.camera]] if job.camera in self.cameras else list(self.cameras.values())
        self._report_bad_query(job.query.id, job.query.text, Header(), job.outcome.error, cameras, prefix="")

    def _on_stale(self, frame: Frame, age_s: float, camera: str) -> None:
        where = f" (camera {camera})" if camera else ""
        self.get_logger().warning(
            f"[{NODE_NAME}] stale frame rejected{where}: {age_s:.2f} s old > "
            f"max_image_age_s={self.cfg.max_image_age_s} (check the camera clock / use_sim_time)",
            throttle_duration_sec=self.cfg.log_throttle_s,
        )

    # -- services ----------------------------------------------------------------------------------
    def _on_enable(self, req: SetBool.Request, resp: SetBool.Response) -> SetBool.Response:
        self.enabled = bool(req.data)
        if self.worker is not None:
            self.worker.set_enabled(self.enabled)
        resp.success, resp.message = True, "enabled" if self.enabled else "disabled (service still answers)"
        return resp

    def _on_clear_query(self, req: Trigger.Request, resp: Trigger.Response) -> Trigger.Response:
        had = sorted({q.id for c in self.cameras.values() for q in [c.continuous, *c.tracked.values()] if q})
        for camera in self.cameras.values():
            camera.continuous = None
            camera.tracked.clear()
            self._publish_active_query(camera)
        if self.worker is not None:
            self.worker.clear()
        resp.success, resp.message = True, f"cleared {', '.join(had)}" if had else "no active query"
        return resp

    def _on_reground(self, req: Reground.Request, resp: Reground.Response) -> Reground.Response:
        try:
            targets = self._targets(req.camera)
        except ValueError as exc:
            resp.success, resp.message = False, str(exc)
            return resp
        qid = req.query_id.strip()
        if self.worker is None or not self.active:
            resp.success, resp.message = False, "node is not active (model not loaded)"
            return resp
        count = sum(self.worker.reground(qid or None, camera.name) for camera in targets)
        resp.tracks = count
        resp.success = count > 0
        what = f"tracked query {qid!r}" if qid else "tracked queries"
        resp.message = f"{count} track(s) will be grounded on their next frame" if count else f"no running {what}"
        return resp

    def _on_segment(self, req: Segment.Request, resp: Segment.Response) -> Segment.Response:
        worker = self.worker
        if worker is None or not self.active:
            resp.success, resp.message = False, "node is not active (model not loaded)"
            return resp
        try:
            query = self._make_query(req.query_id, req.query, 0, MODE_ONCE)
            camera = self._targets(req.camera)[0].name if req.camera.strip() else None
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
            job = Job(query, policy, inline_msg=inline, from_service=True, frame_timeout_s=frame_timeout)
            job.camera = camera if inline is None else None
            job = worker.submit(job)
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
        header = self.outputs.header(batch)
        resp.result = self.outputs.result(batch, outcome, header, self.outputs.depth_context(batch))
        resp.success, resp.message = resp.result.success, resp.result.message or "ok"
        if req.return_overlay and outcome.output is not None and batch.rgb is not None:
            encode(self.outputs.overlay(batch, outcome, resp.result), "rgb8", resp.overlay, header)
        return resp

    def _on_publish_error(self, batch: Any, exc: BaseException) -> None:
        reason = f"publish failed: {type(exc).__name__}: {exc}"
        self.get_logger().error(f"[{NODE_NAME}] {reason}", throttle_duration_sec=self.cfg.log_throttle_s)
        worker = self.worker
        if worker is not None:
            worker.report_error(batch.camera, reason)

    # -- decoding (worker thread) ------------------------------------------------------------------
    def _decode(self, msg: Any) -> np.ndarray:
        if isinstance(msg, CompressedImage):
            return compressed_to_rgb8(msg, self.cfg.max_image_pixels)
        return image_to_rgb8(msg, self.cfg.use_cv_bridge, self.cfg.max_image_pixels)

    # -- parameters and diagnostics ----------------------------------------------------------------
    def _worker_settings(self) -> WorkerSettings:
        c = self.cfg
        tracking = TrackingConfig(c.track_min_object_score, c.track_min_iou, c.track_reground_every)
        return WorkerSettings(
            max_image_age_s=c.max_image_age_s, max_rate_hz=c.max_rate_hz, pre_encode_hz=c.pre_encode_hz,
            min_region_area_px=c.min_region_area_px, max_regions=c.max_regions, tracking=tracking,
        )

    def _on_set_parameters(self, changes: list[Any]) -> SetParametersResult:
        new = {p.name: p.value for p in changes}
        if "frame_policy" in new and new["frame_policy"] not in params.POLICIES:
            return SetParametersResult(
                successful=False, reason=f"frame_policy must be one of {params.POLICIES}"
            )
        if "query" in new and len(str(new["query"])) > self.cfg.max_query_chars:
            return SetParametersResult(successful=False, reason="query longer than max_query_chars")
        for name in params.RUNTIME_SETTABLE:
            if name in new and name != "query":
                setattr(self.cfg, name, new[name])
        if self.worker is not None:
            self.worker.settings = self._worker_settings()
        if "query" in new and self._cs_srvs:  # runtime change of the continuous query
            text = str(new["query"]).strip()
            if text:
                self._accept(self._make_query("", text, 0, MODE_CONTINUOUS), list(self.cameras.values()))
            else:  # "" clears the continuous query (tracked queries stay)
                for camera in self.cameras.values():
                    camera.continuous = None
                    self._publish_active_query(camera)
                if self.worker is not None:
                    self.worker.set_continuous(None)
        return SetParametersResult(successful=True)

    def _publish_diagnostics(self) -> None:
        pub = self._cs_pubs.get("diagnostics")
        if pub is not None:
            pub.publish(diagnostics_msg(self))
