"""One camera as the inference worker sees it: its latest-frame slot, its continuous and tracked queries, the
encoding of its last processed frame and its counters. Plain Python (no rclpy); every field is guarded by the
worker's lock except ``tracker`` and ``tracker_queries``, which only the inference thread touches."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from converseg_ros.engine.tracking import QueryTracker
from converseg_ros.serving.frame_slot import Frame, LatestSlot
from converseg_ros.serving.queries import Query, WorkerStats


@dataclass
class Cached:
    """A frame's encoding kept for later queries on the same frame."""

    frame: Frame
    encoding: Any  # FrameEncoding (its Qwen prefix may be missing: tracked frames need SAM2 only)
    rgb: np.ndarray
    pre_encoded: bool = False  # encoded ahead of any query (pre_encode_hz)


@dataclass
class TrackPlan:
    """What one frame does to a camera's tracks: stop, re-ground, step the running ones, start new ones."""

    stops: set[str]
    regrounds: set[str]
    step: bool  # step the running tracks on this frame
    starts: dict[str, Query]


@dataclass
class CameraTracks:
    """A camera's tracked queries (MODE_TRACK), by query id.

    ROS callbacks request starts, stops and re-groundings (under the worker's lock); the inference thread
    takes them with the next frame (:meth:`take`) and applies them to its QueryTracker, so no callback ever
    waits for the model.
    """

    active: dict[str, Query] = field(default_factory=dict)  # started, running
    pending: dict[str, Query] = field(default_factory=dict)  # to start on the next fresh frame
    starting: dict[str, Query] = field(default_factory=dict)  # being started by the running batch
    stops: set[str] = field(default_factory=set)
    regrounds: set[str] = field(default_factory=set)
    tracker: QueryTracker | None = None  # inference thread only
    tracker_queries: dict[str, Query] = field(default_factory=dict)  # what the tracker holds (inference thread)

    def start(self, query: Query) -> None:
        """Start (or restart, same id) a tracked query on the next fresh frame."""
        self.pending[query.id] = query

    def stop(self, query_id: str) -> bool:
        """Stop a tracked query (started or not); False if there is none with this id."""
        found = any(query_id in d for d in (self.active, self.pending, self.starting))
        self.pending.pop(query_id, None)
        if self.active.pop(query_id, None) is not None or query_id in self.starting:
            self.stops.add(query_id)
        return found

    def clear(self) -> None:
        """Stop every tracked query."""
        for query_id in [*self.active, *self.pending, *self.starting]:
            self.stop(query_id)

    def reground(self, query_id: str | None) -> int:
        """Ground ``query_id`` (every running track for None) again on the next frame; how many will be."""
        ids = list(self.active) if query_id is None else [query_id] if query_id in self.active else []
        self.regrounds.update(ids)
        return len(ids)

    def take(self, step: bool) -> TrackPlan:
        """The requests for the next frame (and ``step``: run the active tracks on it)."""
        plan = TrackPlan(set(self.stops), set(self.regrounds), step and bool(self.active), dict(self.pending))
        self.stops.clear()
        self.regrounds.clear()
        for query_id, query in self.pending.items():
            self.active.pop(query_id, None)  # a restart replaces the running track
            self.starting[query_id] = query
        self.pending.clear()
        return plan

    def finish_start(self, query_id: str, state: str) -> None:
        """The running batch started ``query_id`` (``running``), could not and should try again on the next
        frame (``retry``), or refused it for good (``dropped``: a bad query)."""
        query = self.starting.pop(query_id, None)
        if query is None or query_id in self.stops or query_id in self.pending:
            return  # stopped or replaced while it started
        if state == "running":
            self.active[query_id] = query
        elif state == "retry":
            self.pending[query_id] = query


@dataclass
class CameraFeed:
    """Worker-side state of one camera (``name`` "" = the unnamed camera of a single-camera node)."""

    name: str
    slot: LatestSlot
    source: str = "the camera topic"  # its image topic, named in "no camera frame received on ..." answers
    continuous: Query | None = None
    tracks: CameraTracks = field(default_factory=CameraTracks)
    seen_seq: int = 0  # newest frame already judged (fresh or stale)
    continuous_seq: int = 0  # newest frame the continuous query ran on
    track_seq: int = 0  # newest frame the tracks ran on
    last_continuous_ns: int = 0  # when continuous work (query or tracks) last ran (for max_rate_hz)
    last_pre_encode: float = 0.0  # time.monotonic() of the last pre-encoding
    pre_encode_seq: int = 0  # the frame last pre-encoded (each frame at most once, even if it failed)
    cache: Cached | None = None
    stats: WorkerStats = field(default_factory=WorkerStats)
