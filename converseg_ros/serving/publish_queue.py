"""Pipelining: computed batches are converted to messages and published on their own thread, so the inference
thread starts the next frame's encoding while the previous result is being converted and published. Plain
Python (no rclpy): the node hands it the publishing function."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from typing import Any

MAX_QUEUED = 4  # batches waiting for publication; a fuller queue makes the inference thread wait (no loss)


class PublishQueue:
    """One thread that calls ``publish(batch)`` for each batch in order; ``on_error(batch, exc)`` reports a
    failure and the thread goes on. ``put`` waits only while MAX_QUEUED batches are already waiting."""

    def __init__(self, publish: Callable[[Any], None], on_error: Callable[[Any, BaseException], None],
                 max_queued: int = MAX_QUEUED) -> None:
        self._publish = publish
        self._on_error = on_error
        self._queue: queue.Queue[Any] = queue.Queue(max_queued)
        self._closed = False
        self.published = 0  # batches handed to ``publish`` (for tests and diagnostics)
        self._thread = threading.Thread(target=self._loop, name="converseg-publish", daemon=True)
        self._thread.start()

    def put(self, batch: Any) -> None:
        """Queue ``batch`` for publication (dropped once closed: nothing publishes after deactivation)."""
        if not self._closed:
            self._queue.put(batch)

    @property
    def pending(self) -> int:
        """Batches waiting for publication."""
        return self._queue.qsize()

    def close(self, timeout: float = 10.0) -> bool:
        """Publish what is queued, then stop the thread; True if it ended within ``timeout`` seconds."""
        if not self._closed:
            self._closed = True
            self._queue.put(None)
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def _loop(self) -> None:
        while True:
            batch = self._queue.get()
            if batch is None:
                return
            try:
                self._publish(batch)
            except Exception as exc:  # noqa: BLE001 - a publishing bug must not stop publication
                try:
                    self._on_error(batch, exc)
                except Exception:  # noqa: BLE001, S110 - nothing left to report to
                    pass
            self.published += 1
