"""Run the engine over a dataset split: one encoding per image shared by its prompts, per-item scores,
optional prediction PNGs and panels. A bad item (corrupt file, size mismatch) is recorded, not fatal."""

from __future__ import annotations

import hashlib
import re
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from converseg_ros.data.concepts import concept_family
from converseg_ros.data.samples import Sample
from converseg_ros.engine import ConverSegEngine
from converseg_ros.errors import ConverSegError
from converseg_ros.evaluation.metrics import ItemScore, SplitMetrics, score_item
from converseg_ros.evaluation.panels import panel_row, write_png
from converseg_ros.imaging import decode_image

PROMPTS_PER_PASS = 8  # prompts of one image answered in one batched Qwen pass


@dataclass
class ItemResult:
    """One row of ``items.jsonl``."""

    id: str
    split: str
    concept: str | None
    family: str
    prompt: str
    iou: float | None = None
    intersection: int | None = None
    union: int | None = None
    score: float | None = None
    error: str | None = None


def _image_key(sample: Sample) -> str:
    if isinstance(sample.image, bytes):
        return hashlib.sha1(sample.image).hexdigest()
    return str(sample.image)


def safe_name(item_id: str) -> str:
    """A file-name-safe version of an item id."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", item_id).strip("_") or "item"


def evaluate_split(
    engine: ConverSegEngine, samples: list[Sample], split: str, save_dir: Path | None = None
) -> tuple[SplitMetrics, list[ItemResult]]:
    """Score every sample of one split with ``engine`` (its decode mode and threshold)."""
    groups: OrderedDict[str, list[Sample]] = OrderedDict()
    for sample in samples:
        groups.setdefault(_image_key(sample), []).append(sample)
    metrics, results = SplitMetrics(), []
    if save_dir is not None:
        save_dir.mkdir(parents=True, exist_ok=True)
    with tqdm(total=len(samples), desc=f"eval {split}", unit="item", dynamic_ncols=True) as bar:
        for members in groups.values():
            for item in _evaluate_image(engine, members, split, save_dir):
                results.append(item)
                if item.error is None:
                    metrics.add(ItemScore(item.id, item.family, item.intersection, item.union))
                else:
                    metrics.failed.append(f"{item.id}: {item.error}")
                bar.update(1)
    return metrics, results


def _evaluate_image(
    engine: ConverSegEngine, members: list[Sample], split: str, save_dir: Path | None
) -> list[ItemResult]:
    def result(sample: Sample, **kw) -> ItemResult:
        return ItemResult(
            sample.id, split, sample.concept, concept_family(sample.concept), sample.prompt, **kw
        )

    try:
        rgb = decode_image(members[0].image)
        frame = engine.encode_frame(rgb)
    except ConverSegError as exc:
        return [result(s, error=str(exc)) for s in members]
    targets: dict[str, tuple] = {}
    out: dict[str, ItemResult] = {}
    for sample in members:
        try:
            targets[sample.id] = sample.load_target(rgb.shape[:2])
        except (ConverSegError, ValueError) as exc:
            out[sample.id] = result(sample, error=str(exc))
    todo = [s for s in members if s.id in targets]
    for start in range(0, len(todo), PROMPTS_PER_PASS):
        chunk = todo[start : start + PROMPTS_PER_PASS]
        try:
            outputs = engine.segment(frame, [s.prompt for s in chunk])
        except ConverSegError as exc:
            out.update({s.id: result(s, error=str(exc)) for s in chunk})
            continue
        for sample, pred in zip(chunk, outputs, strict=True):
            gt, ignore = targets[sample.id]
            score = score_item(sample.id, pred.mask, gt, sample.concept, ignore)
            out[sample.id] = result(
                sample, iou=score.iou, intersection=score.intersection, union=score.union, score=pred.score
            )
            if save_dir is not None:
                name = safe_name(sample.id)
                write_png(save_dir / f"{name}_pred.png", pred.mask.astype(np.uint8) * 255)
                write_png(
                    save_dir / f"{name}_panel.png", panel_row(rgb, gt, pred.mask, sample.prompt, score.iou)
                )
    return [out[s.id] for s in members]
