"""Turn a robot log into a dataset folder: frames, optional masks and the reference ``dataset.jsonl``.

Masks come from a mono image topic (labelling tools republish the camera stamp); each mask is paired with the
frame of the same image topic whose stamp is nearest, within ``tolerance_ms``. Prompts come from a fixed
string or a ``std_msgs/String`` topic (latest prompt at or before the frame).
"""

from __future__ import annotations

import json
import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from converseg_ros.data.robot_logs import RobotLogError, iter_messages


@dataclass
class ExtractSummary:
    """What was written: frame count, labelled pairs, and skipped messages by reason."""

    frames: int = 0
    labelled: int = 0
    skipped: dict[str, int] = field(default_factory=dict)

    def skip(self, reason: str) -> None:
        self.skipped[reason] = self.skipped.get(reason, 0) + 1


@dataclass
class ExtractOptions:
    """Topics and sampling for ``extract_frames``."""

    image_topics: list[str]
    mask_topic: str | None = None
    prompt: str | None = None
    prompt_topic: str | None = None
    every: int = 1
    max_frames: int | None = None
    tolerance_ms: float = 50.0


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "_", text).strip("_")


def extract_frames(log: str | Path, out_dir: str | Path, opts: ExtractOptions) -> ExtractSummary:
    """Write ``images/`` and ``frames.jsonl`` (+ ``masks/``, ``dataset.jsonl``, ``items.json``) to out_dir."""
    if opts.mask_topic and not (opts.prompt or opts.prompt_topic):
        raise RobotLogError("a mask topic needs --prompt or --prompt-topic to form training triplets")
    if len(opts.image_topics) != 1 and opts.mask_topic:
        raise RobotLogError("masks pair with exactly one image topic")
    out, log = Path(out_dir), Path(log)
    (out / "images").mkdir(parents=True, exist_ok=True)
    pending = out / ".pending_masks"  # masks wait on disk (not in memory) until every frame is known
    topics = list(opts.image_topics) + [t for t in (opts.mask_topic, opts.prompt_topic) if t]
    summary, counters = ExtractSummary(), dict.fromkeys(opts.image_topics, 0)
    frames: dict[int, _Frame | None] = {}  # stamp of every frame seen -> the kept frame, or None
    masks: list[tuple[int, Path, tuple[int, int]]] = []
    prompt = opts.prompt
    frame_lines = []
    for msg in iter_messages(log, topics):
        if msg.topic == opts.prompt_topic:
            prompt = str(msg.value)
        elif msg.topic == opts.mask_topic:
            pending.mkdir(exist_ok=True)
            path = pending / f"{len(masks):08d}.png"
            cv2.imwrite(str(path), np.where(msg.value > 0, 255, 0).astype(np.uint8))
            masks.append((msg.stamp_ns, path, msg.value.shape[:2]))
        elif isinstance(msg.value, np.ndarray):
            counters[msg.topic] += 1
            full = opts.max_frames is not None and summary.frames >= opts.max_frames
            if (counters[msg.topic] - 1) % opts.every or full:
                frames.setdefault(msg.stamp_ns, None)
                continue
            name = f"{_slug(log.stem)}_{_slug(msg.topic)}_{msg.stamp_ns}"
            rgb = msg.value if msg.value.ndim == 3 else np.repeat(msg.value[..., None], 3, axis=2)
            cv2.imwrite(str(out / "images" / f"{name}.png"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
            frames[msg.stamp_ns] = _Frame(name, prompt or "", rgb.shape[:2])
            frame_lines.append({"image": f"images/{name}.png", "topic": msg.topic, "stamp_ns": msg.stamp_ns})
            summary.frames += 1
    if summary.frames == 0:
        raise RobotLogError(f"{log}: no frames on {opts.image_topics}")
    _write_jsonl(out / "frames.jsonl", frame_lines)
    if opts.mask_topic:
        _pair_masks(out, frames, masks, opts.tolerance_ms, summary)
        shutil.rmtree(pending, ignore_errors=True)
    return summary


@dataclass(frozen=True)
class _Frame:
    name: str
    prompt: str
    shape: tuple[int, int]


def _pair_masks(
    out: Path,
    frames: dict[int, _Frame | None],
    masks: list[tuple[int, Path, tuple[int, int]]],
    tolerance_ms: float,
    summary: ExtractSummary,
) -> None:
    """Pair each mask with the frame of nearest stamp (among all frames, kept or not)."""
    (out / "masks").mkdir(exist_ok=True)
    stamps = np.array(sorted(frames), dtype=np.int64)
    rows, items, used = [], [], set()
    for stamp, path, shape in masks:
        nearest = int(stamps[np.abs(stamps - stamp).argmin()])
        frame = frames[nearest]
        if abs(nearest - stamp) > tolerance_ms * 1e6:
            summary.skip("mask without a frame within tolerance")
        elif frame is None:
            summary.skip("mask of a frame not kept (--every / --max-frames)")
        elif nearest in used:
            summary.skip("second mask for one frame")
        elif not frame.prompt:
            summary.skip("frame before the first prompt")
        elif frame.shape != shape:
            summary.skip("mask size differs from frame size")
        else:
            used.add(nearest)
            image, mask = f"images/{frame.name}.png", f"masks/{frame.name}.png"
            os.replace(path, out / mask)
            rows.append({"image": image, "mask_merged": mask, "prompt": frame.prompt})
            items.append({"id": frame.name, "image": image, "mask": mask, "prompt": frame.prompt})
            summary.labelled += 1
    _write_jsonl(out / "dataset.jsonl", rows)
    (out / "items.json").write_text(
        json.dumps({"dataset": out.name, "count": len(items), "items": items}, indent=1), encoding="utf-8"
    )


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
