"""converseg_node's commands: the query topics and the services, turned into calls on the serving core.
Every refusal (a bad query, an unknown camera, no such query to stop, too many tracks, a node without a
model) is answered on the camera's result topic by the outputs. Created at configure (so an inactive node
still answers), destroyed at cleanup."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable
from typing import Any

from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from std_msgs.msg import String
from std_srvs.srv import SetBool, Trigger

from converseg_ros.ros.msgs import conversions as conv
from converseg_ros.ros.msgs import qos
from converseg_ros.ros.msgs.image_codec import encode
from converseg_ros.ros.msgs.interfaces import Reground, Segment, SegmentationQuery
from converseg_ros.ros.outputs import Outputs
from converseg_ros.ros.params import POLICIES
from converseg_ros.serving.queries import (
    MAX_ID_CHARS,
    MODE_CONTINUOUS,
    MODE_NAMES,
    MODE_ONCE,
    MODE_STOP,
    MODE_TRACK,
    Job,
    Query,
    clip,
)
from converseg_ros.serving.worker import InferenceWorker

MAX_CALL_WAIT_S = 3600.0


class Commands:
    """Subscriptions and services of ``node`` feeding ``worker``; ``cfg()`` is the current NodeConfig."""

    def __init__(
        self, node: Any, worker: InferenceWorker, outputs: Outputs, cfg: Callable[[], Any],
        service_group: Any, max_waiting_calls: int, log: Callable[[str], None],
    ) -> None:
        self._node, self._worker, self._outputs, self._cfg, self._log = node, worker, outputs, cfg, log
        query_group = MutuallyExclusiveCallbackGroup()  # queries never wait behind camera frames
        self._cameras = worker.book.cameras
        self._ids = itertools.count(1)
        self._max_waiting, self._waiting, self._calls = max_waiting_calls, 0, threading.Lock()
        command = qos.command_qos()
        self._subs = [
            node.create_subscription(SegmentationQuery, "query", self._on_query, command, callback_group=query_group),
            node.create_subscription(String, "query_text", self._on_text, command, callback_group=query_group),
        ]
        self._srvs = [
            node.create_service(Segment, "segment", self._on_segment, callback_group=service_group),
            node.create_service(SetBool, "enable", self._on_enable, callback_group=service_group),
            node.create_service(Trigger, "clear_query", self._on_clear, callback_group=service_group),
            node.create_service(Reground, "reground", self._on_reground, callback_group=service_group),
        ]

    def destroy(self) -> None:
        for sub in self._subs:
            self._node.destroy_subscription(sub)
        for srv in self._srvs:
            self._node.destroy_service(srv)
        self._subs, self._srvs = [], []

    # -- queries -------------------------------------------------------------------------------------
    def make_query(self, qid: str, text: str, stamp_ns: int, mode: int) -> Query:
        """A validated Query (ValueError with the reason); an id is assigned when none is given."""
        text = text.strip()
        limit = self._cfg().max_query_chars
        if not text:
            raise ValueError("empty query")
        if len(text) > limit:
            raise ValueError(f"query of {len(text)} characters exceeds max_query_chars={limit}")
        if mode not in MODE_NAMES or mode == MODE_STOP:
            raise ValueError(f"unknown query mode {mode}")
        qid = qid.strip()[:MAX_ID_CHARS] or f"q{next(self._ids)}"
        return Query(qid, text, stamp_ns or self._node.get_clock().now().nanoseconds, mode)

    def targets(self, camera: str) -> list[str]:
        """The cameras a query or call names ("" = every camera); ValueError for an unknown name."""
        camera = camera.strip()
        if not camera:
            return list(self._cameras)
        if camera not in self._cameras:
            known = ", ".join(repr(c) for c in self._cameras) if any(self._cameras) else "none (one unnamed camera)"
            raise ValueError(f"unknown camera {clip(camera)!r}; cameras: {known}")
        return [camera]

    def accept(self, query: Query, cameras: list[str]) -> None:
        """Hand a valid query to the serving core (``cameras``: where it applies)."""
        where = f" on {', '.join(cameras)}" if any(cameras) else ""
        self._log(f"query {query.id} ({MODE_NAMES[query.mode]}{where}): {query.text[:120]!r}")
        if not self._worker.running:
            self._outputs.refuse(query.id, query.text, "refused: node inactive (model not loaded)", cameras)
            return
        if query.mode == MODE_ONCE:
            cfg = self._cfg()
            for camera in cameras:
                self._worker.submit(Job(query, cfg.frame_policy, frame_timeout_s=cfg.frame_timeout_s, camera=camera))
        elif query.mode == MODE_TRACK:
            for camera, reason in self._worker.start_track(query, self._one(cameras)).items():
                self._outputs.refuse(query.id, query.text, reason, [camera])
        else:
            self.set_continuous(query, cameras)

    def set_continuous(self, query: Query | None, cameras: list[str]) -> None:
        """Replace (None: clear) the continuous query of ``cameras``; publishes their active_query."""
        for camera in self._worker.set_continuous(query, self._one(cameras)):
            self._outputs.publish_active_query(camera, query)

    def _one(self, cameras: list[str]) -> str | None:
        return cameras[0] if len(cameras) == 1 and len(self._cameras) > 1 else None

    def _on_query(self, msg: SegmentationQuery) -> None:
        try:
            cameras = self.targets(msg.camera)
        except ValueError as exc:
            self._outputs.refuse(msg.id, msg.text, f"bad query: {exc}", self._cameras, msg.header)
            return
        if msg.mode == MODE_STOP:
            self._stop(msg.id.strip()[:MAX_ID_CHARS], cameras)
            return
        try:
            query = self.make_query(msg.id, msg.text, conv.stamp_ns(msg.header.stamp), int(msg.mode))
        except ValueError as exc:
            self._outputs.refuse(msg.id, msg.text, f"bad query: {exc}", cameras, msg.header)
            return
        self.accept(query, cameras)

    def _on_text(self, msg: String) -> None:
        try:
            query = self.make_query("", msg.data, 0, MODE_CONTINUOUS)
        except ValueError as exc:
            self._outputs.refuse("", msg.data, f"bad query: {exc}", self._cameras)
            return
        self.accept(query, self._cameras)

    def _stop(self, qid: str, cameras: list[str]) -> None:
        """MODE_STOP: forget the continuous or tracked query ``qid`` on ``cameras``."""
        stopped = self._worker.stop_query(qid, self._one(cameras))
        for camera in stopped:
            self._outputs.publish_active_query(camera, self._worker.continuous(camera))
        if stopped:
            self._log(f"query {qid} stopped ({len(stopped)} camera(s))")
            self._outputs.acknowledge(qid, "", f"stopped on {len(stopped)} camera(s)", stopped)
        else:
            self._outputs.refuse(qid, "", f"no continuous or tracked query {qid!r} to stop", cameras)

    # -- services ------------------------------------------------------------------------------------
    def _on_enable(self, req: SetBool.Request, resp: SetBool.Response) -> SetBool.Response:
        self._worker.set_enabled(bool(req.data))
        resp.success, resp.message = True, "enabled" if req.data else "disabled (service still answers)"
        return resp

    def _on_clear(self, req: Trigger.Request, resp: Trigger.Response) -> Trigger.Response:
        had = self._worker.clear()
        for camera in self._cameras:
            self._outputs.publish_active_query(camera, None)
        resp.success, resp.message = True, f"cleared {', '.join(had)}" if had else "no active query"
        return resp

    def _on_reground(self, req: Reground.Request, resp: Reground.Response) -> Reground.Response:
        try:
            cameras = self.targets(req.camera)
        except ValueError as exc:
            resp.success, resp.message = False, str(exc)
            return resp
        if not self._worker.running:
            resp.success, resp.message = False, "node is not active (model not loaded)"
            return resp
        qid = req.query_id.strip()[:MAX_ID_CHARS]
        count = self._worker.reground(qid or None, self._one(cameras))
        resp.tracks, resp.success = count, count > 0
        what = f"tracked query {qid!r}" if qid else "tracked queries"
        resp.message = f"{count} track(s) will be grounded on their next frame" if count else f"no running {what}"
        return resp

    def _on_segment(self, req: Segment.Request, resp: Segment.Response) -> Segment.Response:
        cfg = self._cfg()
        if not self._worker.running:
            resp.success, resp.message = False, "node is not active (model not loaded)"
            return resp
        try:
            query = self.make_query(req.query_id, req.query, 0, MODE_ONCE)
            camera = self.targets(req.camera)[0] if req.camera.strip() else None
        except ValueError as exc:
            resp.success, resp.message = False, f"bad query: {exc}"
            resp.result.success, resp.result.message = False, resp.message
            return resp
        policy = req.frame_policy or cfg.frame_policy
        if policy not in POLICIES:
            resp.success, resp.message = False, f"unknown frame_policy {clip(policy)!r}; use latest or next"
            return resp
        timeout = float(req.timeout_s) if req.timeout_s > 0 else cfg.service_timeout_s
        frame_timeout = float(req.timeout_s) if req.timeout_s > 0 else cfg.frame_timeout_s
        inline = req.image if (req.image.height or req.image.width or len(req.image.data)) else None
        with self._calls:
            busy = self._waiting >= self._max_waiting
            self._waiting += 0 if busy else 1
        if busy:
            resp.success, resp.message = False, f"busy: {self._max_waiting} segment calls already waiting"
            return resp
        try:
            job = Job(query, policy, inline_msg=inline, from_service=True, frame_timeout_s=frame_timeout)
            job.camera = camera if inline is None else None
            answered = self._worker.submit(job).done.wait(min(timeout, MAX_CALL_WAIT_S))
        finally:
            with self._calls:
                self._waiting -= 1
        if not answered:
            no_frame = self._worker.cancel(job)
            if not job.done.is_set():  # (else answered just now)
                resp.success = False
                resp.message = no_frame or f"timed out after {timeout:.1f} s waiting for the model"
                resp.result.query_id, resp.result.query = query.id, query.text
                return resp
        return self._answer(req, resp, job)

    def _answer(self, req: Segment.Request, resp: Segment.Response, job: Job) -> Segment.Response:
        batch, outcome = job.batch, job.outcome
        if batch is None:  # answered without a frame (refused, deactivated while waiting)
            resp.success, resp.message = False, outcome.error or "not answered"
            return resp
        results = self._outputs.results
        header = results.header(batch)
        resp.result = results.result(batch, outcome, header, results.depth_context(batch))
        resp.success, resp.message = resp.result.success, resp.result.message or "ok"
        if req.return_overlay and outcome.output is not None and batch.rgb is not None:
            encode(results.overlay(batch, outcome, resp.result), "rgb8", resp.overlay, header)
        return resp
