"""The hard-case recorder: judges every computed batch on its own thread and writes the hard cases to disk,
never delaying inference. Plain Python.

``offer(batch)`` (from the publishing path) only appends to a short queue; when the recorder falls behind,
the oldest waiting batch is dropped and counted, never the caller blocked. On the recorder's thread each batch
is judged (:mod:`~converseg_ros.serving.recording.judge`); a batch with a hard case is recorded unless the
last automatic record is younger than ``min_interval_s`` (the rate limit). An operator's flag records the
flagged query's latest answer at once (no rate limit; a frame already recorded gets a note instead of a second
copy). Before each write the disk budget drops the oldest records (:mod:`~.budget`); a full disk or any write
error is counted and reported, the recorder carries on. Each start opens a new session (one bag, or one
folder): ``<UTC start>_<host>_<pid>_<random>``, unique across robots sharing a folder.
"""

from __future__ import annotations

import collections
import os
import re
import secrets
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from converseg_ros.serving.queries import Batch, clip
from converseg_ros.serving.recording import bag, folder
from converseg_ros.serving.recording.budget import make_room
from converseg_ros.serving.recording.judge import Finding, HardCaseJudge, answer_summary
from converseg_ros.serving.recording.settings import FLAG, VERDICTS, Record, RecordSettings

QUEUE_BATCHES = 8  # batches waiting to be judged; more: the oldest is dropped (counted)
BUDGET_SCAN_S = 1.0  # the records folder's closed units are counted again at most this often
TICK_S = 0.25  # how often an idle recorder checks whether its open chunk is due to close
MAX_FLAG_NOTE = 500


@dataclass(frozen=True)
class RecorderStatus:
    """Counters for diagnostics."""

    enabled: bool
    session: str  # the session folder being written ("" before the first record)
    records: int = 0
    flags: int = 0
    skipped_rate: int = 0  # hard cases not recorded: min_interval_s since the last record
    dropped_busy: int = 0  # batches not judged: the recorder was behind
    dropped_budget: int = 0  # older records deleted to stay within max_mb
    errors: int = 0
    last_error: str = ""
    cpu_s: float = 0.0  # CPU time the recorder's thread spent judging and writing

@dataclass
class FlagAnswer:
    ok: bool
    message: str
    record_id: str = ""


def session_name(wall_ns: int) -> str:
    """``<UTC start>_<host>_<pid>_<random>``: sortable by time, unique across hosts and processes."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(wall_ns / 1e9))
    host = re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname())[:32] or "host"
    return f"{stamp}_{host}_{os.getpid()}_{secrets.token_hex(2)}"


class HardCaseRecorder:
    """See the module docstring; ``clock`` (monotonic seconds) and ``wall_ns`` are injected for tests."""

    def __init__(self, settings: RecordSettings, node: str = "", clock: Callable[[], float] = time.monotonic,
                 wall_ns: Callable[[], int] = time.time_ns) -> None:
        self.settings, self.node = settings, node
        self._clock, self._wall_ns = clock, wall_ns
        self._cond = threading.Condition()
        self._batches: collections.deque[Batch] = collections.deque()
        self._commands: collections.deque[tuple[str, Any]] = collections.deque()
        self._thread: threading.Thread | None = None
        self._stop = False
        self._status = RecorderStatus(False, "")
        self._judge = HardCaseJudge()
        self._session: Any = None
        self._seq = 0
        self._last_record_at: float | None = None
        self._recorded: collections.OrderedDict[tuple, str] = collections.OrderedDict()  # frame -> record id
        self._closed_bytes: tuple[float, int] | None = None  # (when counted, bytes of the closed units)
        self._open_seen = 0  # the open chunk's bytes after the last write

    # -- any thread ----------------------------------------------------------------------------------
    def start(self, settings: RecordSettings | None = None) -> None:
        """Start recording (with ``settings`` when given); a new session opens with the first record."""
        with self._cond:
            if self._thread is not None:
                return
            self.settings = settings or self.settings
            self._stop = False
            self._status = replace(self._status, enabled=True)
            self._thread = threading.Thread(target=self._loop, name="converseg-recorder", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 10.0) -> bool:
        """Judge what is queued, close the session (its last chunk becomes readable); True once ended."""
        with self._cond:
            thread, self._thread = self._thread, None
            self._stop = True
            self._cond.notify_all()
        if thread is not None:
            thread.join(timeout)
            return not thread.is_alive()
        return True

    @property
    def running(self) -> bool:
        return self._thread is not None

    def offer(self, batch: Batch) -> None:
        """A computed batch to judge; never blocks."""
        if not batch.outcomes:
            return
        with self._cond:
            if self._thread is None:
                return
            if len(self._batches) >= QUEUE_BATCHES:
                self._batches.popleft()
                self._count(dropped_busy=1)
            self._batches.append(batch)
            self._cond.notify_all()

    def set_settings(self, settings: RecordSettings) -> None:
        """New knobs from the next batch on (a new folder or format starts a new session)."""
        with self._cond:
            self._commands.append(("settings", settings))
            self._cond.notify_all()

    def flag(self, query_id: str, camera: str, verdict: str, note: str = "", wait_s: float = 5.0) -> FlagAnswer:
        """Record the latest answer to ``query_id`` as judged ``verdict`` (wrong/right) by an operator; waits
        up to ``wait_s`` for the recorder's answer (0: do not wait)."""
        if verdict not in VERDICTS:
            return FlagAnswer(False, f"verdict must be one of {', '.join(VERDICTS)}, got {clip(verdict)!r}")
        answer = FlagAnswer(False, "the recorder did not answer in time")
        done = threading.Event()
        with self._cond:
            if self._thread is None:
                return FlagAnswer(False, "recording is off (record.enabled: false)")
            self._commands.append(("flag", (query_id, camera, verdict, clip(note, MAX_FLAG_NOTE), answer, done)))
            self._cond.notify_all()
        if wait_s > 0:
            done.wait(wait_s)
        return answer

    def status(self) -> RecorderStatus:
        with self._cond:
            return self._status

    # -- the recorder's thread -----------------------------------------------------------------------
    def _loop(self) -> None:
        _lower_own_priority()
        try:
            while True:
                with self._cond:
                    if not (self._batches or self._commands or self._stop):
                        self._cond.wait(TICK_S)
                    commands = list(self._commands)
                    self._commands.clear()
                    batch = self._batches.popleft() if self._batches else None
                    stopping = self._stop and not self._batches
                cpu = time.thread_time()
                for name, value in commands:
                    self._guard(self._settings if name == "settings" else self._flag, *(
                        (value,) if name == "settings" else value))
                if batch is not None:
                    self._guard(self._judge_batch, batch)
                if self._session is not None:
                    self._guard(self._session.tick, self._clock())
                self._count(cpu_s=time.thread_time() - cpu)
                if stopping:
                    return
        finally:
            self._close_session()
            with self._cond:
                self._status = replace(self._status, enabled=False)

    def _settings(self, settings: RecordSettings) -> None:
        old, self.settings = self.settings, settings
        if (old.root, old.format) != (settings.root, settings.format):
            self._close_session()
        elif self._session is not None and settings.max_bytes < old.max_bytes:  # a smaller budget: now
            if settings.format == "mcap":
                self._session.chunk_bytes = max(1, settings.max_bytes // 4)
                if self._session.open_bytes > self._session.chunk_bytes:
                    self._session.close_chunk()
            module = bag if settings.format == "mcap" else folder
            dropped = make_room(module.units(settings.root), module.drop, self._session.open_bytes, 0,
                                settings.max_bytes)
            self._count(dropped_budget=dropped)

    def _judge_batch(self, batch: Batch) -> None:
        findings = self._judge.judge(batch, self.settings)
        if not findings:
            return
        now = self._clock()
        if self._last_record_at is not None and now - self._last_record_at < self.settings.min_interval_s:
            self._count(skipped_rate=1)
            return
        if self._record(batch, findings) is not None:
            self._last_record_at = now

    def _flag(self, query_id: str, camera: str, verdict: str, note: str, answer: FlagAnswer,
              done: threading.Event) -> None:
        try:
            if FLAG not in self.settings.reasons:
                answer.message = "flags are not recorded (record.reasons leaves out flag)"
                return
            latest = self._judge.latest(query_id, camera)
            if latest is None:
                answer.message = f"no answer to query {clip(query_id)!r} seen yet" + (f" on camera {camera}" if camera
                                                                                         else "")
                return
            batch, outcome = latest
            detail = verdict + (f": {note}" if note else "")
            finding = Finding(FLAG, outcome.query, detail)
            earlier = self._recorded.get(self._frame_key(batch))
            if earlier is not None:
                meta = {"id": earlier, "flag": {"query_id": outcome.query.id, "verdict": verdict, "note": note},
                        "reasons": [{"reason": FLAG, "query_id": outcome.query.id, "detail": detail}]}
                if self._guard(self._session.note, meta, self._wall_ns(), self._clock()):
                    answer.ok, answer.record_id = True, earlier
                    answer.message = f"flag ({verdict}) noted on record {earlier}"
                    self._count(flags=1)
                return
            record_id = self._record(batch, [finding])
            if record_id is not None:
                answer.ok, answer.record_id, answer.message = True, record_id, f"recorded as {record_id} ({verdict})"
                self._count(flags=1)
            else:
                answer.message = f"not recorded: {self._status.last_error}"
        finally:
            done.set()

    def _record(self, batch: Batch, findings: list[Finding]) -> str | None:
        if batch.rgb is None:
            return None
        if self._session is None:
            if not self._guard(self._open_session):
                return None
        self._seq += 1
        record_id = f"{self._session.name}-{self._seq:06d}"
        header = batch.frame.msg.header
        queries = {f.query.id for f in findings}
        texts = list(dict.fromkeys(f.query.text for f in findings))
        wall = self._wall_ns()
        meta = {
            "id": record_id, "seq": self._seq, "session": self._session.name, "node": self.node,
            "camera": batch.camera, "stamp_ns": batch.frame.stamp_ns, "recorded_ns": wall, "model": batch.model,
            "reasons": [{"reason": f.reason, "query_id": f.query.id, "detail": f.detail} for f in findings],
            "answers": [answer_summary(o) for o in batch.outcomes if o.query.id in queries and o.output is not None],
        }
        record = Record(record_id, batch.camera, batch.frame.stamp_ns, str(getattr(header, "frame_id", "")),
                        batch.rgb, " / ".join(texts), meta, wall)
        if not self._guard(self._write, record):
            return None
        self._recorded[self._frame_key(batch)] = record_id
        while len(self._recorded) > 256:
            self._recorded.popitem(last=False)
        self._count(records=1)
        return record_id

    def _write(self, record: Record) -> None:
        s, session = self.settings, self._session
        needed = record.rgb.nbytes + 4096
        if session.open_bytes and session.open_bytes + needed > s.max_bytes:
            session.close_chunk()  # (so that the budget can drop it)
        now = self._clock()
        closed = self._closed_bytes if session.open_bytes >= self._open_seen else None  # (None: a chunk closed)
        # The folder is scanned at most every BUDGET_SCAN_S (other runs may write there too) or when this
        # record might not fit by the last count: no directory walk for every record.
        if closed is None or now - closed[0] >= BUDGET_SCAN_S or closed[1] + session.open_bytes + needed > s.max_bytes:
            module = bag if s.format == "mcap" else folder
            units = module.units(s.root)
            dropped = make_room(units, module.drop, session.open_bytes, needed, s.max_bytes)
            self._count(dropped_budget=dropped)
            kept = sorted(units, key=lambda u: u.key)[dropped:]
            self._closed_bytes = (now, sum(u.bytes for u in kept))
        before = session.open_bytes
        session.write(record, now)
        if session.open_bytes < before + record.rgb.nbytes:  # a chunk (or a folder record) closed: count again
            self._closed_bytes = None
        self._open_seen = session.open_bytes

    def _open_session(self) -> None:
        s = self.settings
        s.root.mkdir(parents=True, exist_ok=True)
        module = bag if s.format == "mcap" else folder
        module.sweep(s.root)
        name = session_name(self._wall_ns())
        self._session = (bag.McapSession(s.root, name, s.chunk_s, max(1, s.max_bytes // 4)) if s.format == "mcap"
                         else folder.FolderSession(s.root, name))
        self._seq = 0
        self._closed_bytes, self._open_seen = None, 0
        with self._cond:
            self._status = replace(self._status, session=str(self._session.path))

    def _close_session(self) -> None:
        session, self._session = self._session, None
        self._recorded.clear()
        if session is not None:
            self._guard(session.close)

    def _guard(self, fn: Callable[..., Any], *args: Any) -> bool:
        """Run a disk operation; a failure is counted and kept as the last error (True when it worked)."""
        try:
            fn(*args)
            return True
        except Exception as exc:  # noqa: BLE001 - the recorder reports and carries on, whatever failed
            self._count(errors=1, last_error=f"{type(exc).__name__}: {clip(str(exc), 300)}")
            return False

    @staticmethod
    def _frame_key(batch: Batch) -> tuple:
        return (batch.camera, batch.frame.seq, batch.frame.stamp_ns, batch.model)

    def _count(self, last_error: str | None = None, **counts: float) -> None:
        with self._cond:
            values = {k: getattr(self._status, k) + v for k, v in counts.items()}
            if last_error is not None:
                values["last_error"] = last_error
            self._status = replace(self._status, **values)


RECORDER_NICE = 10  # below the inference thread: on a busy CPU the model gets the cores, records wait


def _lower_own_priority() -> None:
    """Give the calling thread a lower CPU priority (Linux: threads have their own nice value)."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), RECORDER_NICE)
    except (AttributeError, OSError):  # not Linux, or not allowed: keep the default priority
        pass
