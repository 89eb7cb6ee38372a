"""GPU benchmark section: tracked queries over several cameras (engine/tracking.py), as the node runs them.

Each camera has its own ``QueryTracker`` with one query, grounded on the camera's first frame and then
tracked by SAM2's memory. Per frame the camera's image is encoded once (SAM2 image encoder only, the
worker's ``encode_sam_frame``) and that encoding is handed to the tracker: every query of the camera shares
it, as ``InferenceWorker`` + ``TrackRunner`` do. Cameras are served one after the other on one thread
(the worker's round robin), so a round of N cameras costs N frames and each camera sees one frame per
round: frames/s per camera = 1000 / round ms.

* tracked frames: the memory bank full (``num_maskmem`` frames), medians over ``iters`` rounds;
* grounded frames: a re-grounding on request (the node's ``track_reground_every``): the SAM2-only encoding,
  then the Qwen prefix, the query and SAM2's memory encoder; all N cameras grounding in the same round is
  the worst case, and ``*_with_reground_every_30`` spreads one grounding over 30 frames (the node default).

Random weights make the object scores and predicted IoUs noise, so re-grounding happens only by request
(thresholds off), as in bench/tracking_benchmark.py.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable

import numpy as np

CAMERA_COUNTS = (1, 3)
PHOTOS = ("coffee", "chelsea", "astronaut")  # one scikit-image photo per camera
CAMERA_PROMPTS = ("the cup on the saucer", "the cat's eyes", "the helmet she could put on")
REGROUND_EVERY = 30  # the node's default track_reground_every
TRACK_STAGES = ("sam_encode_ms", "memory_attention_ms", "decode_ms", "memory_encode_ms")
GROUND_STAGES = ("sam_encode_ms", "qwen_prefix_ms", "qwen_suffix_ms", "decode_ms", "memory_encode_ms")


def camera_videos(count: int, size: tuple[int, int], frames: int) -> list[list[np.ndarray]]:
    """``count`` cameras' frames (height, width): a smooth synthetic sweep over a different photo each."""
    from skimage import data

    from converseg_ros.data.synthetic_video import camera_sweep

    return [camera_sweep(getattr(data, PHOTOS[c % len(PHOTOS)])(), frames, size).frames for c in range(count)]


class _Cameras:
    """N cameras, each with its frames, its tracker and one tracked query."""

    def __init__(self, engine, videos: list[list[np.ndarray]]):
        from converseg_ros.engine.tracking import QueryTracker, TrackingConfig

        config = TrackingConfig(min_object_score=-np.inf, min_iou=0.0, reground_every=0)
        self.engine, self.videos = engine, videos
        self.trackers = [QueryTracker(engine, config) for _ in videos]
        self.position = 0
        self.results: list = []  # TrackResults of the last round

    def _frame(self, camera: int) -> np.ndarray:
        video = self.videos[camera]
        return video[self.position % len(video)]

    def start(self) -> None:
        """Ground each camera's query on its frame (the start: the worker's full encoding, both encoders)."""
        for camera, tracker in enumerate(self.trackers):
            encoding = self.engine.encode_frame(self._frame(camera))
            tracker.track_start(encoding, CAMERA_PROMPTS[camera % len(CAMERA_PROMPTS)], track_id="q")
        self.position += 1

    def round(self, reground: bool = False) -> None:
        """One frame of every camera: SAM2 encoding once per frame, shared by the camera's tracked queries."""
        results = []
        for camera, tracker in enumerate(self.trackers):
            if reground:
                tracker.request_reground()
            encoding = self.engine.encode_sam_frame(self._frame(camera))  # a tracked frame needs SAM2 only
            step = tracker.track_step(encoding)
            if any(r.grounded != reground for r in step):
                raise RuntimeError(f"camera {camera}: expected {'grounded' if reground else 'tracked'} frames")
            results += step
        self.results = results
        self.position += 1


def _stage_medians(samples: list[dict[str, float]], keys: tuple[str, ...]) -> dict[str, float]:
    return {key: statistics.median(s.get(key, 0.0) for s in samples) for key in keys}


def _timed_rounds(clock, cameras: _Cameras, reground: bool, keys: tuple[str, ...]) -> tuple[float, dict]:
    """Median round ms over ``clock.iters`` rounds and the per-stage medians of their answers."""
    timings: list[dict[str, float]] = []

    def one() -> None:
        cameras.round(reground)
        timings.extend(r.output.timings for r in cameras.results)

    round_ms = clock.median(one)
    return round_ms, _stage_medians(timings[-clock.iters * len(cameras.trackers):], keys)


def tracked_cameras(engine, clock, size: tuple[int, int], progress: Callable[[str], None]) -> dict:
    """Frames/s per camera of tracked and grounded frames for 1 and 3 cameras at ``size`` (height, width)."""
    out: dict = {"tracking_stages": {}}
    fill = engine.net.sam.num_maskmem  # rounds until every bank holds its full memory
    for count in CAMERA_COUNTS:
        progress(f"tracked queries, {count} camera(s)")
        cameras = _Cameras(engine, camera_videos(count, size, frames=16))
        cameras.start()
        for _ in range(fill):
            cameras.round()
        tracked_ms, tracked_stages = _timed_rounds(clock, cameras, False, TRACK_STAGES)
        grounded_ms, grounded_stages = _timed_rounds(clock, cameras, True, GROUND_STAGES)
        per_camera = (((REGROUND_EVERY - 1) * tracked_ms + grounded_ms) / REGROUND_EVERY)
        prefix = f"tracked_{count}cam"
        out.update({
            f"{prefix}_round_ms": tracked_ms,
            f"{prefix}_fps_per_camera": 1e3 / tracked_ms,
            f"grounded_{count}cam_round_ms": grounded_ms,
            f"grounded_{count}cam_fps_per_camera": 1e3 / grounded_ms,
            f"{prefix}_fps_per_camera_with_reground_every_{REGROUND_EVERY}": 1e3 / per_camera,
        })
        out["tracking_stages"][f"{count}cam"] = {"tracked": tracked_stages, "grounded": grounded_stages}
        progress(f"  {count} camera(s): tracked {1e3 / tracked_ms:.1f} fps/camera, "
                 f"grounded {1e3 / grounded_ms:.1f} fps/camera")
    return out


ROWS = [
    row
    for count in CAMERA_COUNTS
    for row in (
        (f"tracked frames, {count} camera(s): frames/s per camera", f"tracked_{count}cam_fps_per_camera", "fps"),
        (f"grounded frame, {count} camera(s) at once: frames/s per camera", f"grounded_{count}cam_fps_per_camera",
         "fps"),
        (f"tracked, {count} camera(s), re-grounding every {REGROUND_EVERY}: frames/s per camera",
         f"tracked_{count}cam_fps_per_camera_with_reground_every_{REGROUND_EVERY}", "fps"),
    )
]


def stage_table(runs: list[dict]) -> list[str]:
    """Markdown: per-stage medians (ms per camera frame) of tracked and grounded frames, per run."""
    lines = ["| tracking stage (ms per camera frame) | " + " | ".join(r["precision"] for r in runs) + " |",
             "|---|" + "---|" * len(runs)]
    for count in CAMERA_COUNTS:
        for kind, keys in (("tracked", TRACK_STAGES), ("grounded", GROUND_STAGES)):
            for key in keys:
                cells = []
                for run in runs:
                    value = run.get("tracking_stages", {}).get(f"{count}cam", {}).get(kind, {}).get(key)
                    cells.append("—" if value is None else f"{value:.2f}")
                lines.append(f"| {count} cam, {kind}: {key.removesuffix('_ms')} | " + " | ".join(cells) + " |")
    return lines
