"""The inference worker: one thread that serves every camera of the node with one engine. It takes a camera's
newest frame, encodes it once and answers every query due on it in one batch: the continuous query, once-
queries and service calls (one batched language-model pass), and the camera's tracked queries (SAM2 memory,
engine/tracking.py). Plain Python (no rclpy): the node hands it callables and reads its results.

Callbacks never wait for the model: they overwrite a camera's frame slot (:class:`LatestSlot`) or append a
job and notify. Frames are never queued: a frame that arrives while the model is busy replaces the previous
one of its camera. Cameras are served round robin (the camera after the one served last goes first), so a
60 Hz camera cannot starve a 2 Hz one. A job that waits for a camera frame longer than its
``frame_timeout_s`` is answered with the reason.

With ``pre_encode_hz`` > 0 the worker, when no camera has work due, encodes each camera's newest fresh frame
(SAM2 and the Qwen prefix, at most ``pre_encode_hz`` times a second per camera); a once-query or service
call with frame policy ``latest`` is then answered on that encoded frame while it is younger than
``max_image_age_s``, at the cost of a query on a cached frame. Computed batches go to ``publish`` (the node
hands it a :class:`~converseg_ros.ros.publish_queue.PublishQueue`, so conversion and publication overlap the
next frame's encoding).
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from converseg_ros.errors import ImageError, QueryError
from converseg_ros.ros.accounts import Accounts
from converseg_ros.ros.camera_feed import Cached, CameraFeed, TrackPlan
from converseg_ros.ros.frame_slot import Frame, LatestSlot
from converseg_ros.ros.image_codec import ImageCodecError
from converseg_ros.ros.jobs import (  # noqa: F401 - re-exported: the worker's vocabulary
    MAX_PENDING_JOBS,
    MODE_CONTINUOUS,
    MODE_ONCE,
    MODE_STOP,
    MODE_TRACK,
    Batch,
    Job,
    Outcome,
    Query,
    WorkerSettings,
    WorkerStats,
)
from converseg_ros.ros.track_runner import TrackRunner


@dataclass
class Plan:
    """The next piece of work: a frame of a camera (``feed`` None: an image sent with a service call)."""

    feed: CameraFeed | None
    frame: Frame
    queries: list[Query]  # language queries: the continuous query and the jobs'
    jobs: list[Job]
    tracks: TrackPlan | None = None
    pre_encode: bool = False  # only encode the frame, ahead of any query (pre_encode_hz)


class InferenceWorker:
    """Owns the inference thread; see the module docstring for the scheduling rules.

    ``feeds``: the cameras (a bare :class:`LatestSlot` stands for one unnamed camera reading ``source``).
    """

    def __init__(
        self,
        engine: Any,
        feeds: Sequence[CameraFeed] | LatestSlot,
        decode: Callable[[Any], np.ndarray],
        publish: Callable[[Batch], None],
        clock_ns: Callable[[], int],
        settings: WorkerSettings,
        on_stale: Callable[[Frame, float, str], None] | None = None,
        on_expired: Callable[[Job], None] | None = None,
        source: str = "the camera topic",
    ) -> None:
        self.engine = engine
        self.feeds = [CameraFeed("", feeds, source)] if isinstance(feeds, LatestSlot) else list(feeds)
        if not self.feeds or len({f.name for f in self.feeds}) != len(self.feeds):
            raise ValueError("the worker needs at least one camera, each with its own name")
        self._by_name = {f.name: f for f in self.feeds}
        self.settings = settings
        self.stats = WorkerStats()  # the node's totals (each feed keeps its own)
        self.accounts = Accounts(self.stats, self.feeds)
        self._decode = decode
        self._publish = publish
        self._clock_ns = clock_ns
        self._on_stale = on_stale
        self._on_expired = on_expired
        self._cond = threading.Condition()
        self._tracks = TrackRunner(engine, self.accounts, self._cond)
        self._jobs: collections.deque[Job] = collections.deque()
        self._enabled = True
        self._next = 0  # round robin: the camera to look at first
        self._running: list[Job] = []  # jobs of the batch being computed
        self._stop = False
        self._thread = threading.Thread(target=self._loop, name="converseg-inference", daemon=True)

    # -- single-camera shorthands ------------------------------------------------------------------
    @property
    def slot(self) -> LatestSlot:
        """The first camera's frame slot."""
        return self.feeds[0].slot

    @property
    def source(self) -> str:
        """The first camera's image topic."""
        return self.feeds[0].source

    @source.setter
    def source(self, topic: str) -> None:
        self.feeds[0].source = topic

    def feed(self, name: str) -> CameraFeed:
        """The camera ``name`` (KeyError if unknown)."""
        return self._by_name[name]

    def _targets(self, camera: str | None) -> list[CameraFeed]:
        return self.feeds if camera is None else [self._by_name[camera]]

    # -- called from ROS callbacks (never block on the model) -------------------------------------
    def start(self) -> None:
        """Start the inference thread."""
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> bool:
        """Stop after the current batch; pending jobs and those of the current batch are answered with an
        error at once (so waiting service calls return while the model finishes). True once the thread
        ended, False if the model was still running after ``timeout`` seconds."""
        with self._cond:
            self._stop = True
            pending = list(self._jobs) + list(self._running)
            self._jobs.clear()
            self._cond.notify_all()
        for job in pending:
            self._finish(job, None, Outcome(job.query, error="node deactivated"))
        if self._thread.is_alive():
            self._thread.join(timeout)
        return not self._thread.is_alive()

    def notify(self) -> None:
        """Wake the worker (a new frame arrived)."""
        with self._cond:
            self._cond.notify_all()

    def set_continuous(self, query: Query | None, camera: str | None = None) -> None:
        """Replace (or clear, with None) the continuous query of ``camera`` (None: every camera); it first runs
        on the newest fresh frame."""
        with self._cond:
            for feed in self._targets(camera):
                feed.continuous = query
                feed.continuous_seq = 0
            self._cond.notify_all()

    @property
    def continuous(self) -> Query | None:
        """The first camera's continuous query."""
        return self.feeds[0].continuous

    def start_track(self, query: Query, camera: str | None = None) -> None:
        """Start (or restart: same id) a tracked query on ``camera`` (None: every camera) on its next fresh
        frame: grounded there, then followed with SAM2's memory."""
        with self._cond:
            for feed in self._targets(camera):
                feed.tracks.start(query)
            self._cond.notify_all()

    def stop_query(self, query_id: str, camera: str | None = None) -> int:
        """Stop the continuous or tracked query ``query_id``; on how many cameras it ran."""
        stopped = 0
        with self._cond:
            for feed in self._targets(camera):
                if feed.continuous is not None and feed.continuous.id == query_id:
                    feed.continuous = None
                    stopped += 1
                stopped += feed.tracks.stop(query_id)
        return stopped

    def clear(self, camera: str | None = None) -> None:
        """Forget the continuous and tracked queries of ``camera`` (None: every camera)."""
        with self._cond:
            for feed in self._targets(camera):
                feed.continuous = None
                feed.tracks.clear()

    def reground(self, query_id: str | None = None, camera: str | None = None) -> int:
        """Ground tracked query ``query_id`` (None: all) again on the next frame; how many tracks will be."""
        with self._cond:
            count = sum(feed.tracks.reground(query_id) for feed in self._targets(camera))
            self._cond.notify_all()
        return count

    def tracked(self, camera: str) -> list[str]:
        """Ids of the tracked queries of ``camera`` (running or about to start)."""
        with self._cond:
            tracks = self._by_name[camera].tracks
            return sorted({*tracks.active, *tracks.pending, *tracks.starting})

    def set_enabled(self, enabled: bool) -> None:
        """Pause/resume processing of topic queries (service calls are always answered)."""
        with self._cond:
            self._enabled = enabled
            self._cond.notify_all()

    @property
    def enabled(self) -> bool:
        """Whether topic queries are processed."""
        return self._enabled

    def submit(self, job: Job) -> Job:
        """Queue a one-shot job (returns it; wait on ``job.done``). Refused when MAX_PENDING_JOBS wait."""
        with self._cond:
            if self._stop:  # (a call that raced with deactivation or shutdown)
                self._finish(job, None, Outcome(job.query, error="node deactivated"))
                return job
            if job.camera is not None and job.camera not in self._by_name:
                self._finish(job, None, Outcome(job.query, error=f"unknown camera {job.camera!r}"))
                return job
            if len(self._jobs) >= MAX_PENDING_JOBS:
                self._finish(job, None, Outcome(job.query, error=f"busy: {MAX_PENDING_JOBS} queries pending"))
                return job
            job.submitted = time.monotonic()
            job.marks = {f.name: (f.slot.seq, f.slot.rejected) for f in self._targets(job.camera)}
            self._jobs.append(job)
            self._cond.notify_all()
        return job

    def cancel(self, job: Job) -> str | None:
        """Forget a job whose caller stopped waiting; returns why it got no camera frame if it was still
        waiting for one (None when it needed none or its frame was being computed)."""
        with self._cond:
            job.cancelled = True
            if job not in self._jobs:
                return None
            self._jobs.remove(job)
            if job.inline_msg is not None:
                return None
            return self._missing_frame(job, time.monotonic() - job.submitted)

    @property
    def pending_jobs(self) -> int:
        """Jobs waiting for a frame or the model."""
        with self._cond:
            return len(self._jobs)

    # -- the inference thread ---------------------------------------------------------------------
    def _loop(self) -> None:
        while True:
            with self._cond:
                while True:
                    if self._stop:
                        return
                    plan, wait_s = self._plan()
                    expired = self._take_expired()
                    if plan is not None or expired:
                        break
                    self._cond.wait(self._until_next_deadline(wait_s))
                if plan is not None:
                    self._running = list(plan.jobs)
                    if plan.feed is not None and plan.frame.seq:  # taken now: a newer frame no longer drops it
                        plan.feed.slot.mark_taken(plan.frame.seq)
            for job, reason in expired:
                self._finish(job, None, Outcome(job.query, error=reason))
                if self._on_expired is not None:
                    try:
                        self._on_expired(job)
                    except Exception as exc:  # noqa: BLE001 - a reporting bug must not kill the worker
                        self.accounts.error(None, f"reporting an expired query failed: {type(exc).__name__}: {exc}")
            if plan is not None:
                self._run(plan)
                with self._cond:
                    self._running = []

    def _take_expired(self) -> list[tuple[Job, str]]:
        """Remove camera-frame jobs that waited past their frame_timeout_s (lock held): (job, reason)."""
        now = time.monotonic()
        expired = [
            j
            for j in self._jobs
            if j.inline_msg is None and j.frame_timeout_s > 0 and now - j.submitted >= j.frame_timeout_s
        ]
        for job in expired:
            self._jobs.remove(job)
        return [(job, self._missing_frame(job, now - job.submitted)) for job in expired]

    def _until_next_deadline(self, wait_s: float) -> float:
        """``wait_s`` shortened to the nearest frame deadline of a waiting job (lock held)."""
        now = time.monotonic()
        for job in self._jobs:
            if job.inline_msg is None and job.frame_timeout_s > 0:
                wait_s = min(wait_s, max(0.0, job.submitted + job.frame_timeout_s - now) + 1e-3)
        return wait_s

    def _missing_frame(self, job: Job, waited_s: float) -> str:
        """Why ``job`` got no frame in ``waited_s``: nothing arrived, only malformed or only stale frames."""
        if not job.from_service and not self._enabled:
            return f"not answered within {waited_s:.1f} s: topic queries are disabled (enable service)"
        feeds = self._targets(job.camera)
        sources = ", ".join(f.source for f in feeds)
        arrived = sum(f.slot.seq - job.marks.get(f.name, (0, 0))[0] for f in feeds)
        if arrived > 0:
            return (
                f"no fresh camera frame on {sources} for {waited_s:.1f} s: {arrived} received, older "
                f"than max_image_age_s={self.settings.max_image_age_s} (check the camera clock / use_sim_time)"
            )
        reason = f"no camera frame received on {sources} for {waited_s:.1f} s"
        rejecting = [f for f in feeds if f.slot.rejected > job.marks.get(f.name, (0, 0))[1]]
        latest = [frame for frame in (f.slot.latest() for f in feeds) if frame is not None]
        if rejecting:
            rejected = sum(f.slot.rejected - job.marks.get(f.name, (0, 0))[1] for f in rejecting)
            reason += f" ({rejected} malformed frames rejected, last: {rejecting[-1].slot.last_reject})"
        elif job.policy == "latest" and latest:
            age_s = (self._clock_ns() - max(f.stamp_ns for f in latest)) / 1e9
            reason += f" (the last one is {age_s:.1f} s old > max_image_age_s={self.settings.max_image_age_s})"
        return reason

    def _fresh(self, frame: Frame, now_ns: int) -> bool:
        max_age = self.settings.max_image_age_s
        return max_age <= 0 or (now_ns - frame.stamp_ns) / 1e9 <= max_age

    def _plan(self) -> tuple[Plan | None, float]:
        """Choose the next piece of work (called with the lock held): a Plan, or None and how long to wait."""
        if self._stop:
            return None, 0.0
        for job in list(self._jobs):
            if job.inline_msg is not None:
                self._jobs.remove(job)
                now = self._clock_ns()
                frame = Frame(job.inline_msg, 0, _stamp_ns(job.inline_msg) or now, now)
                return Plan(None, frame, [job.query], [job]), 0.0
        now = self._clock_ns()
        wait_s = 1.0
        count = len(self.feeds)
        for k in range(count):  # round robin: the camera after the one served last goes first
            i = (self._next + k) % count
            plan, feed_wait = self._plan_feed(self.feeds[i], now)
            if plan is not None:
                self._next = (i + 1) % count
                return plan, 0.0
            wait_s = min(wait_s, feed_wait)
        if self.settings.pre_encode_hz > 0:  # idle: keep the newest frames encoded, round robin too
            for k in range(count):
                i = (self._next + k) % count
                plan, feed_wait = self._plan_pre_encode(self.feeds[i], now)
                if plan is not None:
                    self._next = (i + 1) % count
                    return plan, 0.0
                wait_s = min(wait_s, feed_wait)
        return None, wait_s

    def _plan_pre_encode(self, feed: CameraFeed, now: int) -> tuple[Plan | None, float]:
        """Encode ``feed``'s newest fresh frame ahead of any query, unless it is encoded or the camera's
        pre-encoding rate says wait (lock held)."""
        frame = feed.slot.latest()
        if frame is None or not self._fresh(frame, now):
            return None, 1.0
        cache = feed.cache
        if cache is not None and cache.frame.seq == frame.seq and cache.encoding.prefix is not None:
            return None, 1.0
        if frame.seq == feed.pre_encode_seq:  # tried already (a frame the model could not encode)
            return None, 1.0
        t = time.monotonic()
        due = feed.last_pre_encode + 1.0 / self.settings.pre_encode_hz
        if t < due:
            return None, due - t
        feed.last_pre_encode, feed.pre_encode_seq = t, frame.seq
        return Plan(feed, frame, [], [], pre_encode=True), 0.0

    def _encoded_ahead(self, feed: CameraFeed, now: int) -> Any:
        """The camera's cached encoding that a ``latest`` query may use instead of a new frame: with
        pre-encoding on, complete (Qwen prefix) and fresh; else None (lock held)."""
        cache = feed.cache
        if self.settings.pre_encode_hz <= 0 or cache is None or cache.encoding.prefix is None:
            return None
        return cache if self._fresh(cache.frame, now) else None

    def _plan_feed(self, feed: CameraFeed, now: int) -> tuple[Plan | None, float]:
        """Work due on ``feed``'s newest fresh frame (or, with pre-encoding, its encoded one), lock held."""
        frame = feed.slot.latest()
        if frame is None:
            return None, 1.0
        fresh = self._fresh(frame, now)
        if frame.seq > feed.seen_seq:
            feed.seen_seq = frame.seq
            if not fresh:
                self.accounts.count(feed, "frames_stale")
                feed.slot.mark_taken(frame.seq)
                if self._on_stale is not None:
                    self._on_stale(frame, (now - frame.stamp_ns) / 1e9, feed.name)
        if not fresh:
            return None, 1.0
        wait_s = 1.0
        enabled = self._enabled
        continuous_due = enabled and feed.continuous is not None and frame.seq > feed.continuous_seq
        step_due = enabled and bool(feed.tracks.active) and frame.seq > feed.track_seq
        if continuous_due or step_due:
            period_ns = int(1e9 / self.settings.max_rate_hz) if self.settings.max_rate_hz > 0 else 0
            due_ns = feed.last_continuous_ns + period_ns
            if now < due_ns:
                wait_s = (due_ns - now) / 1e9
                continuous_due = step_due = False
        starts_due = enabled and bool(feed.tracks.pending)
        jobs = [j for j in self._jobs if self._wants(j, feed, frame)]
        if not (continuous_due or step_due or starts_due or jobs):
            return None, wait_s
        ahead = self._encoded_ahead(feed, now) if not (continuous_due or step_due or starts_due) else None
        if ahead is not None and any(j.policy == "latest" for j in jobs):  # answered on the encoded frame
            ready = [j for j in jobs if j.policy == "latest"]
            for job in ready:
                self._jobs.remove(job)
            return Plan(feed, ahead.frame, [j.query for j in ready], ready), 0.0
        for job in jobs:
            self._jobs.remove(job)
        queries = [feed.continuous] if continuous_due else []
        if continuous_due:
            feed.continuous_seq = frame.seq
        if step_due or starts_due:  # (tracks started on this frame have seen it too)
            feed.track_seq = frame.seq
        if continuous_due or step_due:
            feed.last_continuous_ns = now
        tracks = feed.tracks.take(step_due) if step_due or starts_due or feed.tracks.stops else None
        return Plan(feed, frame, queries + [j.query for j in jobs], jobs, tracks), 0.0

    def _wants(self, job: Job, feed: CameraFeed, frame: Frame) -> bool:
        """Whether ``job`` may be answered on ``frame`` of ``feed`` (lock held)."""
        if job.inline_msg is not None or (job.camera is not None and job.camera != feed.name):
            return False
        if not (job.from_service or self._enabled):
            return False
        return job.policy == "latest" or frame.seq > job.marks.get(feed.name, (0, 0))[0]

    def _run(self, plan: Plan) -> None:
        batch = self._infer(plan)
        batch.jobs = plan.jobs
        by_id = {id(o.query): o for o in batch.outcomes}
        for job in plan.jobs:
            self._finish(job, batch, by_id[id(job.query)])
        if not batch.outcomes:  # (a pre-encoded frame: nothing to publish)
            return
        try:
            self._publish(batch)
        except Exception as exc:  # noqa: BLE001 - a publishing bug must not kill the worker
            self.report_error(plan.feed, f"publish failed: {type(exc).__name__}: {exc}")

    def _finish(self, job: Job, batch: Batch | None, outcome: Outcome) -> None:
        if job.done.is_set():  # already answered (stopped while its batch ran)
            return
        job.batch, job.outcome = batch, outcome
        job.done.set()

    def _infer(self, plan: Plan) -> Batch:
        """Decode, encode once (or reuse the cached encoding of this frame), answer the language queries in
        one batch, step and start the camera's tracks."""
        feed, frame = plan.feed, plan.frame
        camera = feed.name if feed is not None else ""
        if plan.tracks is not None:
            self._tracks.apply_requests(feed, plan.tracks, self.settings.tracking)

        def failed(reason: str, rgb: np.ndarray | None = None) -> Batch:  # (counted by the caller)
            outcomes = [Outcome(q, error=reason) for q in plan.queries]
            if plan.tracks is not None:
                outcomes += self._tracks.failed(feed, plan.tracks, reason)
            return Batch(frame, rgb, outcomes, camera=camera)

        cached = feed.cache if feed is not None and frame.seq and feed.cache is not None else None
        cached = cached if cached is not None and cached.frame.seq == frame.seq else None
        starts = plan.tracks.starts if plan.tracks is not None else {}
        language = bool(plan.queries or starts or plan.pre_encode)  # needs the Qwen image prefix
        encode_ms = 0.0
        if cached is not None:
            encoding, rgb = cached.encoding, cached.rgb
            if cached.pre_encoded and plan.queries:
                self.accounts.count(feed, "answers_pre_encoded", len(plan.queries))
        else:
            try:
                rgb = self._decode(frame.msg)
            except (ImageCodecError, ImageError) as exc:
                return failed(self.accounts.bad_image(feed, exc))
            t0 = time.perf_counter()
            try:
                encoding = self.engine.encode_frame(rgb) if language else self.engine.encode_sam_frame(rgb)
            except ImageError as exc:
                return failed(self.accounts.bad_image(feed, exc), rgb)
            except Exception as exc:  # noqa: BLE001 - model failures are reported, the node keeps serving
                return failed(self.accounts.model_failure(exc, feed), rgb)
            encode_ms = (time.perf_counter() - t0) * 1e3
            if feed is not None and frame.seq:
                feed.cache = Cached(frame, encoding, rgb, pre_encoded=plan.pre_encode)
            self.accounts.count(feed, "frames_encoded")
            if plan.pre_encode:
                self.accounts.count(feed, "frames_pre_encoded")
        if language and encoding.prefix is None:
            t0 = time.perf_counter()
            try:
                self.engine.add_prefix(encoding)
            except Exception as exc:  # noqa: BLE001
                return failed(self.accounts.model_failure(exc, feed), rgb)
            encode_ms += (time.perf_counter() - t0) * 1e3
        if plan.pre_encode:
            for stats in self.accounts.stats_of(feed):
                stats.last_encode_ms = encode_ms
            return Batch(frame, rgb, [], encode_ms, camera=camera)
        self.accounts.count(feed, "batches")
        t0 = time.perf_counter()
        outcomes = self._segment(feed, encoding, plan.queries) if plan.queries else []
        segment_ms = (time.perf_counter() - t0) * 1e3
        if plan.tracks is not None:
            had_prefix = encoding.prefix is not None
            outcomes += self._tracks.run(feed, encoding, plan.tracks, self.settings)
            if not had_prefix and encoding.prefix is not None:  # a re-grounding added it
                encode_ms += encoding.timings.get("qwen_prefix_ms", 0.0)
        for stats in self.accounts.stats_of(feed):
            stats.last_encode_ms, stats.last_segment_ms = encode_ms, segment_ms
        self.accounts.count(feed, "queries_answered", sum(o.error is None for o in outcomes))
        return Batch(frame, rgb, outcomes, encode_ms, segment_ms, camera=camera)

    def _segment(self, feed: CameraFeed | None, encoding: Any, queries: list[Query]) -> list[Outcome]:
        kwargs = {
            "min_region_area": self.settings.min_region_area_px,
            "max_regions": self.settings.max_regions,
        }
        try:
            outs = self.engine.segment(encoding, [q.text for q in queries], **kwargs)
            return [Outcome(q, output=o) for q, o in zip(queries, outs, strict=True)]
        except QueryError:  # one bad query must not sink the others: retry one by one
            return [self._segment_one(feed, encoding, q, kwargs) for q in queries]
        except Exception as exc:  # noqa: BLE001
            reason = self.accounts.model_failure(exc, feed)
            return [Outcome(q, error=reason) for q in queries]

    def _segment_one(self, feed: CameraFeed | None, encoding: Any, query: Query, kwargs: dict[str, int]) -> Outcome:
        try:
            return Outcome(query, output=self.engine.segment(encoding, [query.text], **kwargs)[0])
        except QueryError as exc:
            return Outcome(query, error=f"bad query: {exc}")
        except Exception as exc:  # noqa: BLE001
            return Outcome(query, error=self.accounts.model_failure(exc, feed))

    def report_error(self, feed: CameraFeed | str | None, reason: str) -> None:
        """Count an error of ``feed`` (or the camera of that name) and keep it as the last error."""
        self.accounts.error(self._by_name.get(feed) if isinstance(feed, str) else feed, reason)


def _stamp_ns(msg: Any) -> int:
    stamp = msg.header.stamp
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)
