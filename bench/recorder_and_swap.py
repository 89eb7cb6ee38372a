"""The hard-case recorder's cost and the hot swap's gap and memory, on the node's serving core (no DDS), side by
side in one run (not a test).

A camera thread puts a real photo (scikit-image's coffee, resized to --size) on the worker every 1/--rate s;
a continuous and a tracked query run on it through the InferenceWorker with the node's publishing thread.

* recorder: --blocks pairs of --block-s blocks, off then on (on: every answer recorded, min_interval_s 0, the
  worst case); per answer the model time (the frame's encoding + the language pass) and the publication
  latency (published - put on the camera); medians per arm, their ratio, and the median of the pairs' ratios
  (what a shared machine's drifting load disturbs least).
* swap: the ModelKeeper swaps to the second release (--release-b; default a tiny model with seed 1) and back,
  in ``both`` and ``pause`` mode: load and warm-up time, memory before / peak / after (resident; on CUDA torch's
  allocated memory and its peak) and the gap (camera frames and ms between the old model's last answer and the
  new one's first).

    . .venv/bin/activate && python bench/recorder_and_swap.py                      # tiny, CPU
    python bench/recorder_and_swap.py --preset converseg-3b --release-b releases/v2 --device cuda --size 640x480
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import threading
import time
from pathlib import Path

import numpy as np


def photo(size: tuple[int, int]) -> np.ndarray:
    import cv2
    import skimage.data

    return np.ascontiguousarray(cv2.resize(skimage.data.coffee(), size, interpolation=cv2.INTER_AREA))


class Bench:
    def __init__(self, args: argparse.Namespace, root: Path) -> None:
        from converseg_ros.serving.book import QueryBook
        from converseg_ros.serving.camera import CameraFeed
        from converseg_ros.serving.model import ModelRequest
        from converseg_ros.serving.plain_frame import decode
        from converseg_ros.serving.recording.recorder import HardCaseRecorder
        from converseg_ros.serving.recording.settings import RecordSettings
        from converseg_ros.serving.settings import WorkerSettings
        from converseg_ros.serving.swap import ModelKeeper
        from converseg_ros.serving.worker import InferenceWorker

        w, h = (int(v) for v in args.size.split("x"))
        self.rgb, self.rate = photo((w, h)), args.rate
        self.answers: list[tuple[float, float, str]] = []  # (model ms, latency ms, model) per answer
        self.reports: list = []
        self._lock = threading.Lock()
        self.recording = False
        self.recorder = HardCaseRecorder(RecordSettings(True, str(root / "records"), min_score=1.01,
                                                        min_interval_s=0.0, chunk_s=5.0))
        self.worker = InferenceWorker([CameraFeed("")], QueryBook([""]), decode, self._publish,
                                      WorkerSettings(max_image_age_s=0.0))
        self.keeper = ModelKeeper(self.worker, self.reports.append, warmup=True)
        opts = {"device": args.device, "precision": args.precision}
        self.a = ModelRequest(args.preset, **opts)
        self.b = ModelRequest(args.preset, **opts, release=str(args.release_b))
        model = self.keeper.load(self.a)
        self.worker.start(model.engine, model.label)
        self._stop = threading.Event()
        self._camera = threading.Thread(target=self._run_camera, daemon=True)
        self._camera.start()

    def _run_camera(self) -> None:
        from converseg_ros.serving.plain_frame import Header, PlainFrame, Stamp

        seq = 0
        while not self._stop.wait(1.0 / self.rate):
            seq += 1
            now = time.time_ns()
            msg = PlainFrame(self.rgb, Header(f"f{seq}", Stamp.from_ns(now)))
            self.worker.feed("").slot.put(msg, now, now)

    def _publish(self, batch) -> None:  # noqa: ANN001 - the node's publishing thread
        self.keeper.observe(batch)
        if self.recording:
            self.recorder.offer(batch)
        latency = (time.time_ns() - batch.frame.stamp_ns) / 1e6
        with self._lock:
            for outcome in batch.outcomes:
                if outcome.query.id == "c" and outcome.error is None:
                    self.answers.append((batch.encode_ms + batch.segment_ms, latency, batch.model))

    def queries(self) -> None:
        from converseg_ros.serving.queries import MODE_TRACK, Query

        self.worker.set_continuous(Query("c", "the cup on the saucer", time.time_ns()))
        self.worker.start_track(Query("t", "the saucer", time.time_ns(), MODE_TRACK))

    def block(self, seconds: float) -> list[tuple[float, float, str]]:
        with self._lock:
            start = len(self.answers)
        time.sleep(seconds)
        with self._lock:
            return self.answers[start:]

    def recorder_section(self, blocks: int, block_s: float) -> dict:
        self.recorder.start()
        arms: dict[str, list] = {"off": [], "on": []}
        pairs = []
        for _ in range(blocks):
            pair = {}
            for arm in ("off", "on"):
                self.recording = arm == "on"
                time.sleep(0.3)
                pair[arm] = self.block(block_s)
                arms[arm] += pair[arm]
            if pair["off"] and pair["on"]:
                pairs.append(statistics.median(a[0] for a in pair["on"]) / statistics.median(a[0] for a in pair["off"]))
        self.recording = False
        self.recorder.stop()
        med = {arm: (statistics.median(a[0] for a in v), statistics.median(a[1] for a in v)) for arm, v in arms.items()}
        status = self.recorder.status()
        return {"answers": {k: len(v) for k, v in arms.items()},
                "model_ms": {k: round(v[0], 1) for k, v in med.items()},
                "latency_ms": {k: round(v[1], 1) for k, v in med.items()},
                "ratio_model_pooled": round(med["on"][0] / med["off"][0], 3),
                "ratio_model_pairs_median": round(statistics.median(pairs), 3),
                "ratio_latency": round(med["on"][1] / med["off"][1], 3),
                "records": status.records, "dropped_busy": status.dropped_busy, "errors": status.errors,
                "recorder_cpu_ms_per_record": round(1e3 * status.cpu_s / max(1, status.records), 2)}

    def swap(self, request, mode: str) -> dict:  # noqa: ANN001
        self.reports.clear()
        self.block(2.0)
        assert self.keeper.swap(request, mode) is None
        deadline = time.monotonic() + 900
        while not any(r.state == "failed" or r.gap_frames >= 0 for r in self.reports):
            assert time.monotonic() < deadline, self.reports
            time.sleep(0.1)
        r = [r for r in self.reports if r.state == "failed" or r.gap_frames >= 0][-1]
        return {"mode": mode, "to": r.model, "state": r.state, "load_s": r.load_s, "warmup_s": r.warmup_s,
                "gap_frames": r.gap_frames, "gap_ms": r.gap_ms, "memory_mb": r.memory, "message": r.message}

    def close(self) -> None:
        self._stop.set()
        self.worker.stop()
        self.keeper.free()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="tiny")
    p.add_argument("--release-b", help="the release swapped to (default: a tiny model with seed 1)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--precision", default="auto")
    p.add_argument("--size", default="160x120", help="camera frame WxH")
    p.add_argument("--rate", type=float, default=10.0, help="camera frames per second")
    p.add_argument("--blocks", type=int, default=10, help="off/on block pairs")
    p.add_argument("--block-s", type=float, default=2.5)
    p.add_argument("--out", help="write the figures here as JSON")
    args = p.parse_args()
    root = Path(tempfile.mkdtemp(prefix="converseg-recorder-swap-"))
    if args.release_b is None:
        from converseg_ros.modeling.tiny import build_tiny_files

        args.release_b = build_tiny_files(root / "tiny_b", seed=1)
    bench = Bench(args, root)
    try:
        bench.queries()
        bench.block(3.0)
        figures = {"command": " ".join(["python bench/recorder_and_swap.py", f"--preset {args.preset}",
                                        f"--device {args.device}", f"--size {args.size}", f"--rate {args.rate:g}"]),
                   "recorder": bench.recorder_section(args.blocks, args.block_s),
                   "swap": [bench.swap(bench.b, "both"), bench.swap(bench.a, "both"), bench.swap(bench.b, "pause"),
                            bench.swap(bench.a, "pause")]}
    finally:
        bench.close()
    text = json.dumps(figures, indent=1)
    print(text)
    if args.out:
        Path(args.out).write_text(text)


if __name__ == "__main__":
    main()
