"""GPU benchmark section: the node's real serving loop on the device, without DDS or rclpy.

The node's own plain-Python classes run as in ``converseg_node``: camera threads overwrite each camera's
``LatestSlot`` at ``camera_hz`` (raw rgb8 buffers, as sensor_msgs/Image carries them, decoded by the worker
like the node's ``_decode``), one ``InferenceWorker`` serves every camera round robin with one engine, and a
``PublishQueue`` thread does what the node's publishing thread does with each batch apart from the DDS
send: the mono8 mask buffer and the rgb8 overlay (mask tint, regions, banner) of every answer. Measured per
camera: answers published per second, the latency from a frame's reception to its answer's publication,
and the fraction of camera frames answered (the others were replaced by a newer one: the node never queues
frames).

Two query kinds, for 1 and 3 cameras: a continuous query (every frame: both encoders + the query) and a
tracked query (grounded once, then SAM2's memory; re-grounded every 30 frames, the node's default; score
thresholds off because random weights make them noise).
"""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import SimpleNamespace

import numpy as np

CAMERA_COUNTS = (1, 3)
MODES = ("continuous", "tracked")


def serving() -> SimpleNamespace:
    """The node's serving core (converseg_ros/serving/, no rclpy), imported in this one place."""
    from converseg_ros.engine.tracking import TrackingConfig
    from converseg_ros.serving.book import QueryBook
    from converseg_ros.serving.camera import CameraFeed
    from converseg_ros.serving.queries import MODE_CONTINUOUS, MODE_TRACK, Query
    from converseg_ros.serving.settings import CameraSettings, Clocks, WorkerSettings
    from converseg_ros.serving.worker import InferenceWorker

    return SimpleNamespace(
        CameraFeed=CameraFeed, QueryBook=QueryBook, Query=Query, WorkerSettings=WorkerSettings,
        CameraSettings=CameraSettings, Clocks=Clocks, InferenceWorker=InferenceWorker,
        TrackingConfig=TrackingConfig, MODE_CONTINUOUS=MODE_CONTINUOUS, MODE_TRACK=MODE_TRACK,
    )


@dataclass(frozen=True)
class RawImage:
    """What a camera driver sends: an rgb8 buffer and its size (the worker decodes it, as the node does)."""

    data: bytes
    height: int
    width: int


def decode(msg: RawImage) -> np.ndarray:
    """rgb8 bytes -> an owned H x W x 3 array (the node's decoder copies too)."""
    return np.frombuffer(msg.data, np.uint8).reshape(msg.height, msg.width, 3).copy()


@dataclass(frozen=True)
class LoopOptions:
    camera_hz: float = 30.0
    warm: int = 8  # answers per camera not counted (first grounding, memory filling, allocations)
    measured: int = 10  # answers per camera counted, at least
    min_seconds: float = 6.0  # measuring window, at least
    timeout_s: float = 60.0  # give up waiting for answers (a figure is then missing, with the reason)


class _Recorder:
    """The publishing thread's work and its timestamps, per camera."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.answers: dict[str, list[tuple[float, float, bool]]] = {}  # camera -> (t, latency ms, grounded)
        self.frames: dict[str, int] = {}  # camera -> frames answered (a batch is one frame)
        self.errors: list[str] = []

    def publish(self, batch) -> None:
        from converseg_ros.visualization import draw_overlay

        rows = []
        for outcome in batch.outcomes:
            if outcome.error is not None or outcome.output is None:
                with self.lock:
                    self.errors.append(outcome.error or "no output")
                continue
            out = outcome.output
            mask = np.asarray(out.mask, bool)
            (mask.astype(np.uint8) * 255).tobytes()  # the mask message's data
            draw_overlay(batch.rgb, mask, out.regions, f'"{outcome.query.text}"').tobytes()  # the overlay's
            latency_ms = (time.monotonic_ns() - batch.frame.received_ns) / 1e6
            rows.append((time.monotonic(), latency_ms, outcome.grounded))
        with self.lock:
            self.answers.setdefault(batch.camera, []).extend(rows)
            self.frames[batch.camera] = self.frames.get(batch.camera, 0) + 1

    def counts(self) -> dict[str, int]:
        with self.lock:
            return {name: len(rows) for name, rows in self.answers.items()}


def _camera(slot, frames: list[np.ndarray], hz: float, stop: threading.Event) -> None:
    """A camera driver: the next frame every 1/hz s into the camera's slot (newest wins)."""
    messages = [RawImage(f.tobytes(), f.shape[0], f.shape[1]) for f in frames]
    period, k = 1.0 / hz, 0
    next_t = time.monotonic()
    while not stop.is_set():
        now = time.monotonic_ns()
        slot.put(messages[k % len(messages)], now, now)
        k += 1
        next_t += period
        stop.wait(max(0.0, next_t - time.monotonic()))


def run_loop(engine, videos: list[list[np.ndarray]], mode: str, prompts: tuple[str, ...],
             options: LoopOptions) -> dict:
    """Serve ``len(videos)`` cameras with one query each (``mode``); the figures of one configuration."""
    s = serving()
    names = [f"cam{c}" for c in range(len(videos))]
    recorder = _Recorder()
    tracking = s.TrackingConfig(min_object_score=-np.inf, min_iou=0.0, reground_every=30)
    feeds = [s.CameraFeed(name, source=f"/{name}/image_raw", settings=s.CameraSettings(tracking=tracking))
             for name in names]
    slots = [feed.slot for feed in feeds]
    # pipelined: the worker's own PublishQueue converts and publishes while the next frame is encoded
    worker = s.InferenceWorker(feeds, s.QueryBook(names), decode, recorder.publish, s.WorkerSettings(),
                               s.Clocks(stamp_ns=time.monotonic_ns), pipelined=True)
    for c, name in enumerate(names):
        kind = s.MODE_TRACK if mode == "tracked" else s.MODE_CONTINUOUS
        query = s.Query(f"q{c}", prompts[c % len(prompts)], time.monotonic_ns(), kind)
        (worker.start_track if mode == "tracked" else worker.set_continuous)(query, name)
    stop = threading.Event()
    cameras = [threading.Thread(target=_camera, args=(slot, video, options.camera_hz, stop), daemon=True)
               for slot, video in zip(slots, videos, strict=True)]
    worker.start(engine)
    for thread in cameras:
        thread.start()
    start = time.monotonic()
    need = options.warm + options.measured
    try:
        while True:
            time.sleep(0.05)
            counts = recorder.counts()
            done = all(counts.get(n, 0) >= need for n in names) and time.monotonic() - start >= options.min_seconds
            if done or recorder.errors or time.monotonic() - start > options.timeout_s:
                break
    finally:
        stop.set()
        for thread in cameras:
            thread.join()
        worker.stop()
    if worker.stats.errors:
        recorder.errors.append(worker.stats.last_error)
    return _figures(recorder, names, feeds, options, time.monotonic() - start)


def _figures(recorder: _Recorder, names: list[str], feeds, options: LoopOptions, elapsed: float) -> dict:
    if recorder.errors:
        raise RuntimeError(f"the serving loop answered with an error: {recorder.errors[0]}")
    fps, latencies, grounded = [], [], 0
    for name in names:
        rows = recorder.answers.get(name, [])[options.warm:]
        if len(rows) < 2:
            raise RuntimeError(f"{name}: {len(rows)} answers after warm-up in {elapsed:.0f} s")
        fps.append((len(rows) - 1) / (rows[-1][0] - rows[0][0]))
        latencies += [latency for _, latency, _ in rows]
        grounded += sum(g for _, _, g in rows)
    received = sum(feed.slot.seq for feed in feeds)  # frames the cameras sent during the whole run
    return {
        "fps_per_camera": statistics.mean(fps), "min_fps_per_camera": min(fps),
        "latency_ms_median": statistics.median(latencies),
        "latency_ms_p95": float(np.percentile(latencies, 95)),
        "frames_answered_fraction": sum(recorder.frames.values()) / max(1, received),
        "grounded_answers": grounded, "answers": len(latencies),
    }


def node_loops(engine, videos: list[list[np.ndarray]], prompts: tuple[str, ...], options: LoopOptions,
               progress: Callable[[str], None]) -> dict:
    """Every configuration: continuous and tracked query, 1 and 3 cameras."""
    out = {}
    for mode in MODES:
        for count in CAMERA_COUNTS:
            progress(f"node loop: {mode} query, {count} camera(s) at {options.camera_hz:g} Hz")
            figures = run_loop(engine, videos[:count], mode, prompts, options)
            for key, value in figures.items():
                out[f"node_{mode}_{count}cam_{key}"] = value
            progress(f"  {figures['fps_per_camera']:.1f} answers/s per camera, latency "
                     f"{figures['latency_ms_median']:.0f} ms median, {figures['frames_answered_fraction']:.0%} "
                     "of the camera frames answered (the newest frame wins, none queued)")
    return out


ROWS = [
    row
    for mode in MODES
    for count in CAMERA_COUNTS
    for row in (
        (f"node loop, {mode} query, {count} camera(s): answers/s per camera",
         f"node_{mode}_{count}cam_fps_per_camera", "fps"),
        (f"node loop, {mode} query, {count} camera(s): frame to published answer, median",
         f"node_{mode}_{count}cam_latency_ms_median", "ms"),
    )
]
