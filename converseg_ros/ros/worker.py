"""The inference worker: one thread that takes the newest frame, encodes it once and segments every query
due on it in one batch. Plain Python (no rclpy): the node hands it callables and reads its results.

Callbacks never wait for the model: they overwrite the frame slot (:class:`LatestSlot`) or append a job and
notify. Frames are never queued: a frame that arrives while the model is busy replaces the previous one.
A job that waits for a camera frame longer than its ``frame_timeout_s`` is answered with the reason.
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from converseg_ros.errors import ConverSegError, ImageError, QueryError
from converseg_ros.ros.frame_slot import Frame, LatestSlot
from converseg_ros.ros.image_codec import ImageCodecError

MODE_CONTINUOUS = 0
MODE_ONCE = 1
MAX_PENDING_JOBS = 64  # once-queries and service calls waiting for a frame; more are refused


@dataclass(frozen=True)
class Query:
    """A validated query: id and text as echoed in results, issue time, mode."""

    id: str
    text: str
    stamp_ns: int
    mode: int = MODE_CONTINUOUS


@dataclass
class Job:
    """A one-shot request: a once-query from a topic or a segment service call (maybe with its own image)."""

    query: Query
    policy: str = "latest"  # latest: newest fresh frame; next: a frame received after `after_seq`
    after_seq: int = 0
    inline_msg: Any = None  # an image inside the service request (used instead of a camera frame)
    from_service: bool = False
    frame_timeout_s: float = 0.0  # answer with "no camera frame ..." after waiting this long; 0 = no limit
    submitted: float = 0.0  # time.monotonic() at submission
    submit_seq: int = 0  # slot.seq / slot.rejected at submission (what arrived while it waited)
    submit_rejected: int = 0
    done: threading.Event = field(default_factory=threading.Event)
    cancelled: bool = False
    batch: Batch | None = None
    outcome: Outcome | None = None


@dataclass
class Outcome:
    """One query's answer on one frame: the engine's output, or the reason there is none."""

    query: Query
    output: Any = None  # SegmentationOutput
    error: str | None = None


@dataclass
class Batch:
    """Everything computed on one frame (shared by all its queries)."""

    frame: Frame
    rgb: np.ndarray | None
    outcomes: list[Outcome]
    encode_ms: float = 0.0
    segment_ms: float = 0.0
    jobs: list[Job] = field(default_factory=list)


@dataclass
class WorkerSettings:
    """Knobs the node may change at run time."""

    max_image_age_s: float = 1.0
    max_rate_hz: float = 0.0
    min_region_area_px: int = 64
    max_regions: int = 10


@dataclass
class WorkerStats:
    """Counters for diagnostics and the soak benchmark."""

    frames_encoded: int = 0  # frames decoded and encoded by the model (once each)
    batches: int = 0  # inference rounds (a frame's encoding may serve several rounds)
    frames_stale: int = 0
    frames_bad: int = 0
    queries_answered: int = 0
    errors: int = 0
    last_error: str = ""
    last_encode_ms: float = 0.0
    last_segment_ms: float = 0.0


def is_out_of_memory(exc: BaseException) -> bool:
    """True for CUDA (or CPU allocator) out-of-memory errors."""
    return "out of memory" in str(exc).lower() or type(exc).__name__ == "OutOfMemoryError"


def free_accelerator_cache() -> None:
    """Release cached GPU memory after an OOM (no-op without CUDA)."""
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except Exception:  # noqa: BLE001 - best effort only
        pass


class InferenceWorker:
    """Owns the inference thread; see the module docstring for the scheduling rules."""

    def __init__(
        self,
        engine: Any,
        slot: LatestSlot,
        decode: Callable[[Any], np.ndarray],
        publish: Callable[[Batch], None],
        clock_ns: Callable[[], int],
        settings: WorkerSettings,
        on_stale: Callable[[Frame, float], None] | None = None,
        on_expired: Callable[[Job], None] | None = None,
        source: str = "the camera topic",
    ) -> None:
        self.engine = engine
        self.slot = slot
        self.settings = settings
        self.stats = WorkerStats()
        self._decode = decode
        self._publish = publish
        self._clock_ns = clock_ns
        self._on_stale = on_stale
        self._on_expired = on_expired
        self.source = source  # the camera topic, named in "no camera frame received on ..." answers
        self._cond = threading.Condition()
        self._jobs: collections.deque[Job] = collections.deque()
        self._continuous: Query | None = None
        self._enabled = True
        self._seen_seq = 0  # newest frame already judged (fresh or stale)
        self._continuous_seq = 0  # newest frame the continuous query ran on
        self._last_continuous_ns = 0
        self._cache: tuple[int, Any, np.ndarray] | None = None  # (frame seq, encoding, rgb)
        self._running: list[Job] = []  # jobs of the batch being computed
        self._stop = False
        self._thread = threading.Thread(target=self._loop, name="converseg-inference", daemon=True)

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

    def set_continuous(self, query: Query | None) -> None:
        """Replace (or clear, with None) the continuous query; it first runs on the newest fresh frame."""
        with self._cond:
            self._continuous = query
            self._continuous_seq = 0
            self._cond.notify_all()

    @property
    def continuous(self) -> Query | None:
        """The active continuous query."""
        return self._continuous

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
            if len(self._jobs) >= MAX_PENDING_JOBS:
                self._finish(job, None, Outcome(job.query, error=f"busy: {MAX_PENDING_JOBS} queries pending"))
                return job
            job.submitted = time.monotonic()
            job.submit_seq, job.submit_rejected = self.slot.seq, self.slot.rejected
            if job.inline_msg is None and job.policy == "next":
                job.after_seq = job.submit_seq
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
                    self._running = list(plan[2])
            for job, reason in expired:
                self._finish(job, None, Outcome(job.query, error=reason))
                if self._on_expired is not None:
                    try:
                        self._on_expired(job)
                    except Exception as exc:  # noqa: BLE001 - a reporting bug must not kill the worker
                        self.stats.errors += 1
                        self.stats.last_error = f"reporting an expired query failed: {type(exc).__name__}: {exc}"
            if plan is not None:
                self._run(*plan)
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
        arrived = self.slot.seq - job.submit_seq
        if arrived > 0:
            return (
                f"no fresh camera frame on {self.source} for {waited_s:.1f} s: {arrived} received, older "
                f"than max_image_age_s={self.settings.max_image_age_s} (check the camera clock / use_sim_time)"
            )
        reason = f"no camera frame received on {self.source} for {waited_s:.1f} s"
        rejected = self.slot.rejected - job.submit_rejected
        latest = self.slot.latest()
        if rejected:
            reason += f" ({rejected} malformed frames rejected, last: {self.slot.last_reject})"
        elif job.policy == "latest" and latest is not None:
            age_s = (self._clock_ns() - latest.stamp_ns) / 1e9
            reason += f" (the last one is {age_s:.1f} s old > max_image_age_s={self.settings.max_image_age_s})"
        return reason

    def _plan(self) -> tuple[tuple[Frame, list[Query], list[Job]] | None, float]:
        """Choose the next batch (called with the lock held): (frame, queries, jobs) or None + wait time."""
        if self._stop:
            return None, 0.0
        for job in list(self._jobs):
            if job.inline_msg is not None:
                self._jobs.remove(job)
                now = self._clock_ns()
                frame = Frame(job.inline_msg, 0, _stamp_ns(job.inline_msg) or now, now)
                return (frame, [job.query], [job]), 0.0
        frame = self.slot.latest()
        if frame is None:
            return None, 1.0
        now = self._clock_ns()
        max_age = self.settings.max_image_age_s
        age_s = (now - frame.stamp_ns) / 1e9
        fresh = max_age <= 0 or age_s <= max_age
        if frame.seq > self._seen_seq:
            self._seen_seq = frame.seq
            if not fresh:
                self.stats.frames_stale += 1
                self.slot.mark_taken(frame.seq)
                if self._on_stale is not None:
                    self._on_stale(frame, age_s)
        if not fresh:
            return None, 1.0
        jobs = [
            j
            for j in self._jobs
            if (j.from_service or self._enabled) and (j.policy == "latest" or frame.seq > j.after_seq)
        ]
        queries = [j.query for j in jobs]
        wait_s = 1.0
        cont = self._continuous
        if cont is not None and self._enabled and frame.seq > self._continuous_seq:
            period_ns = int(1e9 / self.settings.max_rate_hz) if self.settings.max_rate_hz > 0 else 0
            due_ns = self._last_continuous_ns + period_ns
            if now >= due_ns:
                queries.insert(0, cont)
                self._continuous_seq = frame.seq
                self._last_continuous_ns = now
            else:
                wait_s = (due_ns - now) / 1e9
        if not queries:
            return None, wait_s
        for job in jobs:
            self._jobs.remove(job)
        return (frame, queries, jobs), 0.0

    def _run(self, frame: Frame, queries: list[Query], jobs: list[Job]) -> None:
        batch = self._infer(frame, queries)
        batch.jobs = jobs
        if frame.seq:
            self.slot.mark_taken(frame.seq)
        by_id = {id(o.query): o for o in batch.outcomes}
        for job in jobs:
            self._finish(job, batch, by_id[id(job.query)])
        try:
            self._publish(batch)
        except Exception as exc:  # noqa: BLE001 - a publishing bug must not kill the worker
            self.stats.errors += 1
            self.stats.last_error = f"publish failed: {type(exc).__name__}: {exc}"

    def _finish(self, job: Job, batch: Batch | None, outcome: Outcome) -> None:
        if job.done.is_set():  # already answered (stopped while its batch ran)
            return
        job.batch, job.outcome = batch, outcome
        job.done.set()

    def _infer(self, frame: Frame, queries: list[Query]) -> Batch:
        """Decode, encode once (or reuse the cached encoding of this frame), segment all queries."""

        def failed(reason: str, rgb: np.ndarray | None = None) -> Batch:
            self.stats.errors += 1
            self.stats.last_error = reason
            return Batch(frame, rgb, [Outcome(q, error=reason) for q in queries])

        cached = self._cache if frame.seq and self._cache and self._cache[0] == frame.seq else None
        encode_ms = 0.0
        if cached is not None:
            _, encoding, rgb = cached
        else:
            try:
                rgb = self._decode(frame.msg)
            except (ImageCodecError, ImageError) as exc:
                self.stats.frames_bad += 1
                return failed(f"bad image: {exc}")
            t0 = time.perf_counter()
            try:
                encoding = self.engine.encode_frame(rgb)
            except ImageError as exc:
                self.stats.frames_bad += 1
                return failed(f"bad image: {exc}", rgb)
            except Exception as exc:  # noqa: BLE001 - model failures are reported, the node keeps serving
                return failed(self._model_failure(exc), rgb)
            encode_ms = (time.perf_counter() - t0) * 1e3
            self._cache = (frame.seq, encoding, rgb) if frame.seq else None
            self.stats.frames_encoded += 1
        self.stats.batches += 1
        self.stats.last_encode_ms = encode_ms
        t0 = time.perf_counter()
        outcomes = self._segment(encoding, queries)
        segment_ms = (time.perf_counter() - t0) * 1e3
        self.stats.last_segment_ms = segment_ms
        self.stats.queries_answered += sum(o.error is None for o in outcomes)
        return Batch(frame, rgb, outcomes, encode_ms, segment_ms)

    def _segment(self, encoding: Any, queries: list[Query]) -> list[Outcome]:
        kwargs = {
            "min_region_area": self.settings.min_region_area_px,
            "max_regions": self.settings.max_regions,
        }
        try:
            outs = self.engine.segment(encoding, [q.text for q in queries], **kwargs)
            return [Outcome(q, output=o) for q, o in zip(queries, outs, strict=True)]
        except QueryError:  # one bad query must not sink the others: retry one by one
            return [self._segment_one(encoding, q, kwargs) for q in queries]
        except Exception as exc:  # noqa: BLE001
            reason = self._model_failure(exc)
            return [Outcome(q, error=reason) for q in queries]

    def _segment_one(self, encoding: Any, query: Query, kwargs: dict[str, int]) -> Outcome:
        try:
            return Outcome(query, output=self.engine.segment(encoding, [query.text], **kwargs)[0])
        except QueryError as exc:
            return Outcome(query, error=f"bad query: {exc}")
        except Exception as exc:  # noqa: BLE001
            return Outcome(query, error=self._model_failure(exc))

    def _model_failure(self, exc: BaseException) -> str:
        self.stats.errors += 1
        if is_out_of_memory(exc):
            free_accelerator_cache()
            self._cache = None
            reason = f"model out of memory ({type(exc).__name__}); cache freed, will retry on the next frame"
        elif isinstance(exc, ConverSegError):
            reason = f"model error: {exc}"
        else:
            reason = f"model failure: {type(exc).__name__}: {exc}"
        self.stats.last_error = reason
        return reason


def _stamp_ns(msg: Any) -> int:
    stamp = msg.header.stamp
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)
