"""A camera's tracked queries on one frame (inference thread): the requests of a TrackPlan (stops, restarts,
re-groundings) reach the camera's QueryTracker, its running tracks step on the frame and new ones start on it;
each answer becomes an Outcome that says grounded or tracked, and each start's fate goes back to the query
book. Plain Python."""

from __future__ import annotations

import threading
from typing import Any

from converseg_ros.engine.tracking import QueryTracker, TrackingConfig, TrackResult
from converseg_ros.errors import ImageError, QueryError
from converseg_ros.serving.book import QueryBook, TrackPlan
from converseg_ros.serving.camera import CameraFeed
from converseg_ros.serving.queries import Outcome, Query
from converseg_ros.serving.settings import WorkerSettings
from converseg_ros.serving.stats import Accounts

# Per-query model time of a tracked answer (the frame's encoders are the batch's encode_ms).
TRACK_QUERY_TIMINGS = ("qwen_suffix_ms", "decode_ms", "memory_attention_ms", "memory_encode_ms")


class TrackRunner:
    """Runs TrackPlans with ``engine``; ``lock`` (the worker's) guards ``book``."""

    def __init__(self, engine: Any, accounts: Accounts, book: QueryBook, lock: threading.Condition) -> None:
        self.engine = engine
        self.accounts = accounts
        self._book = book
        self._lock = lock

    def apply_requests(self, feed: CameraFeed, plan: TrackPlan, config: TrackingConfig) -> None:
        """Stops and re-grounding requests reach the camera's tracker (before the frame, whatever it holds)."""
        if feed.tracker is None:
            feed.tracker = QueryTracker(self.engine, config)
        tracker = feed.tracker
        tracker.config = config
        for query_id in plan.stops | set(plan.starts):  # a start with a running id replaces that track
            if query_id in tracker.track_ids:
                tracker.stop(query_id)
                del feed.tracker_queries[query_id]
        for query_id in plan.regrounds:
            if query_id in tracker.track_ids:
                tracker.request_reground(query_id)

    def run(self, feed: CameraFeed, encoding: Any, plan: TrackPlan, settings: WorkerSettings) -> list[Outcome]:
        """Step the camera's running tracks on the frame, then start the new ones on it."""
        tracker, held = feed.tracker, feed.tracker_queries
        outcomes = []
        if plan.step and tracker.track_ids:
            try:
                for result in tracker.track_step(encoding):
                    outcomes.append(self._outcome(feed, held[result.track_id], result))
            except ImageError as exc:  # a bad frame: the tracks are left as they were
                reason = self.accounts.bad_image(feed, exc)
                outcomes += [Outcome(q, error=reason) for q in held.values()]
            except Exception as exc:  # noqa: BLE001
                reason = self.accounts.model_failure(exc, feed)
                outcomes += [Outcome(q, error=reason) for q in held.values()]
        for query_id, query in plan.starts.items():
            state = "running"
            try:
                result = tracker.track_start(
                    encoding, query.text, track_id=query_id, min_region_area=settings.min_region_area_px,
                    max_regions=settings.max_regions,
                )
                held[query_id] = query
                outcomes.append(self._outcome(feed, query, result))
            except QueryError as exc:
                state = "dropped"
                outcomes.append(Outcome(query, error=f"bad query: {exc}"))
            except Exception as exc:  # noqa: BLE001 - tried again on the next frame
                state = "retry"
                outcomes.append(Outcome(query, error=self.accounts.model_failure(exc, feed)))
            with self._lock:
                self._book.of(feed.name).tracks.finish_start(query_id, state)
        return outcomes

    def failed(self, feed: CameraFeed, plan: TrackPlan, reason: str) -> list[Outcome]:
        """The frame failed before the tracks ran: every track due on it gets ``reason``; starts wait."""
        outcomes = [Outcome(q, error=reason) for q in feed.tracker_queries.values()] if plan.step else []
        outcomes += [Outcome(q, error=reason) for q in plan.starts.values()]
        with self._lock:
            tracks = self._book.of(feed.name).tracks
            for query_id in plan.starts:
                tracks.finish_start(query_id, "retry")
        return outcomes

    def _outcome(self, feed: CameraFeed, query: Query, result: TrackResult) -> Outcome:
        self.accounts.count(feed, "grounded" if result.grounded else "tracked")
        own_ms = sum(result.output.timings.get(k, 0.0) for k in TRACK_QUERY_TIMINGS)
        return Outcome(
            query, output=result.output, grounded=result.grounded, grounding_age=result.grounding_age,
            reason=result.reason, inference_ms=own_ms,
        )
