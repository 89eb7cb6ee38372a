"""Stage 2 — mask generation: each region's box -> SAM2 masks (no VLM call, so no prompt template).

SAM2 gives an *initial* mask (the single-mask output) and a *refined* candidate (its best-scored
multimask output); stage 3 verifies the initial one and may prefer the refined one. Masks are written at
the original image's resolution, so exported images and masks always match in size.
"""

from __future__ import annotations

import numpy as np

from converseg_ros.dataengine.stages.context import StageContext

NAME = "sam2_masks"
SCHEMA = None  # no VLM call in this stage


def iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0


def run(ctx: StageContext, previous: dict) -> dict:
    regions_in = previous["captions"]["regions"]
    if ctx.segmenter is None:
        raise RuntimeError("stage 2 needs a SAM2 segmenter")
    results = ctx.segmenter.segment(ctx.rgb, [r["box"] for r in regions_in])
    regions, dropped = [], []
    for region, masks in zip(regions_in, results, strict=True):
        area = int(masks.initial.sum())
        if area < ctx.settings.min_region_pixels:
            dropped.append({"index": region["index"], "label": region["label"],
                            "reason": f"SAM2 mask of {area} pixels is below the minimum"})
            continue
        k = region["index"]
        regions.append({
            **region,
            "initial": ctx.files.write_mask(f"masks/r{k:02d}_initial.png", masks.initial),
            "refined": ctx.files.write_mask(f"masks/r{k:02d}_refined.png", masks.refined),
            "area_initial": area,
            "area_refined": int(masks.refined.sum()),
            "score_initial": round(masks.iou_initial, 4),
            "score_refined": round(masks.iou_refined, 4),
            "agreement": round(iou(masks.initial, masks.refined), 4),
        })
    return {"regions": regions, "dropped": dropped}
