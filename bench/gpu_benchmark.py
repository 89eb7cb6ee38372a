"""GPU benchmark: full-size ConverSeg-Net (random weights, no download) on CUDA, bf16 and fp32.

Prints and writes (``OUT/gpu_benchmark.json`` and ``.md``) per precision:

* per-stage times: SAM2 image encoder, Qwen vision tower, Qwen text prefix, query suffix, mask decoder,
  post-processing (resize, threshold, one host copy, regions);
* first query on a new frame with the two encoders one after the other and overlapped (side stream), and
  their ratio; a query on a cached frame;
* queries/s for batches of 1, 4 and 16 prompts on a cached frame;
* frames/s of the node's per-frame loop (a new frame encoded + one continuous query) at 640x480 and
  1280x720;
* peak GPU memory.

Every time is a median over ``--iters`` runs after warm-up, with ``torch.cuda.synchronize()`` around each.
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


def run_precision(args: argparse.Namespace, precision: str) -> dict:
    from converseg_ros.engine import ConverSegEngine

    device = torch.device(args.device)
    clock = Clock(device, args.iters)
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    start = time.perf_counter()
    engine = build_engine(args, precision)
    build_s = time.perf_counter() - start
    overlapped = ConverSegEngine(engine.net, overlap="on")
    image = camera_frame(SIZES["640x480"])
    engine.warmup(image.shape[:2])
    overlapped.warmup(image.shape[:2])
    result = {"precision": precision, "build_s": build_s}
    result.update(stage_times(engine, clock, image))
    result.update(latency(engine, overlapped, clock, image))
    result.update(throughput(engine, clock, image))
    result.update(node_loop(overlapped, clock))
    if args.compile:
        result.update(compiled(engine, clock, image))
    if device.type == "cuda":
        result["peak_gpu_memory_gib"] = torch.cuda.max_memory_allocated(device) / 2**30
    engine.close()
    overlapped.close()
    return result


ROWS = [
    ("SAM2 image encoder", "sam2_encoder_ms", "ms"), ("Qwen vision tower", "qwen_vision_ms", "ms"),
    ("Qwen text prefix", "qwen_text_prefix_ms", "ms"), ("query suffix (1 prompt)", "query_suffix_ms", "ms"),
    ("mask decoder", "decoder_ms", "ms"), ("post-processing", "postprocess_ms", "ms"),
    ("first query, encoders one after the other", "first_query_sequential_ms", "ms"),
    ("first query, encoders overlapped", "first_query_overlapped_ms", "ms"),
    ("overlap speed-up", "overlap_speedup", "x"), ("cached-frame query", "cached_query_ms", "ms"),
    ("queries/s, batch 1", "queries_per_s_batch1", "/s"), ("queries/s, batch 4", "queries_per_s_batch4", "/s"),
    ("queries/s, batch 16", "queries_per_s_batch16", "/s"), ("node loop 640x480", "loop_fps_640x480", "fps"),
    ("node loop 1280x720", "loop_fps_1280x720", "fps"), ("peak GPU memory", "peak_gpu_memory_gib", "GiB"),
    ("torch.compile: first call (compiling)", "compile_first_call_s", "s"),
    ("torch.compile: SAM2 image encoder", "compiled_sam2_encoder_ms", "ms"),
    ("torch.compile: cached-frame query", "compiled_cached_query_ms", "ms"),
]


def markdown(report: dict) -> str:
    runs = report["runs"]
    lines = [f"| 640x480 frame ({runs[0]['prefix_tokens']} Qwen prefix tokens) | "
             + " | ".join(r["precision"] for r in runs) + " |", "|---|" + "---|" * len(runs)]
    for label, key, unit in ROWS:
        cells = [f"{r[key]:.2f} {unit}" if key in r else "—" for r in runs]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for gpu_benchmark.json/.md")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--precisions", default="bf16,fp32")
    parser.add_argument("--iters", type=int, default=20, help="timed runs per measurement (median)")
    parser.add_argument("--attention", default="auto", help="Qwen attention (auto, sdpa, flash_attention_2, eager)")
    parser.add_argument("--smoke", action="store_true", help="tiny preset, a check of this script only")
    parser.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                        help="also time torch.compile of SAM2 (default: on CUDA, off with --smoke)")
    args = parser.parse_args()
    if args.compile is None:
        args.compile = args.device.startswith("cuda") and not args.smoke
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        sys.exit("gpu_benchmark: no CUDA device (use --smoke --device cpu to check the script)")
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    runs = []
    for precision in args.precisions.split(","):
        runs.append(run_precision(args, precision))
        print(json.dumps(runs[-1], indent=1), flush=True)
    report = {
        "what": "smoke check on the tiny preset (not a measurement)" if args.smoke else
                "full-size ConverSeg-Net (Qwen2.5-VL-3B + SAM2 Hiera-L), random weights",
        "device": torch.cuda.get_device_name(args.device) if args.device.startswith("cuda")
        else f"{platform.machine()} CPU, {os.cpu_count()} cores",
        "torch": torch.__version__, "date": time.strftime("%Y-%m-%d"), "iters": args.iters,
        "seconds": time.perf_counter() - started, "runs": runs,
    }
    (args.out / "gpu_benchmark.json").write_text(json.dumps(report, indent=2))
    table = markdown(report)
    (args.out / "gpu_benchmark.md").write_text(table + "\n")
    print(f"\n{report['what']} on {report['device']}, torch {report['torch']}, {report['date']}, "
          f"{report['seconds']:.0f} s\n{table}")


if __name__ == "__main__":
    main()
