"""One camera as the serving core sees it: its frame slot, its own settings, the scheduler's bookkeeping, the
encoding of its last processed frame, its tracker and its counters. Its standing queries live in the
:class:`~converseg_ros.serving.book.QueryBook`. Plain Python; guarded by the worker's lock except
``tracker`` and ``tracker_queries``, which only the inference thread touches."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from converseg_ros.engine.tracking import QueryTracker
from converseg_ros.serving.frame_slot import Frame, LatestSlot
from converseg_ros.serving.queries import Query
from converseg_ros.serving.settings import CameraSettings
from converseg_ros.serving.stats import WorkerStats


@dataclass
class Cached:
    """A frame's encoding kept for later queries on the same frame."""

    frame: Frame
    encoding: Any  # FrameEncoding (its Qwen prefix may be missing: tracked frames need SAM2 only)
    rgb: np.ndarray
    pre_encoded: bool = False  # encoded ahead of any query (pre_encode_hz)


@dataclass
class CameraFeed:
    """Serving-side state of one camera (``name`` "" = the unnamed camera of a one-camera node)."""

    name: str
    slot: LatestSlot = field(default_factory=LatestSlot)
    source: str = "the camera topic"  # its image topic, named in "no camera frame received on ..." answers
    settings: CameraSettings = field(default_factory=CameraSettings)
    seen_seq: int = 0  # newest frame already judged (fresh or stale)
    continuous_seq: int = 0  # newest frame the continuous query ran on
    continuous_ran: Query | None = None  # the continuous query that ran on continuous_seq
    track_seq: int = 0  # newest frame the tracks ran on
    last_continuous_ns: int = 0  # when continuous work (query or tracks) last ran (for max_rate_hz)
    last_pre_encode: float = 0.0  # monotonic time of the last pre-encoding
    pre_encode_seq: int = 0  # the frame last pre-encoded (each frame at most once, even if it failed)
    cache: Cached | None = None
    stats: WorkerStats = field(default_factory=WorkerStats)
    tracker: QueryTracker | None = None  # inference thread only
    tracker_queries: dict[str, Query] = field(default_factory=dict)  # what the tracker holds (inference thread)

    def reset(self) -> None:
        """A new model: forget encodings, tracker and per-model counters (the slot and settings stay)."""
        self.seen_seq = self.continuous_seq = self.track_seq = self.pre_encode_seq = 0
        self.continuous_ran = None
        self.last_continuous_ns, self.last_pre_encode = 0, 0.0
        self.forget_model()
        self.stats = WorkerStats()

    def forget_model(self) -> None:
        """A model swapped in while serving: what the old model computed goes (its cached encoding, its
        tracker); the frame bookkeeping stays, so the new model starts on the next frame."""
        self.cache, self.tracker = None, None
        self.tracker_queries = {}
