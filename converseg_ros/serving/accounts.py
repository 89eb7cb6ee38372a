"""Counters and failure reports of the inference worker: each event counts in the node's totals and in its
camera's own WorkerStats; a model failure becomes the message its queries are answered with. Plain Python."""

from __future__ import annotations

from collections.abc import Sequence

from converseg_ros.errors import ConverSegError
from converseg_ros.serving.camera import CameraFeed
from converseg_ros.serving.queries import WorkerStats


def is_out_of_memory(exc: BaseException) -> bool:
    """True for CUDA (or CPU allocator) out-of-memory errors."""
    return "out of memory" in str(exc).lower() or type(exc).__name__ == "OutOfMemoryError"


def free_accelerator_cache() -> None:
    """Release cached GPU memory after an OOM (no-op without CUDA)."""
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except Exception:  # noqa: BLE001 - best effort only
        pass


class Accounts:
    """The node's totals (``stats``) and the cameras (``feeds``, each with its own stats and cached frame)."""

    def __init__(self, stats: WorkerStats, feeds: Sequence[CameraFeed]) -> None:
        self.stats = stats
        self.feeds = feeds

    def stats_of(self, feed: CameraFeed | None) -> list[WorkerStats]:
        """The counters an event of ``feed`` goes to (None: an image sent with a service call)."""
        return [self.stats] if feed is None else [self.stats, feed.stats]

    def count(self, feed: CameraFeed | None, name: str, n: int = 1) -> None:
        for stats in self.stats_of(feed):
            setattr(stats, name, getattr(stats, name) + n)

    def error(self, feed: CameraFeed | None, reason: str) -> None:
        """Count an error and keep it as the last one."""
        self.count(feed, "errors")
        for stats in self.stats_of(feed):
            stats.last_error = reason

    def bad_image(self, feed: CameraFeed | None, exc: BaseException) -> str:
        """Count a frame that cannot be decoded; the reason its queries get."""
        reason = f"bad image: {exc}"
        self.count(feed, "frames_bad")
        self.error(feed, reason)
        return reason

    def model_failure(self, exc: BaseException, feed: CameraFeed | None) -> str:
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
