"""Counters of the serving core and how events reach them: each counts in the node's totals and in its
camera's own :class:`WorkerStats`; a model failure becomes the message its queries are answered with.
Plain Python."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from converseg_ros.errors import ConverSegError


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
    queries_refused: int = 0  # once-queries answered without a frame: busy, no frame in time, deactivated ...
    tracked: int = 0  # tracked-query answers carried by SAM2's memory
    grounded: int = 0  # tracked-query answers grounded by the full model (starts and re-groundings)
    errors: int = 0
    last_error: str = ""
    last_encode_ms: float = 0.0
    last_segment_ms: float = 0.0


def is_out_of_memory(exc: BaseException) -> bool:
    """True for CUDA (or CPU allocator) out-of-memory errors."""
    return "out of memory" in str(exc).lower() or type(exc).__name__ == "OutOfMemoryError"


def free_accelerator_cache() -> None:
    """Release cached GPU memory (no-op without CUDA)."""
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except Exception:  # noqa: BLE001 - best effort only
        pass


def release_host_memory() -> None:
    """Hand memory freed by a released model back to the OS (glibc ``malloc_trim``; no-op elsewhere), so a
    deactivated node really shrinks and repeated load/unload cycles do not ratchet its RSS up."""
    import ctypes
    import sys

    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL("libc.so.6").malloc_trim(0)
        except (OSError, AttributeError):  # not glibc (musl): nothing to trim
            pass


class Accounts:
    """The node's totals (``stats``) and the cameras (``feeds``, each with its own stats and cached frame)."""

    def __init__(self, stats: WorkerStats, feeds: Sequence[Any]) -> None:
        self.stats = stats
        self.feeds = feeds

    def stats_of(self, feed: Any | None) -> list[WorkerStats]:
        """The counters an event of ``feed`` (a CameraFeed) goes to (None: an image sent with a service call)."""
        return [self.stats] if feed is None else [self.stats, feed.stats]

    def count(self, feed: Any | None, name: str, n: int = 1) -> None:
        for stats in self.stats_of(feed):
            setattr(stats, name, getattr(stats, name) + n)

    def error(self, feed: Any | None, reason: str) -> None:
        """Count an error and keep it as the last one."""
        self.count(feed, "errors")
        for stats in self.stats_of(feed):
            stats.last_error = reason

    def bad_image(self, feed: Any | None, exc: BaseException) -> str:
        """Count a frame that cannot be decoded; the reason its queries get."""
        reason = f"bad image: {exc}"
        self.count(feed, "frames_bad")
        self.error(feed, reason)
        return reason

    def model_failure(self, exc: BaseException, feed: Any | None) -> str:
        """Count a model failure (after an out-of-memory error: free the GPU cache and every camera's cached
        encoding); the reason its queries get."""
        if is_out_of_memory(exc):
            free_accelerator_cache()
            for each in self.feeds:
                each.cache = None
            reason = f"model out of memory ({type(exc).__name__}); cache freed, will retry on the next frame"
        elif isinstance(exc, ConverSegError):
            reason = f"model error: {exc}"
        else:
            reason = f"model failure: {type(exc).__name__}: {exc}"
        self.error(feed, reason)
        return reason
