"""The serving core's knobs: node-wide ones and each camera's own (both may change at run time), and the
clocks it reads (injected, so the scheduler runs on a fake clock in tests). Plain Python."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from converseg_ros.engine.tracking import TrackingConfig


@dataclass
class WorkerSettings:
    """Node-wide knobs."""

    max_image_age_s: float = 1.0  # frames older than this (stamp vs clock) are not used; 0 = off
    pre_encode_hz: float = 0.0  # encode each camera's newest frame while idle, at most this often; 0 = off
    min_region_area_px: int = 64
    max_regions: int = 10


@dataclass
class CameraSettings:
    """One camera's knobs."""

    max_rate_hz: float = 0.0  # cap on continuous work (continuous query and tracks); 0 = unlimited
    max_tracks: int = 8  # tracked queries at once; more are refused
    tracking: TrackingConfig = field(default_factory=TrackingConfig)


@dataclass(frozen=True)
class Clocks:
    """``stamp_ns``: the clock frame stamps are compared with (the node's, sim time included);
    ``monotonic``: seconds for waits and rates that must not jump."""

    stamp_ns: Callable[[], int] = time.time_ns
    monotonic: Callable[[], float] = time.monotonic
