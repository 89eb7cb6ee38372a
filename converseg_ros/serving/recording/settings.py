"""What the hard-case recorder keeps and where (the node's ``record.*`` parameters), and what a record holds.
Plain Python."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

LOW_SCORE = "low_score"  # the answer's score is below ``min_score``
NOTHING_FOUND = "nothing_found"  # the answer has no region
TRACK_DISAGREED = "track_disagreed"  # a tracked mask and its re-grounding overlap less than ``min_track_iou``
FLAG = "flag"  # an operator said "this answer was wrong" (or right)
REASONS = (LOW_SCORE, NOTHING_FOUND, TRACK_DISAGREED, FLAG)
FORMATS = ("mcap", "folder")
VERDICTS = ("wrong", "right")


@dataclass(frozen=True)
class RecordSettings:
    """The recorder's knobs (each a ``record.<name>`` node parameter)."""

    enabled: bool = False
    dir: str = "~/.ros/converseg/records"
    format: str = "mcap"
    reasons: frozenset[str] = frozenset(REASONS)
    min_score: float = 0.3
    min_track_iou: float = 0.5
    min_interval_s: float = 2.0  # at most one automatic record per this many seconds (flags are exempt)
    max_mb: float = 2048.0  # disk budget of ``dir``; the oldest records go first
    chunk_s: float = 10.0  # an MCAP chunk is closed (readable) after this many seconds

    @property
    def root(self) -> Path:
        return Path(self.dir).expanduser()

    @property
    def max_bytes(self) -> int:
        return int(self.max_mb * 2**20)


@dataclass
class Record:
    """One kept frame: its pixels, where and when it was seen, the instruction for the data engine (the
    queries' texts) and the summary (``meta``: queries, answers, reasons, model)."""

    id: str
    camera: str
    stamp_ns: int  # the frame's header stamp
    frame_id: str
    rgb: np.ndarray
    instruction: str
    meta: dict[str, Any] = field(default_factory=dict)
    recorded_ns: int = 0  # wall clock when it was written (the bag's log time)
