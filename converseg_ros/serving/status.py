"""A consistent snapshot of the serving core for diagnostics and tools: totals, pending work and, per camera,
its counters, standing queries and settings. Plain Python."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from converseg_ros.serving.book import QueryBook
from converseg_ros.serving.camera import CameraFeed
from converseg_ros.serving.frame_slot import SlotCounts
from converseg_ros.serving.queries import Query
from converseg_ros.serving.settings import CameraSettings
from converseg_ros.serving.stats import WorkerStats


@dataclass(frozen=True)
class CameraStatus:
    """One camera at one moment."""

    name: str
    source: str
    slot: SlotCounts
    stats: WorkerStats
    continuous: Query | None
    tracked: list[str]
    settings: CameraSettings


@dataclass(frozen=True)
class ServingStatus:
    """The serving core at one moment."""

    running: bool  # a model is loaded and served
    enabled: bool  # topic queries are processed
    totals: WorkerStats
    pending_jobs: int
    waiting_publication: int
    cameras: list[CameraStatus]

    def camera(self, name: str) -> CameraStatus:
        """The status of camera ``name`` (KeyError if unknown)."""
        for camera in self.cameras:
            if camera.name == name:
                return camera
        raise KeyError(name)


def snapshot(
    feeds: Sequence[CameraFeed], book: QueryBook, totals: WorkerStats, scheduler: Any, running: bool,
    waiting_publication: int,
) -> ServingStatus:
    """Copy everything a status shows (the caller holds the worker's lock)."""
    cameras = [
        CameraStatus(
            feed.name, feed.source, feed.slot.counts(), copy.copy(feed.stats), book.continuous(feed.name),
            book.tracked(feed.name), copy.deepcopy(feed.settings),
        )
        for feed in feeds
    ]
    return ServingStatus(
        running, scheduler.enabled, copy.copy(totals), scheduler.pending, waiting_publication, cameras
    )
