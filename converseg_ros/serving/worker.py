"""The inference worker: the lock, the public API the node's callbacks call (never waiting for the model),
and one inference thread per loaded model that serves every camera with one engine. Plain Python.

The worker exists from configure to cleanup, with the cameras' frame slots and the query book handed in; a
model load starts its thread (:meth:`start`) and an unload stops it (:meth:`stop`), answering every waiting
job. Which frame and queries come next is the :class:`~converseg_ros.serving.scheduler.Scheduler`'s call;
running them is the :class:`~converseg_ros.serving.frame_runner.FrameRunner`'s. Computed batches go to
``publish`` — through a :class:`~converseg_ros.serving.publish_queue.PublishQueue` when ``pipelined``, so
conversion and publication overlap the next frame's encoding. Every once-query from a topic that ends
without a frame (refused, expired, deactivated) goes to ``on_unanswered``: each gets exactly one answer.

A model is replaced while serving with :meth:`swap`, between two frames: the standing queries stay, tracked
ones are grounded again on the new model. ``swap(None)`` pauses (no frame is run, waiting jobs keep their
deadlines) until the next swap brings a model.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from converseg_ros.serving.book import QueryBook
from converseg_ros.serving.camera import CameraFeed
from converseg_ros.serving.frame_runner import FrameRunner
from converseg_ros.serving.frame_slot import Frame
from converseg_ros.serving.publish_queue import PublishQueue
from converseg_ros.serving.queries import Batch, Job, Outcome, Query, clip
from converseg_ros.serving.scheduler import IDLE_WAIT_S, Plan, Scheduler
from converseg_ros.serving.settings import CameraSettings, Clocks, WorkerSettings
from converseg_ros.serving.stats import Accounts, WorkerStats
from converseg_ros.serving.status import ServingStatus, snapshot

NOT_LOADED = "node inactive (model not loaded)"


class _Swap:
    """A model handed to the inference thread, and what became of it."""

    def __init__(self, engine: Any | None, label: str) -> None:
        self.engine, self.label = engine, label
        self.done = threading.Event()
        self.installed = False
        self.replaced: Any = None


class InferenceWorker:
    """Serves ``feeds`` (the cameras) with one engine at a time; see the module docstring."""

    def __init__(
        self,
        feeds: Sequence[CameraFeed],
        book: QueryBook,
        decode: Callable[[Any], np.ndarray],
        publish: Callable[[Batch], None],
        settings: WorkerSettings,
        clocks: Clocks | None = None,
        on_stale: Callable[[Frame, float, str], None] | None = None,
        on_unanswered: Callable[[Job], None] | None = None,
        pipelined: bool = True,
    ) -> None:
        self.feeds = list(feeds)
        if [f.name for f in self.feeds] != book.cameras:
            raise ValueError("the worker's cameras and the query book's must be the same, in the same order")
        self.book = book
        self._by_name = {f.name: f for f in self.feeds}
        self.accounts = Accounts(WorkerStats(), self.feeds)
        self._cond = threading.Condition()
        self.scheduler = Scheduler(self.feeds, book, settings, clocks or Clocks(), self.accounts, on_stale)
        self._decode, self._publish, self._pipelined = decode, publish, pipelined
        self._on_unanswered = on_unanswered
        self._runner: FrameRunner | None = None
        self._queue: PublishQueue | None = None
        self._thread: threading.Thread | None = None
        self._running: list[Job] = []  # jobs of the batch being computed
        self._stop = False
        self._label = ""  # the served model's name (Batch.model)
        self._swap: _Swap | None = None  # a model waiting to be installed between two frames
        for feed in self.feeds:
            feed.slot.listen(self.notify)

    # -- model lifetime ------------------------------------------------------------------------------
    def start(self, engine: Any, label: str = "") -> None:
        """Serve with ``engine`` (called ``label`` in batches) on a new inference thread; every tracked query
        is grounded again on it."""
        with self._cond:
            if self._thread is not None:
                raise RuntimeError("the worker already serves a model; stop it first")
            self.book.restart()
            for feed in self.feeds:
                feed.reset()
            self.accounts.stats = WorkerStats()  # counters of this model's life
            self._runner = FrameRunner(engine, self._decode, self.accounts, self.book, self._cond)
            self._label = label
            self._queue = PublishQueue(self._publish, self._on_publish_error) if self._pipelined else None
            self._stop = False
            self._thread = threading.Thread(target=self._loop, name="converseg-inference", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 30.0, publish_timeout: float = 10.0) -> bool:
        """Stop after the current batch: waiting jobs and those of the current batch are answered "node
        deactivated" at once, what was computed is still published. True once the thread ended, False if
        the model was still running after ``timeout`` seconds (the caller must not free it then)."""
        with self._cond:
            thread, self._thread = self._thread, None
            self._stop = True
            pending = self.scheduler.drain() + list(self._running)
            swap, self._swap = self._swap, None
            if swap is not None:
                swap.done.set()  # not installed: the caller still owns its engine
            self._cond.notify_all()
        for job in pending:
            self._answer(job, "node deactivated")
        ended = True
        if thread is not None:
            thread.join(timeout)
            ended = not thread.is_alive()
        if self._queue is not None:
            self._queue.close(publish_timeout)
            self._queue = None
        with self._cond:
            self._runner = None
            for feed in self.feeds:
                feed.slot.clear()
                if ended:  # (else the thread still reads them; the process is exiting)
                    feed.reset()
        return ended

    def swap(self, engine: Any | None, label: str = "", timeout: float | None = None) -> tuple[bool, Any]:
        """Serve ``engine`` (None: pause) from the next frame on: the running batch finishes on the old model,
        then the new one takes over; standing queries stay and tracked ones are grounded again on it (caches
        and trackers of the old model are dropped). Returns (installed, the engine it replaced) — not
        installed when the worker stopped, or ``timeout`` passed first (then the swap is withdrawn)."""
        swap = _Swap(engine, label)
        with self._cond:
            if self._thread is None or self._stop:
                return False, None
            if self._swap is not None:
                raise RuntimeError("a model swap is already waiting")
            self._swap = swap
            self._cond.notify_all()
        if not swap.done.wait(timeout):
            with self._cond:
                if self._swap is swap:
                    self._swap = None
                    return False, None
        return swap.installed, swap.replaced

    @property
    def model(self) -> str:
        """The name of the model being served ("" when paused or stopped)."""
        with self._cond:
            return self._label if self._runner is not None else ""

    @property
    def stats(self) -> WorkerStats:
        """The node's totals for the model being served (each camera keeps its own)."""
        return self.accounts.stats

    @property
    def running(self) -> bool:
        """Whether a model is being served."""
        return self._thread is not None

    def notify(self) -> None:
        """Wake the inference thread (a new frame arrived)."""
        with self._cond:
            self._cond.notify_all()

    # -- standing queries (the book) -----------------------------------------------------------------
    def set_continuous(self, query: Query | None, camera: str | None = None) -> list[str]:
        """Replace (or clear, with None) the continuous query of ``camera`` (None: every camera); it first
        runs on the newest fresh frame. The cameras it changed."""
        with self._cond:
            names = [f.name for f in self._targets(camera)]
            for name in names:
                self.book.of(name).continuous = query
            self._cond.notify_all()
        return names

    def start_track(self, query: Query, camera: str | None = None) -> dict[str, str]:
        """Start (or restart: same id) a tracked query on ``camera`` (None: every camera); grounded on the
        next fresh frame, then followed with SAM2's memory. The cameras that refused it, with the reason."""
        refused = {}
        with self._cond:
            for feed in self._targets(camera):
                tracks, limit = self.book.of(feed.name).tracks, feed.settings.max_tracks
                if query.id not in tracks.ids() and len(tracks.ids()) >= limit:
                    where = f"camera {feed.name}" if feed.name else "the camera"
                    refused[feed.name] = f"busy: {where} already tracks max_tracks={limit} queries"
                    continue
                tracks.start(query)
            self._cond.notify_all()
        return refused

    def stop_query(self, query_id: str, camera: str | None = None) -> list[str]:
        """Stop the continuous or tracked query ``query_id``; the cameras where it ran."""
        stopped = []
        with self._cond:
            for feed in self._targets(camera):
                queries = self.book.of(feed.name)
                found = queries.tracks.stop(query_id)
                if queries.continuous is not None and queries.continuous.id == query_id:
                    queries.continuous = None
                    found = True
                if found:
                    stopped.append(feed.name)
            self._cond.notify_all()
        return stopped

    def clear(self, camera: str | None = None) -> list[str]:
        """Forget the continuous and tracked queries of ``camera`` (None: every camera); their ids."""
        ids: set[str] = set()
        with self._cond:
            for feed in self._targets(camera):
                queries = self.book.of(feed.name)
                ids.update(queries.tracks.clear())
                if queries.continuous is not None:
                    ids.add(queries.continuous.id)
                queries.continuous = None
            self._cond.notify_all()
        return sorted(ids)

    def reground(self, query_id: str | None = None, camera: str | None = None) -> int:
        """Ground tracked query ``query_id`` (None: all) again on the next frame; how many tracks will be."""
        with self._cond:
            count = sum(self.book.of(f.name).tracks.reground(query_id) for f in self._targets(camera))
            self._cond.notify_all()
        return count

    def continuous(self, camera: str) -> Query | None:
        """The continuous query of ``camera``."""
        with self._cond:
            return self.book.continuous(camera)

    def tracked(self, camera: str) -> list[str]:
        """Ids of the tracked queries of ``camera`` (running or about to start)."""
        with self._cond:
            return self.book.tracked(camera)

    # -- settings --------------------------------------------------------------------------------------
    def set_enabled(self, enabled: bool) -> None:
        """Pause/resume topic queries (service calls are always answered)."""
        with self._cond:
            self.scheduler.enabled = enabled
            self._cond.notify_all()

    @property
    def enabled(self) -> bool:
        """Whether topic queries are processed."""
        return self.scheduler.enabled

    @property
    def settings(self) -> WorkerSettings:
        """The node-wide knobs in force."""
        return self.scheduler.settings

    def set_settings(self, settings: WorkerSettings) -> None:
        """Replace the node-wide knobs (from the next plan on)."""
        with self._cond:
            self.scheduler.settings = settings
            self._cond.notify_all()

    def set_camera_settings(self, camera: str, settings: CameraSettings) -> None:
        """Replace one camera's knobs (the others keep theirs)."""
        with self._cond:
            self._by_name[camera].settings = settings
            self._cond.notify_all()

    def feed(self, name: str) -> CameraFeed:
        """The camera ``name`` (KeyError if unknown)."""
        return self._by_name[name]

    # -- one-shot jobs ---------------------------------------------------------------------------------
    def submit(self, job: Job) -> Job:
        """Queue a one-shot job (returns it; wait on ``job.done``). Refused at once — node inactive, unknown
        camera, busy — with the reason in ``job.outcome.error``."""
        with self._cond:
            reason = NOT_LOADED if self._thread is None or self._stop else self.scheduler.add(job)
            if reason is None:
                self._cond.notify_all()
        if reason is not None:
            self._answer(job, reason)
        return job

    def cancel(self, job: Job) -> str | None:
        """Forget a job whose caller stopped waiting; why it got no camera frame if it was still waiting for
        one (None when it needed none or its frame was being computed)."""
        with self._cond:
            job.cancelled = True
            if not self.scheduler.remove(job) or job.inline_msg is not None:
                return None
            return self.scheduler.missing_frame(job, self.scheduler.clocks.monotonic() - job.submitted)

    @property
    def pending_jobs(self) -> int:
        """Jobs waiting for a frame or the model."""
        with self._cond:
            return self.scheduler.pending

    def status(self) -> ServingStatus:
        """A consistent snapshot of counters, queries and settings (for diagnostics)."""
        with self._cond:
            waiting = self._queue.pending if self._queue is not None else 0
            return snapshot(self.feeds, self.book, self.stats, self.scheduler, self.running, waiting)

    def report_error(self, camera: str | None, reason: str) -> None:
        """Count an error of ``camera`` (None: the node) and keep it as the last error."""
        with self._cond:
            self.accounts.error(self._by_name.get(camera) if camera is not None else None, reason)

    # -- the inference thread --------------------------------------------------------------------------
    def _loop(self) -> None:
        while True:
            with self._cond:
                while True:
                    if self._stop:
                        return
                    if self._swap is not None:
                        self._install(self._swap)
                    plan, wait_s = self.scheduler.plan() if self._runner is not None else (None, IDLE_WAIT_S)
                    expired = self.scheduler.take_expired()
                    if plan is not None or expired:
                        break
                    self._cond.wait(self.scheduler.until_next_deadline(wait_s))
                if plan is not None:
                    self._running = list(plan.jobs)
                runner, label, settings = self._runner, self._label, self.scheduler.settings
            for job, reason in expired:
                self._answer(job, reason)
            if plan is not None:
                self._run(runner, label, plan, settings)
                with self._cond:
                    self._running = []

    def _install(self, swap: _Swap) -> None:
        """Between two frames (lock held): the swap's engine replaces the runner's."""
        swap.replaced = self._runner.engine if self._runner is not None else None
        self._runner = None
        if swap.engine is not None:
            self._runner = FrameRunner(swap.engine, self._decode, self.accounts, self.book, self._cond)
        self._label = swap.label
        self.book.restart()
        for feed in self.feeds:
            feed.forget_model()
        self._swap, swap.installed = None, True
        swap.done.set()
        self._cond.notify_all()

    def _run(self, runner: FrameRunner, label: str, plan: Plan, settings: WorkerSettings) -> None:
        batch = runner.run(plan, settings)
        batch.model = label
        by_id = {id(o.query): o for o in batch.outcomes}
        late = {id(job.query) for job in plan.jobs if not job.finish(batch, by_id[id(job.query)])}
        if late:  # answered already ("node deactivated" while computed): one answer per query, never two
            batch.outcomes = [o for o in batch.outcomes if id(o.query) not in late]
        batch.jobs = [job for job in plan.jobs if id(job.query) not in late]
        if not batch.outcomes:  # (a pre-encoded frame: nothing to publish)
            return
        try:
            if self._queue is not None:
                self._queue.put(batch)
            else:
                self._publish(batch)
        except Exception as exc:  # noqa: BLE001 - a publishing bug must not kill the worker
            self._on_publish_error(batch, exc)

    def _answer(self, job: Job, reason: str) -> None:
        """Answer ``job`` without a frame; a topic query's answer goes to ``on_unanswered``."""
        if not job.finish(None, Outcome(job.query, error=reason)):
            return
        with self._cond:
            self.accounts.count(self._by_name.get(job.camera) if job.camera else None, "queries_refused")
        if not job.from_service and self._on_unanswered is not None:
            try:
                self._on_unanswered(job)
            except Exception as exc:  # noqa: BLE001 - a reporting bug must not kill the worker
                self.report_error(None, f"reporting an unanswered query failed: {type(exc).__name__}: {exc}")

    def _on_publish_error(self, batch: Batch, exc: BaseException) -> None:
        self.report_error(batch.camera if batch.camera in self._by_name else None,
                          f"publish failed: {type(exc).__name__}: {clip(str(exc), 500)}")

    def _targets(self, camera: str | None) -> list[CameraFeed]:
        return self.feeds if camera is None else [self._by_name[camera]]
