"""converseg_node's /diagnostics: one status for the model (state, preset, device, totals, errors, pending
jobs) and one per camera (topic, reliability, frames received / rejected / dropped / encoded / stale / bad,
answers, tracked queries, timings). A single unnamed camera keeps everything in the one status."""

from __future__ import annotations

from typing import Any

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from std_msgs.msg import Header

from converseg_ros.ros.cameras import CameraIO
from converseg_ros.ros.jobs import WorkerStats


def _stats_values(stats: WorkerStats) -> dict[str, str]:
    return {
        "frames_encoded": str(stats.frames_encoded),
        "frames_pre_encoded": str(stats.frames_pre_encoded),
        "answers_pre_encoded": str(stats.answers_pre_encoded),
        "batches": str(stats.batches),
        "frames_stale": str(stats.frames_stale),
        "frames_bad": str(stats.frames_bad),
        "queries_answered": str(stats.queries_answered),
        "tracked_answers": str(stats.tracked),
        "grounded_answers": str(stats.grounded),
        "errors": str(stats.errors),
        "encode_ms": f"{stats.last_encode_ms:.1f}",
        "segment_ms": f"{stats.last_segment_ms:.1f}",
    }


def camera_values(camera: CameraIO, worker: Any) -> dict[str, str]:
    """One camera's keys (its queries, topic and input counters; its model counters while active)."""
    q = camera.continuous
    values = {
        "camera": camera.name,
        "active_query": q.text[:200] if q else "",
        "tracked_queries": ",".join(sorted(camera.tracked))[:500],
        "image_topic": camera.image_topic,
        "image_reliability": camera.inputs[0].reliability if camera.inputs else "",
        "frames_received": str(camera.frames_received),
        "frames_rejected": str(camera.slot.rejected),
        "last_frame_rejected": camera.slot.last_reject[:200],
        "frames_dropped_overwritten": str(camera.slot.overwritten),
        "frames_lost_in_transport": str(sum(i.lost for i in camera.inputs[:1])),  # the image input's
    }
    if worker is not None:
        feed = worker.feed(camera.name)
        values.update(_stats_values(feed.stats))
        values["last_error"] = feed.stats.last_error[:200]
    return values


def diagnostics_msg(node: Any) -> DiagnosticArray:
    """The node's diagnostics now (``node``: a ConverSegNode)."""
    worker = node.worker
    stats = worker.stats if worker is not None else None
    fqn = node.get_fully_qualified_name()
    status = DiagnosticStatus(name=f"{fqn}: inference", hardware_id="converseg")
    if not node.active:
        status.level, status.message = DiagnosticStatus.WARN, "inactive (model not loaded)"
    elif stats is not None and stats.last_error:
        status.level, status.message = DiagnosticStatus.WARN, f"last error: {stats.last_error[:200]}"
    else:
        status.level, status.message = DiagnosticStatus.OK, "running"
    values = {
        "preset": node.choice.preset if node.choice else "",
        "device": node.choice.device if node.choice else "",
        "enabled": str(node.enabled),
        "cameras": ",".join(node.cameras),
        "frames_received": str(sum(c.frames_received for c in node.cameras.values())),
    }
    if stats is not None:
        values.update(_stats_values(stats))
        values["pending_jobs"] = str(worker.pending_jobs)
        if node.publisher is not None:
            values["batches_waiting_publication"] = str(node.publisher.pending)
    cameras = list(node.cameras.values())
    statuses = [status]
    if len(cameras) == 1 and not cameras[0].name:  # its inputs; the model counters stay the node's totals,
        values.update(camera_values(cameras[0], None))  # which also count images sent with a service call
        if stats is not None:
            values["last_error"] = stats.last_error[:200]
    else:
        for camera in cameras:
            cam = DiagnosticStatus(name=f"{fqn}: {camera.label}", hardware_id="converseg")
            cam_values = camera_values(camera, worker)
            if not node.active:
                cam.level, cam.message = DiagnosticStatus.WARN, "inactive (model not loaded)"
            elif cam_values.get("last_error"):
                cam.level, cam.message = DiagnosticStatus.WARN, f"last error: {cam_values['last_error']}"
            else:
                cam.level, cam.message = DiagnosticStatus.OK, "running"
            cam.values = [KeyValue(key=k, value=v) for k, v in cam_values.items()]
            statuses.append(cam)
    status.values = [KeyValue(key=k, value=v) for k, v in values.items()]
    return DiagnosticArray(header=Header(stamp=node.get_clock().now().to_msg()), status=statuses)
