"""A one-element "latest frame" slot: callbacks overwrite it, the worker reads the newest frame. Only frames
that passed the callback's cheap checks enter it; the others are counted as rejected. Plain Python."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Frame:
    """A received camera message with its reception order and time (never decoded by callbacks)."""

    msg: Any  # sensor_msgs/Image or CompressedImage (or any object the worker's decode accepts), untouched
    seq: int  # reception order, 1, 2, ... (0 = no frame yet, or an image sent with a service call)
    stamp_ns: int  # header stamp, or the reception time when the stamp is zero
    received_ns: int  # node clock at reception


@dataclass(frozen=True)
class SlotCounts:
    """A slot's counters at one moment."""

    received: int  # frames offered (stored + rejected)
    stored: int  # frames that entered the slot (= the newest frame's seq)
    rejected: int
    overwritten: int  # stored frames replaced before the worker took them (dropped, never queued)
    last_reject: str


class LatestSlot:
    """Thread-safe holder of the newest frame; ``put`` never blocks on the model and never queues."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._frame: Frame | None = None
        self._seq = 0
        self._overwritten = 0
        self._taken_seq = 0
        self._rejected = 0
        self._last_reject = ""
        self._listener: Callable[[], None] | None = None

    def listen(self, listener: Callable[[], None] | None) -> None:
        """Call ``listener`` after each stored frame (the worker's wake-up); None stops it."""
        self._listener = listener

    def put(self, msg: Any, stamp_ns: int, received_ns: int) -> Frame:
        """Store ``msg`` as the newest frame (replacing one not yet taken) and wake the listener."""
        with self._lock:
            self._seq += 1
            if self._frame is not None and self._frame.seq > self._taken_seq:
                self._overwritten += 1
            self._frame = Frame(msg, self._seq, stamp_ns if stamp_ns > 0 else received_ns, received_ns)
            frame = self._frame
            listener = self._listener
        if listener is not None:
            listener()
        return frame

    def reject(self, reason: str) -> None:
        """Count a frame that was not stored because it cannot be decoded (``reason`` says why)."""
        with self._lock:
            self._rejected += 1
            self._last_reject = reason

    def latest(self) -> Frame | None:
        """The newest frame (or None)."""
        with self._lock:
            return self._frame

    def mark_taken(self, seq: int) -> None:
        """The worker took frame ``seq`` (planned work on it or judged it stale): a later frame replacing it
        is not a drop."""
        with self._lock:
            self._taken_seq = max(self._taken_seq, seq)

    @property
    def seq(self) -> int:
        """Sequence number of the newest frame (0 before the first)."""
        with self._lock:
            return self._seq

    @property
    def rejected(self) -> int:
        """Frames refused by the callback's checks (never stored)."""
        with self._lock:
            return self._rejected

    @property
    def last_reject(self) -> str:
        """Why the most recent frame was refused ("" if none was)."""
        with self._lock:
            return self._last_reject

    def counts(self) -> SlotCounts:
        """All counters at once."""
        with self._lock:
            return SlotCounts(
                self._seq + self._rejected, self._seq, self._rejected, self._overwritten, self._last_reject
            )

    def clear(self) -> None:
        """Forget the stored frame (on deactivate)."""
        with self._lock:
            self._frame = None
