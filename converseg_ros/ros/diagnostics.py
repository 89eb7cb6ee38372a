"""converseg_node's /diagnostics from a status snapshot: one status for the model (state, preset, device, the
model serving and its last swap, the recorder's counters, totals, errors, pending jobs) and one per camera
(topic, reliability, frames received / rejected / dropped / encoded / stale / bad, answers, standing queries,
its own settings, timings). A single unnamed camera keeps everything in the one status."""

from __future__ import annotations

from dataclasses import dataclass, field

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from std_msgs.msg import Header

from converseg_ros.ros.params import CAMERA_PARAMS
from converseg_ros.serving.queries import clip
from converseg_ros.serving.stats import WorkerStats
from converseg_ros.serving.status import CameraStatus, ServingStatus


@dataclass(frozen=True)
class NodeFacts:
    """What the node adds to the serving status: its name, state, model and each camera's inputs."""

    name: str
    active: bool
    preset: str
    device: str
    inputs: dict[str, tuple[str, str, int]]  # camera -> (image topic, reliability, frames lost in transport)
    cameras: dict[str, object]  # camera -> CameraConfig (its effective settings)
    extra: dict[str, str] = field(default_factory=dict)  # the model switch's and the recorder's keys
    warning: str = ""  # a problem that is not an inference error (a failed model swap)


def _stats_values(stats: WorkerStats) -> dict[str, str]:
    return {
        "frames_encoded": str(stats.frames_encoded),
        "frames_pre_encoded": str(stats.frames_pre_encoded),
        "answers_pre_encoded": str(stats.answers_pre_encoded),
        "batches": str(stats.batches),
        "frames_stale": str(stats.frames_stale),
        "frames_bad": str(stats.frames_bad),
        "queries_answered": str(stats.queries_answered),
        "queries_refused": str(stats.queries_refused),
        "tracked_answers": str(stats.tracked),
        "grounded_answers": str(stats.grounded),
        "errors": str(stats.errors),
        "encode_ms": f"{stats.last_encode_ms:.1f}",
        "segment_ms": f"{stats.last_segment_ms:.1f}",
    }


def _camera_values(camera: CameraStatus, facts: NodeFacts) -> dict[str, str]:
    """One camera's keys: its queries, topic, input counters and own settings."""
    q = camera.continuous
    topic, reliability, lost = facts.inputs.get(camera.name, ("", "", 0))
    values = {
        "camera": camera.name,
        "active_query": clip(q.text, 200) if q else "",
        "tracked_queries": clip(",".join(camera.tracked), 500),
        "image_topic": topic,
        "image_reliability": reliability,
        "frames_received": str(camera.slot.received),
        "frames_rejected": str(camera.slot.rejected),
        "last_frame_rejected": clip(camera.slot.last_reject, 200),
        "frames_dropped_overwritten": str(camera.slot.overwritten),
        "frames_lost_in_transport": str(lost),
    }
    cfg = facts.cameras.get(camera.name)
    if cfg is not None and camera.name:
        values.update({f"setting.{n}": str(getattr(cfg, n)) for n in CAMERA_PARAMS})
    return values


def _level(active: bool, last_error: str) -> tuple[int, str]:
    if not active:
        return DiagnosticStatus.WARN, "inactive (model not loaded)"
    if last_error:
        return DiagnosticStatus.WARN, f"last error: {clip(last_error, 200)}"
    return DiagnosticStatus.OK, "running"


def diagnostics_msg(status: ServingStatus, facts: NodeFacts, stamp: object) -> DiagnosticArray:
    """The node's diagnostics for ``status`` (``stamp``: builtin_interfaces/Time)."""
    node = DiagnosticStatus(name=f"{facts.name}: inference", hardware_id="converseg")
    node.level, node.message = _level(facts.active, status.totals.last_error or facts.warning)
    values = {
        "preset": facts.preset,
        "device": facts.device,
        **facts.extra,
        "enabled": str(status.enabled),
        "cameras": ",".join(c.name for c in status.cameras),
        "frames_received": str(sum(c.slot.received for c in status.cameras)),
    }
    if facts.active:
        values.update(_stats_values(status.totals))
        values["pending_jobs"] = str(status.pending_jobs)
        values["batches_waiting_publication"] = str(status.waiting_publication)
    statuses = [node]
    if len(status.cameras) == 1 and not status.cameras[0].name:  # its inputs; the model counters stay the
        values.update(_camera_values(status.cameras[0], facts))  # totals (which count service images too)
        values["last_error"] = clip(status.totals.last_error, 200) if facts.active else ""
    else:
        for camera in status.cameras:
            cam = DiagnosticStatus(name=f"{facts.name}: camera {camera.name}", hardware_id="converseg")
            cam_values = _camera_values(camera, facts)
            if facts.active:
                cam_values.update(_stats_values(camera.stats))
                cam_values["last_error"] = clip(camera.stats.last_error, 200)
            cam.level, cam.message = _level(facts.active, cam_values.get("last_error", ""))
            cam.values = [KeyValue(key=k, value=v) for k, v in cam_values.items()]
            statuses.append(cam)
    node.values = [KeyValue(key=k, value=v) for k, v in values.items()]
    return DiagnosticArray(header=Header(stamp=stamp), status=statuses)
