"""The scheduler: which frame, and which queries on it, the model works on next. Pure bookkeeping — no
threads, no model — over the cameras, the query book and the waiting one-shot jobs, on injected clocks (so
tests drive it with a fake clock). The worker calls it with its lock held.

Rules: an image sent with a service call goes first. Then cameras are served round robin (the camera after
the one served last goes first), so a 60 Hz camera cannot starve a 2 Hz one. On a camera's newest fresh frame
(stamp at most ``max_image_age_s`` old) run, together: the continuous query and the tracks' step (at most
each camera's ``max_rate_hz``), tracks waiting to start, and the once-queries and service calls that may use
that frame (``latest``: any fresh frame; ``next``: one received after the submission). A job waiting longer
than its ``frame_timeout_s`` for a frame is taken out with the reason. While idle, with ``pre_encode_hz``,
each camera's newest fresh frame is encoded ahead, and ``latest`` jobs are answered on it while it is fresh.
"""

from __future__ import annotations

import collections
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from converseg_ros.serving.book import QueryBook, TrackPlan
from converseg_ros.serving.camera import Cached, CameraFeed
from converseg_ros.serving.frame_slot import Frame
from converseg_ros.serving.queries import MAX_PENDING_JOBS, Job, Query, clip
from converseg_ros.serving.settings import Clocks, WorkerSettings
from converseg_ros.serving.stats import Accounts

IDLE_WAIT_S = 1.0  # longest sleep without an event (re-checks stale frames and deadlines)


@dataclass
class Plan:
    """The next piece of work: a frame of a camera (``feed`` None: an image sent with a service call)."""

    feed: CameraFeed | None
    frame: Frame
    queries: list[Query]  # language queries: the continuous query and the jobs'
    jobs: list[Job]
    tracks: TrackPlan | None = None
    pre_encode: bool = False  # only encode the frame, ahead of any query (pre_encode_hz)


class Scheduler:
    """Chooses work for the worker (see the module docstring). Not thread-safe: the worker's lock guards it."""

    def __init__(
        self,
        feeds: Sequence[CameraFeed],
        book: QueryBook,
        settings: WorkerSettings,
        clocks: Clocks,
        accounts: Accounts,
        on_stale: Callable[[Frame, float, str], None] | None = None,
    ) -> None:
        self.feeds = list(feeds)
        self.book = book
        self.settings = settings
        self.clocks = clocks
        self.enabled = True  # topic queries (continuous, tracked, once) are served; service calls always
        self._by_name = {f.name: f for f in self.feeds}
        self._accounts = accounts
        self._on_stale = on_stale
        self._jobs: collections.deque[Job] = collections.deque()
        self._next = 0  # round robin: the camera to look at first

    # -- jobs ---------------------------------------------------------------------------------------
    def add(self, job: Job) -> str | None:
        """Queue a one-shot job; the reason it is refused, or None."""
        if job.camera is not None and job.camera not in self._by_name:
            return f"unknown camera {clip(job.camera)!r}"
        if len(self._jobs) >= MAX_PENDING_JOBS:
            return f"busy: {MAX_PENDING_JOBS} queries pending"
        job.submitted = self.clocks.monotonic()
        job.marks = {f.name: (f.slot.seq, f.slot.rejected) for f in self._targets(job.camera)}
        self._jobs.append(job)
        return None

    def remove(self, job: Job) -> bool:
        """Take ``job`` out of the queue; False if it was not waiting."""
        if job not in self._jobs:
            return False
        self._jobs.remove(job)
        return True

    def drain(self) -> list[Job]:
        """Every waiting job, taken out."""
        jobs = list(self._jobs)
        self._jobs.clear()
        return jobs

    @property
    def pending(self) -> int:
        """Jobs waiting for a frame or the model."""
        return len(self._jobs)

    def take_expired(self) -> list[tuple[Job, str]]:
        """Camera-frame jobs that waited past their frame_timeout_s, taken out, with the reason."""
        now = self.clocks.monotonic()
        expired = [j for j in self._jobs if j.inline_msg is None and 0 < j.frame_timeout_s <= now - j.submitted]
        for job in expired:
            self._jobs.remove(job)
        return [(job, self.missing_frame(job, now - job.submitted)) for job in expired]

    def until_next_deadline(self, wait_s: float) -> float:
        """``wait_s`` shortened to the nearest frame deadline of a waiting job."""
        now = self.clocks.monotonic()
        for job in self._jobs:
            if job.inline_msg is None and job.frame_timeout_s > 0:
                wait_s = min(wait_s, max(0.0, job.submitted + job.frame_timeout_s - now) + 1e-3)
        return wait_s

    def missing_frame(self, job: Job, waited_s: float) -> str:
        """Why ``job`` got no frame in ``waited_s``: nothing arrived, only malformed or only stale frames."""
        if not job.from_service and not self.enabled:
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
            age_s = (self.clocks.stamp_ns() - max(f.stamp_ns for f in latest)) / 1e9
            reason += f" (the last one is {age_s:.1f} s old > max_image_age_s={self.settings.max_image_age_s})"
        return reason

    # -- planning -----------------------------------------------------------------------------------
    def plan(self) -> tuple[Plan | None, float]:
        """The next piece of work, or None and how long to wait for one."""
        for job in self._jobs:
            if job.inline_msg is not None:
                self._jobs.remove(job)
                now = self.clocks.stamp_ns()
                frame = Frame(job.inline_msg, 0, _stamp_ns(job.inline_msg) or now, now)
                return Plan(None, frame, [job.query], [job]), 0.0
        now = self.clocks.stamp_ns()
        wait_s = IDLE_WAIT_S
        for planner in (self._plan_feed, self._plan_pre_encode) if self.settings.pre_encode_hz > 0 else (
            self._plan_feed,
        ):
            for k in range(len(self.feeds)):  # round robin: the camera after the one served last goes first
                i = (self._next + k) % len(self.feeds)
                plan, feed_wait = planner(self.feeds[i], now)
                if plan is not None:
                    self._next = (i + 1) % len(self.feeds)
                    return plan, 0.0
                wait_s = min(wait_s, feed_wait)
        return None, wait_s

    def _fresh(self, frame: Frame, now_ns: int) -> bool:
        max_age = self.settings.max_image_age_s
        return max_age <= 0 or (now_ns - frame.stamp_ns) / 1e9 <= max_age

    def _plan_feed(self, feed: CameraFeed, now: int) -> tuple[Plan | None, float]:
        """Work due on ``feed``'s newest fresh frame (or, with pre-encoding, its encoded one)."""
        frame = feed.slot.latest()
        if frame is None:
            return None, IDLE_WAIT_S
        fresh = self._fresh(frame, now)
        if frame.seq > feed.seen_seq:
            feed.seen_seq = frame.seq
            feed.slot.mark_taken(frame.seq)  # judged now: a later frame replacing it is no drop
            if not fresh:
                self._accounts.count(feed, "frames_stale")
                if self._on_stale is not None:
                    self._on_stale(frame, (now - frame.stamp_ns) / 1e9, feed.name)
        if not fresh:
            return None, IDLE_WAIT_S
        wait_s = IDLE_WAIT_S
        queries, enabled = self.book.of(feed.name), self.enabled
        continuous = queries.continuous if enabled else None
        tracks = queries.tracks
        continuous_due = continuous is not None and (
            frame.seq > feed.continuous_seq or feed.continuous_ran != continuous
        )
        step_due = enabled and bool(tracks.active) and frame.seq > feed.track_seq
        if continuous_due or step_due:
            rate = feed.settings.max_rate_hz
            due_ns = feed.last_continuous_ns + (int(1e9 / rate) if rate > 0 else 0)
            if now < due_ns:
                wait_s = (due_ns - now) / 1e9
                continuous_due = step_due = False
        starts_due = enabled and bool(tracks.pending)
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
        if continuous_due:
            feed.continuous_seq, feed.continuous_ran = frame.seq, continuous
        if step_due or starts_due:  # (tracks started on this frame have seen it too)
            feed.track_seq = frame.seq
        if continuous_due or step_due:
            feed.last_continuous_ns = now
        track_plan = tracks.take(step_due) if step_due or starts_due or tracks.stops else None
        language = ([continuous] if continuous_due else []) + [j.query for j in jobs]
        return Plan(feed, frame, language, jobs, track_plan), 0.0

    def _wants(self, job: Job, feed: CameraFeed, frame: Frame) -> bool:
        """Whether ``job`` may be answered on ``frame`` of ``feed``."""
        if job.inline_msg is not None or (job.camera is not None and job.camera != feed.name):
            return False
        if not (job.from_service or self.enabled):
            return False
        return job.policy == "latest" or frame.seq > job.marks.get(feed.name, (0, 0))[0]

    def _encoded_ahead(self, feed: CameraFeed, now: int) -> Cached | None:
        """The camera's cached encoding that a ``latest`` query may use instead of a new frame: with
        pre-encoding on, complete (Qwen prefix) and fresh; else None."""
        cache = feed.cache
        if self.settings.pre_encode_hz <= 0 or cache is None or cache.encoding.prefix is None:
            return None
        return cache if self._fresh(cache.frame, now) else None

    def _plan_pre_encode(self, feed: CameraFeed, now: int) -> tuple[Plan | None, float]:
        """Encode ``feed``'s newest fresh frame ahead of any query, unless it is encoded or the camera's
        pre-encoding rate says wait."""
        frame = feed.slot.latest()
        if frame is None or not self._fresh(frame, now):
            return None, IDLE_WAIT_S
        cache = feed.cache
        if cache is not None and cache.frame.seq == frame.seq and cache.encoding.prefix is not None:
            return None, IDLE_WAIT_S
        if frame.seq == feed.pre_encode_seq:  # tried already (a frame the model could not encode)
            return None, IDLE_WAIT_S
        t = self.clocks.monotonic()
        due = feed.last_pre_encode + 1.0 / self.settings.pre_encode_hz
        if t < due:
            return None, due - t
        feed.last_pre_encode, feed.pre_encode_seq = t, frame.seq
        return Plan(feed, frame, [], [], pre_encode=True), 0.0

    def _targets(self, camera: str | None) -> list[CameraFeed]:
        return self.feeds if camera is None else [self._by_name[camera]]


def _stamp_ns(msg: object) -> int:
    stamp = msg.header.stamp  # type: ignore[attr-defined]
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)
