"""GPU benchmark: full-size ConverSeg-Net (random weights, no download) on CUDA, bf16 and fp32.

Prints and writes (``OUT/gpu_benchmark.json`` and ``.md``, rewritten after every section) per precision:

* per-stage times: SAM2 image encoder, Qwen vision tower, Qwen text prefix, query suffix, mask decoder,
  post-processing (resize, threshold, one host copy, regions);
* first query on a new frame with the two encoders one after the other and overlapped (side stream), and
  their ratio; a query on a cached frame;
* queries/s for batches of 1, 4 and 16 prompts on a cached frame;
* frames/s of the per-frame work (a new frame encoded + one continuous query) at 640x480 and 1280x720;
* tracked queries over 1 and 3 cameras at 640x480, one per camera: frames/s per camera of tracked and of
  grounded frames, SAM2's image encoder run once per frame (bench/gpu_tracking.py);
* the node's serving loop (InferenceWorker + PublishQueue, no DDS) for 1 and 3 cameras with a continuous
  and with a tracked query: answers/s per camera and frame-to-answer latency (bench/gpu_node_loop.py);
* peak GPU memory; torch.compile of SAM2 when the time budget allows.

Every time is a median over ``--iters`` runs after warm-up, with ``torch.cuda.synchronize()`` around each.
``--budget-s`` bounds the run: bf16 first; torch.compile and then fp32 only while the budget allows. A
section that fails is recorded (``errors``) and the others still run; the exit status is then 1.
Run it through ``bench/gpu_benchmark.sh OUT_DIR`` on a CUDA machine. ``--smoke`` runs the same code on the
tiny preset on any device in seconds (a check of the script, not a measurement).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

PROMPTS = [
    "segment surfaces safe to place hot items", "which part of the cup can I grasp without spilling?",
    "the saucer under the cup", "highlight where a robot could put a spoon down",
    "select objects that could spill if tipped over", "segment the wooden table area free of objects",
    "the handle of the cup", "anything that would break if dropped",
]
SIZES = {"640x480": (480, 640), "1280x720": (720, 1280)}


class Clock:
    """Wall time of a callable with device synchronisation before and after (median of ``iters``)."""

    def __init__(self, device: torch.device, iters: int):
        self.device, self.iters = device, iters

    def sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def once(self, fn: Callable[[], object]) -> float:
        self.sync()
        start = time.perf_counter()
        fn()
        self.sync()
        return (time.perf_counter() - start) * 1e3

    def median(self, fn: Callable[[], object], warmup: int = 2) -> float:
        for _ in range(warmup):
            fn()
        return statistics.median(self.once(fn) for _ in range(self.iters))


def camera_frame(size: tuple[int, int]) -> np.ndarray:
    """A real photo (scikit-image's coffee) resized to the camera size (height, width)."""
    import cv2
    from skimage import data

    height, width = size
    return cv2.resize(data.coffee(), (width, height), interpolation=cv2.INTER_AREA)


def build_engine(args: argparse.Namespace, precision: str):
    """The engine under test: full-size random weights on the GPU, or the tiny preset for --smoke."""
    from converseg_ros.engine import ConverSegEngine
    from converseg_ros.modeling.build import PRECISIONS, ConverSegNet, resolve_attention
    from converseg_ros.modeling.presets import load_preset
    from converseg_ros.modeling.qwen_inputs import QwenInputs

    if args.smoke:
        return ConverSegEngine.from_preset("tiny", device=args.device, precision=precision, overlap="off")
    from full_size import random_adapter, random_sam2, write_qwen_dir
    from transformers import AutoProcessor

    dtype = PRECISIONS[precision]
    qwen_dir = write_qwen_dir(Path(tempfile.mkdtemp(prefix="converseg-gpu-bench-")) / "qwen")
    attention = resolve_attention(args.attention, torch.device(args.device), dtype)
    adapter = random_adapter(qwen_dir, dtype, args.device, attention)
    net = ConverSegNet(random_sam2(args.device), adapter, QwenInputs(AutoProcessor.from_pretrained(qwen_dir)),
                       load_preset("converseg-3b"))
    return ConverSegEngine(net.eval(), overlap="off")


def stage_times(engine, clock: Clock, image: np.ndarray) -> dict[str, float]:
    """Median ms of each stage of one frame and one query."""
    from converseg_ros.engine.host import to_host
    from converseg_ros.engine.postprocess import logits_to_image
    from converseg_ros.engine.prefix import encode_prefix, run_suffixes
    from converseg_ros.imaging import letterbox
    from converseg_ros.regions import extract_regions

    net, device = engine.net, engine.device
    qwen = net.adapter.qwen
    square, geometry = letterbox(image, net.image_size)
    inputs = {k: v.to(device) for k, v in net.inputs.prefix(image).items()}
    inputs["pixel_values"] = inputs["pixel_values"].to(net.adapter.txt_norm.weight.dtype)
    frame = engine.encode_frame(image)
    ids, mask = (t.to(device) for t in net.inputs.suffixes([PROMPTS[0]]))
    suffix_out = run_suffixes(qwen, frame.prefix, ids, mask)  # (input_ids, attention_mask, hidden)
    logits = torch.stack([d.logits for d in engine._decode(frame, *suffix_out)])

    def post() -> None:
        full = logits_to_image(logits, geometry)
        masks, probability = to_host(full > engine.logit_threshold, torch.sigmoid(full))
        extract_regions(masks[0], probability[0], 64, 10)

    with torch.inference_mode():
        times = {
            "sam2_encoder_ms": clock.median(lambda: engine._encode_sam(square)),
            "qwen_vision_ms": clock.median(
                lambda: qwen.get_image_features(inputs["pixel_values"], image_grid_thw=inputs["image_grid_thw"])
            ),
            "qwen_prefix_ms": clock.median(lambda: encode_prefix(qwen, inputs)),
            "query_suffix_ms": clock.median(lambda: run_suffixes(qwen, frame.prefix, ids, mask)),
            "decoder_ms": clock.median(lambda: engine._decode(frame, *suffix_out)),
            "postprocess_ms": clock.median(post),
        }
    # derived, not timed: a difference of two medians (noise can make it <= 0 with few --iters)
    times["qwen_text_prefix_ms"] = times["qwen_prefix_ms"] - times["qwen_vision_ms"]
    times["prefix_tokens"] = int(inputs["input_ids"].shape[1])
    return times


def latency(engine, overlapped, clock: Clock, image: np.ndarray) -> dict[str, float]:
    """First query on a new frame (sequential vs overlapped encoders) and a query on a cached frame."""
    prompt = PROMPTS[:1]
    sequential = clock.median(lambda: engine.segment(engine.encode_frame(image), prompt))
    concurrent = clock.median(lambda: overlapped.segment(overlapped.encode_frame(image), prompt))
    frame = engine.encode_frame(image)
    cached = clock.median(lambda: engine.segment(frame, prompt))
    agree = float((engine.segment(frame, prompt)[0].mask == overlapped.segment_image(image, prompt)[0].mask).mean())
    return {
        "first_query_sequential_ms": sequential, "first_query_overlapped_ms": concurrent,
        "overlap_speedup": sequential / concurrent, "cached_query_ms": cached,
        "overlap_mask_agreement": agree,
    }


def throughput(engine, clock: Clock, image: np.ndarray) -> dict[str, float]:
    """Queries per second on a cached frame for batches of 1, 4 and 16 prompts."""
    frame = engine.encode_frame(image)
    out = {}
    for batch in (1, 4, 16):
        prompts = (PROMPTS * 2)[:batch]
        out[f"queries_per_s_batch{batch}"] = batch / (clock.median(lambda p=prompts: engine.segment(frame, p)) / 1e3)
    return out


def node_loop(overlapped, clock: Clock) -> dict[str, float]:
    """Frames/s when every frame is new: encode it and answer one continuous query (the node's loop)."""
    out = {}
    for name, size in SIZES.items():
        image = camera_frame(size)
        out[f"loop_fps_{name}"] = 1e3 / clock.median(
            lambda im=image: overlapped.segment(overlapped.encode_frame(im), PROMPTS[:1], min_region_area=64)
        )
    return out


def compiled(engine, clock: Clock, image: np.ndarray) -> dict[str, float]:
    """The SAM2 encoder and decoder under torch.compile: first-call (compile) time, then stage times.
    Compiles the engine's modules in place, so it runs last."""
    from converseg_ros.engine import ConverSegEngine
    from converseg_ros.imaging import letterbox

    square, _ = letterbox(image, engine.net.image_size)
    fast = ConverSegEngine(engine.net, overlap="off", compile_sam2=True)
    compile_ms = clock.once(lambda: fast.segment_image(image, PROMPTS[:1]))
    frame = fast.encode_frame(image)
    return {
        "compile_first_call_s": compile_ms / 1e3,
        "compiled_sam2_encoder_ms": clock.median(lambda: fast._encode_sam(square)),
        "compiled_cached_query_ms": clock.median(lambda: fast.segment(frame, PROMPTS[:1])),
    }


class Progress:
    """Progress lines with the time since the start, and the report rewritten after every section."""

    def __init__(self, args: argparse.Namespace):
        self.args, self.started, self.runs = args, time.perf_counter(), []
        self.precision = ""

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    def __call__(self, message: str) -> None:
        print(f"[gpu-bench {self.elapsed:6.1f} s] {self.precision}: {message}", flush=True)

    def section(self, result: dict, name: str, fn: Callable[[], dict]) -> None:
        """Run one section into ``result``; a failure is recorded and the run goes on."""
        self(name)
        try:
            result.update(fn())
        except Exception as exc:  # noqa: BLE001 - one broken section must not cost the others' device time
            result.setdefault("errors", {})[name] = f"{type(exc).__name__}: {exc}"
            self(f"FAILED {name}: {type(exc).__name__}: {exc}")
        self.save()

    def save(self) -> dict:
        report = make_report(self.args, self.runs, self.elapsed)
        (self.args.out / "gpu_benchmark.json").write_text(json.dumps(report, indent=2))
        (self.args.out / "gpu_benchmark.md").write_text(markdown(report) + "\n")
        return report


def run_precision(args: argparse.Namespace, precision: str, progress: Progress) -> dict:
    from gpu_node_loop import LoopOptions, node_loops
    from gpu_tracking import CAMERA_PROMPTS, camera_videos, tracked_cameras

    from converseg_ros.engine import ConverSegEngine

    device = torch.device(args.device)
    clock = Clock(device, args.iters)
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    progress.precision = precision
    progress("building the model")
    start = time.perf_counter()
    engine = build_engine(args, precision)
    build_s = time.perf_counter() - start
    overlapped = ConverSegEngine(engine.net, overlap="on")
    image = camera_frame(SIZES["640x480"])
    engine.warmup(image.shape[:2])
    overlapped.warmup(image.shape[:2])
    result = {"precision": precision, "build_s": build_s}
    progress.runs.append(result)
    size = SIZES["640x480"]
    loop = LoopOptions(camera_hz=args.camera_hz, min_seconds=args.loop_seconds) if not args.smoke else \
        LoopOptions(camera_hz=args.camera_hz, warm=1, measured=2, min_seconds=0.0, timeout_s=300.0)
    sections = [
        ("per-stage times", lambda: stage_times(engine, clock, image)),
        ("first and cached query", lambda: latency(engine, overlapped, clock, image)),
        ("queries/s on a cached frame", lambda: throughput(engine, clock, image)),
        ("per-frame work at 640x480 and 1280x720", lambda: node_loop(overlapped, clock)),
        ("tracked queries over cameras", lambda: tracked_cameras(overlapped, clock, size, progress)),
        ("node serving loop", lambda: node_loops(overlapped, camera_videos(3, size, 16), CAMERA_PROMPTS, loop,
                                                 progress)),
    ]
    for name, fn in sections:
        progress.section(result, name, fn)
    if device.type == "cuda":
        result["peak_gpu_memory_gib"] = torch.cuda.max_memory_allocated(device) / 2**30
    result["seconds_without_compile"] = time.perf_counter() - start
    if args.compile and args.budget_s - progress.elapsed >= args.compile_reserve_s:
        progress.section(result, "torch.compile of SAM2", lambda: compiled(engine, clock, image))
    elif args.compile:
        progress(f"torch.compile skipped: {args.budget_s - progress.elapsed:.0f} s of the budget left")
    engine.close()
    overlapped.close()
    progress(json.dumps(result, indent=1))
    progress.save()
    return result


ROWS = [
    ("SAM2 image encoder", "sam2_encoder_ms", "ms"), ("Qwen vision tower", "qwen_vision_ms", "ms"),
    ("Qwen text prefix", "qwen_text_prefix_ms", "ms"), ("query suffix (1 prompt)", "query_suffix_ms", "ms"),
    ("mask decoder", "decoder_ms", "ms"), ("post-processing", "postprocess_ms", "ms"),
    ("first query, encoders one after the other", "first_query_sequential_ms", "ms"),
    ("first query, encoders overlapped", "first_query_overlapped_ms", "ms"),
    ("overlap speed-up", "overlap_speedup", "x"), ("cached-frame query", "cached_query_ms", "ms"),
    ("queries/s, batch 1", "queries_per_s_batch1", "/s"), ("queries/s, batch 4", "queries_per_s_batch4", "/s"),
    ("queries/s, batch 16", "queries_per_s_batch16", "/s"),
    ("new frame + 1 query, one thread, 640x480", "loop_fps_640x480", "fps"),
    ("new frame + 1 query, one thread, 1280x720", "loop_fps_1280x720", "fps"),
    ("peak GPU memory", "peak_gpu_memory_gib", "GiB"),
    ("torch.compile: first call (compiling)", "compile_first_call_s", "s"),
    ("torch.compile: SAM2 image encoder", "compiled_sam2_encoder_ms", "ms"),
    ("torch.compile: cached-frame query", "compiled_cached_query_ms", "ms"),
]


def markdown(report: dict) -> str:
    from gpu_node_loop import ROWS as LOOP_ROWS
    from gpu_tracking import ROWS as TRACK_ROWS
    from gpu_tracking import stage_table

    runs = report["runs"]
    if not runs:
        return ""
    tokens = runs[0].get("prefix_tokens", "?")
    lines = [f"| 640x480 frame ({tokens} Qwen prefix tokens) | " + " | ".join(r["precision"] for r in runs) + " |",
             "|---|" + "---|" * len(runs)]
    for label, key, unit in ROWS[:-4] + TRACK_ROWS + LOOP_ROWS + ROWS[-4:]:
        cells = [f"{r[key]:.2f} {unit}" if key in r else "—" for r in runs]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines += ["", *stage_table(runs)]
    for run in runs:
        for name, error in run.get("errors", {}).items():
            lines.append(f"\n{run['precision']}: **{name} failed**: {error}")
    return "\n".join(lines)


def make_report(args: argparse.Namespace, runs: list[dict], seconds: float) -> dict:
    return {
        "what": "smoke check on the tiny preset (not a measurement)" if args.smoke else
                "full-size ConverSeg-Net (Qwen2.5-VL-3B + SAM2 Hiera-L), random weights",
        "device": torch.cuda.get_device_name(args.device) if args.device.startswith("cuda")
        else f"{platform.machine()} CPU, {os.cpu_count()} cores",
        "torch": torch.__version__, "date": time.strftime("%Y-%m-%d"), "iters": args.iters,
        "command": " ".join(sys.argv), "seconds": seconds, "runs": runs,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for gpu_benchmark.json/.md")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--precisions", default="bf16,fp32", help="in this order; later ones only if time remains")
    parser.add_argument("--iters", type=int, default=20, help="timed runs per measurement (median)")
    parser.add_argument("--attention", default="auto", help="Qwen attention (auto, sdpa, flash_attention_2, eager)")
    parser.add_argument("--smoke", action="store_true", help="tiny preset, a check of this script only")
    parser.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                        help="also time torch.compile of SAM2 (default: on CUDA, off with --smoke)")
    parser.add_argument("--camera-hz", type=float, default=30.0, help="camera rate in the node-loop section")
    parser.add_argument("--loop-seconds", type=float, default=6.0, help="measuring window per node-loop run")
    parser.add_argument("--budget-s", type=float, default=400.0,
                        help="run torch.compile and further precisions only while this many seconds are not spent")
    parser.add_argument("--compile-reserve-s", type=float, default=150.0,
                        help="budget that must be left to start torch.compile")
    args = parser.parse_args()
    if args.compile is None:
        args.compile = args.device.startswith("cuda") and not args.smoke
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        sys.exit("gpu_benchmark: no CUDA device (use --smoke --device cpu to check the script)")
    args.out.mkdir(parents=True, exist_ok=True)
    progress = Progress(args)
    last_s = 0.0
    for k, precision in enumerate(args.precisions.split(",")):
        left = args.budget_s - progress.elapsed
        if k and left < 1.3 * last_s:  # fp32 is the slower one
            progress(f"{precision} skipped: {left:.0f} s of the budget left, the last precision took {last_s:.0f} s")
            continue
        last_s = run_precision(args, precision, progress)["seconds_without_compile"]
    report = progress.save()
    print(f"\n{report['what']} on {report['device']}, torch {report['torch']}, {report['date']}, "
          f"{report['seconds']:.0f} s\n{markdown(report)}")
    if any(run.get("errors") for run in report["runs"]):
        sys.exit("gpu_benchmark: some sections failed (see errors in gpu_benchmark.json)")


if __name__ == "__main__":
    main()
