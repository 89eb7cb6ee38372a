"""Export kept samples to what ``converseg-train`` (``dataset.jsonl``) and ``converseg-eval`` (``items.json``) read,
split so that no episode (or image, or scene) is on both sides.

Images are written once per input as PNG of the exact pixels the masks were made on (EXIF orientation
applied), so every image and mask match in size; masks are 0/255 PNGs named by sample id (ids are checked
before they name a file). Paths in each file are relative to that file's folder. Each row keeps its concept
family (``concept``), sub-type, the robot's instructions and its split group.

Split: ``--eval-fraction F`` (0.2 when both --train and --items are given) of the groups go to the items file,
optionally ``--val-fraction`` to a ``--val`` file for ``converseg-train --val-data``, the rest to training.
Groups are episodes (default where the inputs have one), images, or DROID scenes (``--split-by``); they are
shuffled with ``--seed``, so separate exports of one run agree. ``split.json`` records the split and a
per-family count table; empty or thin evaluation families are warned about.
"""

from __future__ import annotations

import json
import os
import shutil
from collections import Counter
from pathlib import Path

import cv2
import numpy as np

from converseg_ros.data.concepts import FAMILIES
from converseg_ros.dataengine.runfiles import disk_full, is_disk_full
from converseg_ros.dataengine.samples import Decisions, SampleRecord, collect_samples, expand_runs
from converseg_ros.imaging import decode_image
from converseg_ros.modeling.atomic import atomic_write_bytes

SPLIT_BY = ("episode", "image", "scene")
THIN = 10  # fewer evaluation samples than this in a family: its score is noise


def _rel(path: Path, base: Path) -> str:
    return Path(os.path.relpath(path, base)).as_posix()


def group_of(record: SampleRecord, inputs: dict, by: str) -> str:
    """The split group of a sample: its episode, image or scene (scene falls back to the episode)."""
    source = inputs[record.image_id].source
    episode = source.get("episode_key") or f"image:{record.image_id}"
    if by == "image":
        return f"image:{record.image_id}"
    if by == "scene" and source.get("scene_id") not in (None, ""):
        return f"scene:{source.get('lab', '')}/{source['scene_id']}"
    return f"episode:{episode}" if not episode.startswith("image:") else episode


def assign(groups: list[str], eval_fraction: float, val_fraction: float, seed: int) -> dict[str, str]:
    """group -> "eval" / "val" / "train" (seeded shuffle of the sorted groups; each asked-for part non-empty
    while there are groups to spare)."""
    keys = sorted(set(groups))
    order = [keys[i] for i in np.random.default_rng(seed).permutation(len(keys))]

    def count(f: float) -> int:
        return 0 if f <= 0 or len(keys) < 2 else max(1, min(len(keys) - 1, round(f * len(keys))))

    n_eval = count(eval_fraction)
    n_val = min(count(val_fraction), max(0, len(keys) - n_eval - 1))
    out = dict.fromkeys(order[:n_eval], "eval")
    out.update(dict.fromkeys(order[n_eval:n_eval + n_val], "val"))
    out.update(dict.fromkeys(order[n_eval + n_val:], "train"))
    return out


def family_table(rows: list[tuple], parts: list[str]) -> tuple[dict, list[str]]:
    """Counts per family and part, and warnings for empty or thin evaluation families."""
    table = {f: {p: 0 for p in parts} for f in FAMILIES}
    for record, *_, part in rows:
        table.setdefault(record.data["family"], {p: 0 for p in parts})[part] += 1
    warnings = []
    if "eval" in parts:
        present = {f for f, c in table.items() if sum(c.values())}
        for family in sorted(present):
            n = table[family]["eval"]
            if n == 0:
                warnings.append(f"family {family}: no evaluation sample (its score will be missing)")
            elif n < THIN:
                warnings.append(f"family {family}: only {n} evaluation samples (its score is noisy)")
    return {f: c for f, c in table.items() if sum(c.values())}, warnings


def format_table(table: dict, parts: list[str]) -> str:
    lines = ["family        " + "".join(f"{p:>8}" for p in parts)]
    for family, counts in table.items():
        lines.append(f"{family:<14}" + "".join(f"{counts[p]:>8}" for p in parts))
    return "\n".join(lines)


def export_runs(
    runs: list[str | Path], train: str | Path | None, items: str | Path | None, assets: str | Path | None = None,
    require_review: bool = False, negatives: bool = True, dataset_name: str | None = None,
    eval_fraction: float | None = None, split_by: str | None = None, seed: int = 0,
    val: str | Path | None = None, val_fraction: float = 0.0,
) -> dict:
    """Write the files asked for; returns counts (exported per part, skipped by reason), the split and warnings."""
    if not train and not items and not val:
        raise ValueError("give --train, --items and/or --val")
    if split_by is not None and split_by not in SPLIT_BY:
        raise ValueError(f"--split-by must be one of {SPLIT_BY}")
    if eval_fraction is None:
        eval_fraction = 0.2 if (train and items) else 0.0
    if not 0.0 <= eval_fraction < 1.0 or not 0.0 <= val_fraction < 1.0 or eval_fraction + val_fraction >= 1.0:
        raise ValueError("--eval-fraction and --val-fraction must be in [0, 1) and leave something to train on")
    if val and val_fraction <= 0:
        raise ValueError("--val needs --val-fraction > 0")
    stores = expand_runs(runs)
    records, inputs, problems = collect_samples(stores)
    decisions = Decisions(stores)
    if split_by is None:
        split_by = "episode" if any(i.source.get("episode_key") for i in inputs.values()) else "image"
    skipped: Counter[str] = Counter()
    kept = []
    for record in records:
        decision = decisions.get(record)
        if not decisions.keep(record, require_review):
            skipped["rejected in review" if decision == "reject" else
                    "not reviewed" if require_review else "rejected by the verifier"] += 1
        elif record.data["negative"] and not negatives:
            skipped["hard negative (--no-negatives)"] += 1
        else:
            kept.append((record, decision, group_of(record, inputs, split_by)))
    parts_of = assign([g for *_, g in kept], eval_fraction, val_fraction, seed)
    if items and not train and eval_fraction == 0:  # an evaluation set only: all of it
        parts_of = dict.fromkeys(parts_of, "eval")
    wanted = {"train": train, "eval": items, "val": val}  # a part without a file is held out, not written
    first = next(Path(p).resolve() for p in (train, items, val) if p)
    assets_dir = Path(assets).resolve() if assets else first.parent
    rows = _write_assets(kept, parts_of, wanted, inputs, assets_dir)
    parts = [p for p in ("train", "val", "eval") if wanted[p]]
    table, warnings = family_table(rows, parts)
    split = {"split_by": split_by, "eval_fraction": eval_fraction, "val_fraction": val_fraction, "seed": seed,
             "groups": dict(Counter(parts_of.values())),
             "eval_groups": sorted(g for g, p in parts_of.items() if p == "eval"),
             "val_groups": sorted(g for g, p in parts_of.items() if p == "val")}
    _write_files(rows, wanted, dataset_name, split)
    split_file = (Path(items or val or train).resolve().parent / "split.json")
    atomic_write_bytes(split_file, json.dumps({**split, "families": table, "warnings": warnings}, indent=1).encode())
    return {
        "exported": {p: sum(r[-1] == p for r in rows) for p in parts},
        "images": len({r[0].image_id for r in rows}),
        "split": {k: v for k, v in split.items() if not k.endswith("_groups")}, "split_file": str(split_file),
        "families": table, "warnings": warnings, "skipped": dict(skipped), "problems": problems,
    }


def _write_assets(kept, parts_of, wanted, inputs, assets: Path) -> list[tuple]:
    (assets / "images").mkdir(parents=True, exist_ok=True)
    (assets / "masks").mkdir(parents=True, exist_ok=True)
    rows, written = [], {}
    try:
        for record, decision, group in kept:
            part = parts_of[group]
            if not wanted[part]:
                continue
            image = written.get(record.image_id)
            if image is None:
                image = assets / "images" / f"{record.image_id}.png"
                if not image.is_file():
                    rgb = decode_image(record.image_path(inputs))
                    ok, buf = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
                    atomic_write_bytes(image, buf.tobytes())
                written[record.image_id] = image
            mask = assets / "masks" / f"{record.id}.png"
            shutil.copyfile(record.mask_path, mask)
            rows.append((record, image, mask, decision, group, part))
    except OSError as exc:
        if is_disk_full(exc):
            raise disk_full(exc, assets) from exc
        raise
    return rows


def _write_files(rows, wanted, dataset_name, split) -> None:
    for part in ("train", "val"):
        if not wanted[part]:
            continue
        base = Path(wanted[part]).resolve().parent
        lines = [json.dumps({"image": _rel(img, base), "mask_merged": _rel(mask, base), "prompt": r.data["prompt"],
                             "concept": r.data["family"], "subconcept": r.data["subtype"], "id": r.id,
                             "instructions": r.data.get("instructions", []), "group": group})
                 for r, img, mask, _, group, p in rows if p == part]
        atomic_write_bytes(Path(wanted[part]), ("\n".join(lines) + ("\n" if lines else "")).encode())
    if wanted["eval"]:
        path = Path(wanted["eval"]).resolve()
        entries = [{"id": r.id, "image": _rel(img, path.parent), "mask": _rel(mask, path.parent),
                    "prompt": r.data["prompt"], "concept": r.data["family"], "subconcept": r.data["subtype"],
                    "verifier": r.data["verdict"], "review": decision, "instructions": r.data.get("instructions", []),
                    "group": group}
                   for r, img, mask, decision, group, p in rows if p == "eval"]
        payload = {"dataset": dataset_name or path.parent.name, "count": len(entries),
                   "split": {k: split[k] for k in ("split_by", "eval_fraction", "seed")}, "items": entries}
        atomic_write_bytes(path, json.dumps(payload, indent=1).encode())
