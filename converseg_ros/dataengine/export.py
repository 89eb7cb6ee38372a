"""Export kept samples to what ``converseg-train`` (``dataset.jsonl``) and ``converseg-eval`` (``items.json``) read.

Images are written once per input as PNG of the exact pixels the masks were made on (EXIF orientation
applied), so every image and mask match in size; masks are 0/255 PNGs named by sample id. Paths in each
file are relative to that file's folder. Each row keeps its concept family (``concept``) and sub-type.
"""

from __future__ import annotations

import json
import os
import shutil
from collections import Counter
from pathlib import Path

import cv2

from converseg_ros.dataengine.samples import Decisions, collect_samples, expand_runs
from converseg_ros.imaging import decode_image
from converseg_ros.modeling.atomic import atomic_write_bytes


def _rel(path: Path, base: Path) -> str:
    return Path(os.path.relpath(path, base)).as_posix()


def export_runs(
    runs: list[str | Path], train: str | Path | None, items: str | Path | None, assets: str | Path | None = None,
    require_review: bool = False, negatives: bool = True, dataset_name: str | None = None,
) -> dict:
    """Write the files asked for; returns counts (exported, skipped by reason)."""
    if not train and not items:
        raise ValueError("give --train and/or --items")
    stores = expand_runs(runs)
    targets = [Path(p).resolve() for p in (train, items) if p]
    assets = Path(assets).resolve() if assets else targets[0].parent
    (assets / "images").mkdir(parents=True, exist_ok=True)
    (assets / "masks").mkdir(parents=True, exist_ok=True)
    records, inputs, problems = collect_samples(stores)
    decisions = Decisions(stores)
    skipped: Counter[str] = Counter()
    rows, written_images = [], {}
    for record in records:
        decision = decisions.get(record)
        if not decisions.keep(record, require_review):
            reason = ("rejected in review" if decision == "reject" else
                      "not reviewed" if require_review else "rejected by the verifier")
            skipped[reason] += 1
            continue
        if record.data["negative"] and not negatives:
            skipped["hard negative (--no-negatives)"] += 1
            continue
        image = written_images.get(record.image_id)
        if image is None:
            image = assets / "images" / f"{record.image_id}.png"
            if not image.is_file():
                rgb = decode_image(record.image_path(inputs))
                ok, buf = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
                atomic_write_bytes(image, buf.tobytes())
            written_images[record.image_id] = image
        mask = assets / "masks" / f"{record.id}.png"
        shutil.copyfile(record.mask_path, mask)
        rows.append((record, image, mask, decision))
    if train:
        base = Path(train).resolve().parent
        lines = [
            json.dumps({"image": _rel(img, base), "mask_merged": _rel(mask, base), "prompt": r.data["prompt"],
                        "concept": r.data["family"], "subconcept": r.data["subtype"], "id": r.id})
            for r, img, mask, _ in rows
        ]
        atomic_write_bytes(Path(train), ("\n".join(lines) + ("\n" if lines else "")).encode())
    if items:
        base = Path(items).resolve().parent
        entries = [
            {"id": r.id, "image": _rel(img, base), "mask": _rel(mask, base), "prompt": r.data["prompt"],
             "concept": r.data["family"], "subconcept": r.data["subtype"], "verifier": r.data["verdict"],
             "review": decision}
            for r, img, mask, decision in rows
        ]
        name = dataset_name or Path(items).resolve().parent.name
        payload = {"dataset": name, "count": len(entries), "items": entries}
        atomic_write_bytes(Path(items), json.dumps(payload, indent=1).encode())
    return {
        "exported": len(rows),
        "images": len(written_images),
        "by_concept": dict(Counter(r.data["family"] for r, *_ in rows)),
        "skipped": dict(skipped),
        "problems": problems,
    }
