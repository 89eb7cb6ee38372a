"""A camera frame without ROS, for driving the serving core from plain Python (benchmarks, tests, a robot
stack that is not ROS): the fields the serving core and the recorder read from a frame message — a header
with ``frame_id`` and ``stamp`` (sec, nanosec) — and RGB pixels, with the matching ``decode``."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from converseg_ros.errors import ImageError


@dataclass
class Stamp:
    sec: int = 0
    nanosec: int = 0

    @classmethod
    def from_ns(cls, ns: int) -> Stamp:
        return cls(*divmod(int(ns), 1_000_000_000))


@dataclass
class Header:
    frame_id: str = ""
    stamp: Stamp = field(default_factory=Stamp)


@dataclass
class PlainFrame:
    """What a camera callback would store: a header and the pixels (decoded by :func:`decode` only)."""

    rgb: np.ndarray | None = None
    header: Header = field(default_factory=Header)
    encoding: str = "rgb8"


def decode(msg: PlainFrame) -> np.ndarray:
    """The worker's decode for plain frames: their RGB pixels, or ImageError for another encoding."""
    if msg.encoding != "rgb8" or msg.rgb is None:
        raise ImageError(f"unsupported image encoding {msg.encoding!r}")
    return msg.rgb
