"""What the serving core works on and hands back: queries, one-shot jobs, per-frame batches. Plain Python."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from converseg_ros.serving.frame_slot import Frame

MODE_CONTINUOUS = 0  # answer every new frame with the full model until replaced or cleared
MODE_ONCE = 1  # answer once
MODE_TRACK = 2  # ground once, then follow with SAM2's memory (engine/tracking.py)
MODE_STOP = 3  # stop the continuous or tracked query with this id
MODE_NAMES = {MODE_CONTINUOUS: "continuous", MODE_ONCE: "once", MODE_TRACK: "tracked", MODE_STOP: "stop"}
MAX_PENDING_JOBS = 64  # once-queries and service calls waiting for a frame; more are refused ("busy")
MAX_ID_CHARS = 128  # query ids and camera names are cut to this length wherever they are echoed


def clip(text: str, limit: int = MAX_ID_CHARS) -> str:
    """``text`` cut to ``limit`` characters (ids, camera names and texts echoed in answers and logs)."""
    return text if len(text) <= limit else text[:limit] + "…"


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
    policy: str = "latest"  # latest: newest fresh frame; next: a frame received after the submission
    inline_msg: Any = None  # an image inside the service request (used instead of a camera frame)
    from_service: bool = False
    frame_timeout_s: float = 0.0  # answer with "no camera frame ..." after waiting this long; 0 = no limit
    camera: str | None = None  # the camera to answer on; None = any camera (the first eligible frame)
    submitted: float = 0.0  # monotonic clock at submission
    marks: dict[str, tuple[int, int]] = field(default_factory=dict)  # camera -> (slot seq, rejected) at submission
    done: threading.Event = field(default_factory=threading.Event)
    cancelled: bool = False
    batch: Batch | None = None
    outcome: Outcome | None = None

    def finish(self, batch: Batch | None, outcome: Outcome) -> bool:
        """Answer the job (once: a later answer is ignored); True if this call answered it."""
        if self.done.is_set():
            return False
        self.batch, self.outcome = batch, outcome
        self.done.set()
        return True


@dataclass
class Outcome:
    """One query's answer on one frame: the engine's output, or the reason there is none."""

    query: Query
    output: Any = None  # SegmentationOutput
    error: str | None = None
    grounded: bool = True  # False: a tracked query's mask carried by SAM2's memory
    grounding_age: int = 0  # tracked queries: frames since the last grounding
    reason: str = ""  # tracked queries: why this frame was grounded (start, request, every_n, low_...)
    inference_ms: float | None = None  # this query's own model time (tracked queries); None: the batch's


@dataclass
class Batch:
    """Everything computed on one frame (shared by all its queries)."""

    frame: Frame
    rgb: np.ndarray | None
    outcomes: list[Outcome]
    encode_ms: float = 0.0
    segment_ms: float = 0.0
    jobs: list[Job] = field(default_factory=list)
    camera: str = ""  # the camera the frame came from ("" also for an image sent with a service call)
    model: str = ""  # the model that computed it (ModelRequest.label): answers name it, a swap shows in it
