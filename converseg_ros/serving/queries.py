"""What the inference worker works on and hands back: queries, one-shot jobs, per-frame batches, settings and
counters. Plain Python (no rclpy)."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from converseg_ros.engine.tracking import TrackingConfig
from converseg_ros.serving.frame_slot import Frame

MODE_CONTINUOUS = 0  # answer every new frame with the full model until replaced or cleared
MODE_ONCE = 1  # answer once
MODE_TRACK = 2  # ground once, then follow with SAM2's memory (engine/tracking.py)
MODE_STOP = 3  # stop the continuous or tracked query with this id
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
    policy: str = "latest"  # latest: newest fresh frame; next: a frame received after the submission
    inline_msg: Any = None  # an image inside the service request (used instead of a camera frame)
    from_service: bool = False
    frame_timeout_s: float = 0.0  # answer with "no camera frame ..." after waiting this long; 0 = no limit
    camera: str | None = None  # the camera to answer on; None = any camera (the first eligible frame)
    submitted: float = 0.0  # time.monotonic() at submission
    marks: dict[str, tuple[int, int]] = field(default_factory=dict)  # camera -> (slot seq, rejected) at submission
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


@dataclass
class WorkerSettings:
    """Knobs the node may change at run time."""

    max_image_age_s: float = 1.0
    max_rate_hz: float = 0.0
    pre_encode_hz: float = 0.0  # encode each camera's newest frame while idle, at most this often; 0 = off
    min_region_area_px: int = 64
    max_regions: int = 10
    tracking: TrackingConfig = field(default_factory=TrackingConfig)


@dataclass
class WorkerStats:
    """Counters for diagnostics and benchmarks (the node's totals, and each camera's own)."""

    frames_encoded: int = 0  # frames decoded and encoded by the model (once each), pre-encoded ones included
    frames_pre_encoded: int = 0  # of those, encoded ahead of any query (pre_encode_hz)
    answers_pre_encoded: int = 0  # language answers given on a frame encoded ahead (no encoding waited for)
    batches: int = 0  # inference rounds (a frame's encoding may serve several rounds)
    frames_stale: int = 0
    frames_bad: int = 0
    queries_answered: int = 0
    tracked: int = 0  # tracked-query answers carried by SAM2's memory
    grounded: int = 0  # tracked-query answers grounded by the full model (starts and re-groundings)
    errors: int = 0
    last_error: str = ""
    last_encode_ms: float = 0.0
    last_segment_ms: float = 0.0
