"""Tracking benchmark: tracked frames vs grounded frames vs per-frame grounding, side by side in one run.

A synthetic camera sweep over a real photo (converseg_ros/data/synthetic_video.py: a window sliding and
zooming smoothly, the motion between frames known exactly) is answered two ways, frame by frame:

* tracking (``QueryTracker``): the queries are grounded on the first frame and on every ``--reground``-th
  frame (by request), and propagated by SAM2's memory on the others;
* per-frame grounding (today's continuous query): ``encode_frame`` + ``segment`` on every frame.

It prints the per-frame cost of tracked frames, re-grounded frames and per-frame grounding, the stages of
each, and the masks' consistency between consecutive frames (IoU after undoing the known motion, over the
pixels both frames see) for tracking and for per-frame grounding. Models: ``--model tiny`` (the test
preset) or ``--model full`` (Qwen2.5-VL-3B + LoRA in bf16, SAM2 Hiera-L in fp32, random weights, written
once as a release by bench/engine_benchmark.py's writer). RANDOM WEIGHTS: the masks carry no meaning, so
the consistency figures show the mechanics (tracked masks follow the memory; random per-frame answers
jump), not the quality of the trained model. Not a test: times depend on the machine.

    python bench/tracking_benchmark.py --model tiny --frames 24 --queries 3
    python bench/tracking_benchmark.py --model full --release-dir /tmp/converseg-bench-release --frames 4 \
        --reground 3 --size 360x480 --baseline tracked
    python bench/tracking_benchmark.py --model full --memory-sweep    # a tracked frame as its memory fills
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import time
from pathlib import Path

import numpy as np
import torch

PROMPTS = [
    "segment surfaces safe to place hot items",
    "the cup on the saucer",
    "which part of the cup can I grasp without spilling?",
]


def build_engine(args):
    from converseg_ros.engine import ConverSegEngine

    if args.model == "tiny":
        return ConverSegEngine.from_preset("tiny", device="cpu", precision="fp32")
    from engine_benchmark import make_release, release_spec  # bench/ is the script's directory

    if not (args.release_dir / "COMPLETE").exists():
        shutil.rmtree(args.release_dir, ignore_errors=True)
        args.release_dir.mkdir(parents=True)
        make_release(args.release_dir)
        raise SystemExit("[release] written; re-run to benchmark in a fresh process (memory of the writer freed)")
    return ConverSegEngine.from_preset(release_spec(args.release_dir), device="cpu", precision="bf16")


def timed(fn, *args, **kwargs):
    start = time.perf_counter()
    result = fn(*args, **kwargs)
    return result, (time.perf_counter() - start) * 1e3


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def stage_medians(outputs, keys: tuple[str, ...]) -> str:
    return ", ".join(f"{k.removesuffix('_ms')} {median([o.timings.get(k, 0.0) for o in outputs]):.0f}" for k in keys)


@torch.inference_mode()
def memory_sweep(sam, repeats: int) -> None:
    """A tracked frame's model cost as its memory bank fills: SAM2 image encoder, then memory attention with
    1..num_maskmem spatial memories (the steady state of a long track), decoder input aside. Costs do not
    depend on weight values, so SAM2 alone (random weights) is enough."""
    from converseg_ros.engine.memory import (
        MemoryBank,
        MemoryEntry,
        condition_on_memory,
        encode_memory,
        frame_tokens,
        object_pointers,
    )
    from converseg_ros.modeling.sam2_model import encode_images

    pixels = torch.randn(1, 3, sam.image_size, sam.image_size)
    encode_images(sam, pixels)  # warm-up
    features, encode_ms = timed(encode_images, sam, pixels)
    frame = frame_tokens(sam, features)
    side = sam.image_size // 4
    logits, scores = torch.randn(1, side, side), torch.ones(1)
    (memory, pos), memory_ms = timed(encode_memory, sam, frame, logits, scores, False)
    pointer = object_pointers(sam, torch.randn(1, sam.hidden_dim), scores)
    bank = MemoryBank(sam)
    bank.reset(0, MemoryEntry(memory, pointer))
    print(f"SAM2 image encoder {encode_ms:.0f} ms; memory encoder {memory_ms:.0f} ms")
    for t in range(1, sam.num_maskmem + 1):
        condition_on_memory(sam, frame, [bank], [t], pos)  # warm-up at this size
        times = [timed(condition_on_memory, sam, frame, [bank], [t], pos)[1] for _ in range(repeats)]
        spatial = bank.spatial_count()
        print(f"memory attention, {spatial} spatial memories + {len(bank)} pointers: {median(times):.0f} ms "
              f"= {median(times) / encode_ms:.2f}x the image encoder")
        bank.add(t, MemoryEntry(memory.clone(), pointer.clone()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=["tiny", "full"], default="tiny")
    parser.add_argument("--release-dir", type=Path, default=Path("/tmp/converseg-bench-release"))
    parser.add_argument("--frames", type=int, default=24)
    parser.add_argument("--queries", type=int, default=1, help="tracked queries sharing each frame (1..3)")
    parser.add_argument("--reground", type=int, default=4, help="re-ground (by request) every N-th frame")
    parser.add_argument("--size", default="480x640", help="camera frames, HxW")
    parser.add_argument("--baseline", choices=["all", "tracked"], default="all",
                        help="run per-frame grounding on every frame, or only where the tracker tracked (on its "
                             "grounded frames the tracker's answer is the per-frame answer; saves time at full size)")
    parser.add_argument("--bag", type=Path, help="also write the video as a rosbag2 folder here")
    parser.add_argument("--json", type=Path, help="write the figures as JSON here")
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--memory-sweep", action="store_true",
                        help="only time a tracked frame's SAM2 parts as the memory bank fills (SAM2 alone)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.memory_sweep:
        from converseg_ros.modeling.presets import load_preset, resolve_files
        from converseg_ros.modeling.sam2_model import build_sam2_model

        config = resolve_files(load_preset("tiny")).sam2_config if args.model == "tiny" else "sam2_hiera_l.yaml"
        print(f"model {args.model} ({config}): SAM2 only, random weights, {args.threads} threads")
        memory_sweep(build_sam2_model(config), repeats=2)
        return

    from skimage import data

    from converseg_ros.data.synthetic_video import camera_sweep, consistency_iou
    from converseg_ros.engine.tracking import QueryTracker, TrackingConfig

    height, width = (int(v) for v in args.size.split("x"))
    video = camera_sweep(data.coffee(), n_frames=args.frames, size=(height, width))
    if args.bag:
        from converseg_ros.data.rosbag_writer import write_video_bag

        print(f"bag: {write_video_bag(args.bag, video)}")
    prompts = PROMPTS[: max(1, min(args.queries, len(PROMPTS)))]
    engine, load_ms = timed(build_engine, args)
    print(f"model {args.model}: loaded in {load_ms / 1e3:.1f} s; {os.cpu_count()} cpus, torch {torch.__version__}, "
          f"{args.threads} threads; {len(video)} frames {width}x{height}, {len(prompts)} quer"
          f"{'y' if len(prompts) == 1 else 'ies'}, re-grounding every {args.reground}th frame")

    # warm both paths (memory-mapped weights, kernels) on a small crop: cheap for Qwen, SAM2 sees 1024 px anyway
    warm = QueryTracker(engine, TrackingConfig(min_object_score=-np.inf, min_iou=0.0, reground_every=0))
    warm.track_start(video.frames[-1][:112, :112], "warm up")
    warm.track_step(video.frames[-2][:112, :112])

    # never re-ground on scores: with random weights they are noise; re-grounding is by request
    tracker = QueryTracker(engine, TrackingConfig(min_object_score=-np.inf, min_iou=0.0, reground_every=0))
    first = engine.encode_frame(video.frames[0])
    tracked_ms, grounded_ms, baseline_ms = [], [], []
    tracked_outs, grounded_outs = [], []
    track_masks, ground_masks, was_tracked, agreement = [], [], [], []
    for t, frame in enumerate(video.frames):
        if t == 0:
            results, ms = timed(lambda: [tracker.track_start(first, p) for p in prompts])
            ms += first.timings["encode_ms"]
        else:
            if t % args.reground == 0:
                tracker.request_reground()
            results, ms = timed(tracker.track_step, frame)
        grounded = results[0].grounded
        assert all(r.grounded == grounded for r in results)
        (grounded_ms if grounded else tracked_ms).append(ms)
        (grounded_outs if grounded else tracked_outs).extend(r.output for r in results)
        if grounded and args.baseline == "tracked":  # the grounded answer is the per-frame answer (tested)
            baseline, base_ms = [r.output for r in results], float("nan")
        else:
            baseline, base_ms = timed(engine.segment_image, frame, prompts)
            baseline_ms.append(base_ms)
        if grounded and not np.isnan(base_ms):  # the per-frame answer (up to the prompt batch's float noise)
            agreement.extend(float((r.output.mask == b.mask).mean()) for r, b in zip(results, baseline, strict=True))
        track_masks.append([r.output.mask for r in results])
        ground_masks.append([b.mask for b in baseline])
        was_tracked.append(not grounded)
        print(f"frame {t:2d}: {'grounded' if grounded else 'tracked '} {ms / 1e3:7.2f} s | per-frame grounding "
              f"{base_ms / 1e3:7.2f} s | mask area {np.mean([m.mean() for m in track_masks[-1]]):.3f} tracked, "
              f"{np.mean([m.mean() for m in ground_masks[-1]]):.3f} grounded")

    def consistency(masks: list[list[np.ndarray]], pairs: list[int]) -> float:
        return float(np.mean([consistency_iou(masks[t][q], masks[t + 1][q], video.motion(t))
                              for t in pairs for q in range(len(prompts))]))

    tracked_pairs = [t for t in range(len(video) - 1) if was_tracked[t + 1]]
    all_pairs = list(range(len(video) - 1))
    figures = {
        "model": args.model, "frames": len(video), "size": [height, width], "queries": len(prompts),
        "tracked_frame_ms": median(tracked_ms), "grounded_frame_ms": median(grounded_ms),
        "per_frame_grounding_ms": median(baseline_ms),
        "consistency_tracking": consistency(track_masks, tracked_pairs),
        "consistency_grounding_same_pairs": consistency(ground_masks, tracked_pairs),
        "consistency_grounding_all_pairs": consistency(ground_masks, all_pairs),
        "tracked_frames": len(tracked_ms), "grounded_frames": len(grounded_ms),
    }
    print()
    print(f"tracked frame:   {figures['tracked_frame_ms'] / 1e3:.3f} s median of {len(tracked_ms)} "
          f"(per query: {stage_medians(tracked_outs, ('memory_attention_ms', 'decode_ms', 'memory_encode_ms'))} ms; "
          f"frame: sam_encode {median([o.timings['sam_encode_ms'] for o in tracked_outs]):.0f} ms)")
    print(f"grounded frame:  {figures['grounded_frame_ms'] / 1e3:.3f} s median of {len(grounded_ms)} "
          f"(per query: {stage_medians(grounded_outs, ('qwen_suffix_ms', 'decode_ms', 'memory_encode_ms'))} ms; "
          f"frame: {stage_medians(grounded_outs, ('sam_encode_ms', 'qwen_prefix_ms'))} ms)")
    print(f"per-frame grounding: {figures['per_frame_grounding_ms'] / 1e3:.3f} s median of {len(baseline_ms)}; "
          + (f"grounded frames agree with it on {min(agreement):.4%} of the pixels or more" if agreement else
             "(not run on grounded frames)"))
    tracked = figures["tracked_frame_ms"]
    print(f"RATIO per-frame grounding / tracked frame: {figures['per_frame_grounding_ms'] / tracked:.2f}x")
    print(f"RATIO re-grounded frame / tracked frame: {figures['grounded_frame_ms'] / tracked:.2f}x")
    print(f"consistency (IoU after undoing the known motion, {len(tracked_pairs)} pairs into tracked frames): "
          f"tracking {figures['consistency_tracking']:.3f}, per-frame grounding "
          f"{figures['consistency_grounding_same_pairs']:.3f} (all {len(all_pairs)} pairs: "
          f"{figures['consistency_grounding_all_pairs']:.3f}) - random weights: mechanics, not quality")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
