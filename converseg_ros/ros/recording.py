"""The hard-case recorder's ROS side: the ``record.*`` parameters turned into the recorder's settings, the
``flag`` service and topic (an operator's "this answer was wrong/right"), and its diagnostics. The recorder
itself (judging, rate limit, budget, bags) is plain Python in ``converseg_ros.serving.recording``. Created at
configure, destroyed at cleanup."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from converseg_ros.ros.msgs import qos
from converseg_ros.ros.msgs.interfaces import AnswerFlag, Flag
from converseg_ros.serving.queries import MAX_ID_CHARS, Batch, clip
from converseg_ros.serving.recording.recorder import HardCaseRecorder
from converseg_ros.serving.recording.settings import RecordSettings

FLAG_WAIT_S = 5.0  # the flag service waits this long for the recorder's answer


def record_settings(cfg: Any) -> RecordSettings:
    """The recorder's settings from the node's ``record.*`` parameters."""
    return RecordSettings(
        cfg.record_enabled, cfg.record_dir, cfg.record_format, frozenset(cfg.record_reasons), cfg.record_min_score,
        cfg.record_min_track_iou, cfg.record_min_interval_s, cfg.record_max_mb, cfg.record_chunk_s,
    )


class Recording:
    """The recorder of ``node`` (started when ``record.enabled``) and its flag service and topic."""

    def __init__(self, node: Any, cfg: Any, input_group: Any, service_group: Any,
                 log: Callable[[str, bool], None]) -> None:
        self._node, self._log = node, log
        self.recorder = HardCaseRecorder(record_settings(cfg), node.get_fully_qualified_name())
        self._srv = node.create_service(Flag, "flag", self._on_flag_call, callback_group=service_group)
        self._sub = node.create_subscription(AnswerFlag, "flag", self._on_flag_msg, qos.command_qos(),
                                             callback_group=input_group)
        self.apply(cfg)

    def apply(self, cfg: Any) -> None:
        """``record.*`` changed (or configure): start, stop or re-set the recorder."""
        settings = record_settings(cfg)
        if settings.enabled and not self.recorder.running:
            self.recorder.start(settings)
            self._log(f"recording hard cases to {settings.root} ({settings.format})", False)
        elif not settings.enabled and self.recorder.running:
            self.recorder.stop()
            self._log("recording stopped", False)
        elif self.recorder.running:
            self.recorder.set_settings(settings)

    def offer(self, batch: Batch) -> None:
        """A published batch to judge (never blocks)."""
        self.recorder.offer(batch)

    def destroy(self) -> None:
        """Stop the recorder (its last chunk closed) and destroy the service and topic."""
        self.recorder.stop()
        self._node.destroy_service(self._srv)
        self._node.destroy_subscription(self._sub)

    def diagnostics(self) -> dict[str, str]:
        """Diagnostics keys of the recorder."""
        s = self.recorder.status()
        return {
            "record_enabled": str(s.enabled), "record_session": s.session, "records": str(s.records),
            "record_flags": str(s.flags), "records_skipped_rate": str(s.skipped_rate),
            "records_dropped_busy": str(s.dropped_busy), "records_dropped_budget": str(s.dropped_budget),
            "record_errors": str(s.errors), "record_last_error": clip(s.last_error, 200),
            "record_cpu_ms_per_record": f"{1e3 * s.cpu_s / max(1, s.records):.1f}",
        }

    def _flag(self, flag: AnswerFlag, wait_s: float) -> Any:
        qid = flag.query_id.strip()[:MAX_ID_CHARS]
        return self.recorder.flag(qid, flag.camera.strip(), flag.verdict.strip(), flag.note, wait_s)

    def _on_flag_call(self, req: Flag.Request, resp: Flag.Response) -> Flag.Response:
        answer = self._flag(req.flag, FLAG_WAIT_S)
        resp.success, resp.message, resp.record_id = answer.ok, answer.message, answer.record_id
        self._log(f"flag {clip(req.flag.query_id)} ({clip(req.flag.verdict)}): {answer.message}", not answer.ok)
        return resp

    def _on_flag_msg(self, msg: AnswerFlag) -> None:
        answer = self._flag(msg, 0.0)  # (the topic has no answer; the recorder reports in diagnostics)
        if not answer.ok and "did not answer" not in answer.message:
            self._log(f"flag {clip(msg.query_id)} ({clip(msg.verdict)}) refused: {answer.message}", True)
