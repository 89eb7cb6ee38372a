"""Runs one Plan on the model (inference thread): decode the frame, encode it once (or reuse the camera's
cached encoding of it), answer its language queries in one batch, step and start the camera's tracks. Every
failure becomes the answer of the queries it hit; the node keeps serving. Plain Python."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from converseg_ros.errors import ImageError, QueryError
from converseg_ros.serving.book import QueryBook
from converseg_ros.serving.camera import Cached, CameraFeed
from converseg_ros.serving.queries import Batch, Outcome, Query
from converseg_ros.serving.scheduler import Plan
from converseg_ros.serving.settings import WorkerSettings
from converseg_ros.serving.stats import Accounts
from converseg_ros.serving.track_runner import TrackRunner


class FrameRunner:
    """Computes Plans with ``engine``; ``decode(msg)`` turns a frame's message into HxWx3 uint8 RGB."""

    def __init__(
        self,
        engine: Any,
        decode: Callable[[Any], np.ndarray],
        accounts: Accounts,
        book: QueryBook,
        lock: threading.Condition,
    ) -> None:
        self.engine = engine
        self._decode = decode
        self.accounts = accounts
        self._tracks = TrackRunner(engine, accounts, book, lock)

    def run(self, plan: Plan, settings: WorkerSettings) -> Batch:
        """Everything computed on the plan's frame."""
        feed, frame = plan.feed, plan.frame
        camera = feed.name if feed is not None else ""
        if plan.tracks is not None:
            self._tracks.apply_requests(feed, plan.tracks, feed.settings.tracking)

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
            except ImageError as exc:
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
        outcomes = self._segment(feed, encoding, plan.queries, settings) if plan.queries else []
        segment_ms = (time.perf_counter() - t0) * 1e3
        if plan.tracks is not None:
            had_prefix = encoding.prefix is not None
            outcomes += self._tracks.run(feed, encoding, plan.tracks, settings)
            if not had_prefix and encoding.prefix is not None:  # a re-grounding added it
                encode_ms += encoding.timings.get("qwen_prefix_ms", 0.0)
        for stats in self.accounts.stats_of(feed):
            stats.last_encode_ms, stats.last_segment_ms = encode_ms, segment_ms
        self.accounts.count(feed, "queries_answered", sum(o.error is None for o in outcomes))
        return Batch(frame, rgb, outcomes, encode_ms, segment_ms, camera=camera)

    def _segment(
        self, feed: CameraFeed | None, encoding: Any, queries: list[Query], settings: WorkerSettings
    ) -> list[Outcome]:
        kwargs = {"min_region_area": settings.min_region_area_px, "max_regions": settings.max_regions}
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
