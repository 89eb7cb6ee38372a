"""A small dataset built from the real photos bundled with scikit-image, with hand-placed target masks.

For trying the training / evaluation pipeline end to end without downloads (``converseg-train demo-data``)
and for tests. Masks are rough ellipses and polygons around the named objects.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np

# (image name, prompt, concept, shapes); a shape is ("ellipse", cx, cy, ax, ay) or ("poly", [(x, y), ...])
DEMO_ITEMS: list[tuple[str, str, str, list[tuple]]] = [
    ("coffee", "the cup of coffee", "entities", [("ellipse", 280, 115, 110, 100)]),
    ("coffee", "the saucer the cup stands on", "relations", [("ellipse", 265, 225, 190, 150)]),
    ("chelsea", "the cat's eyes", "entities", [("ellipse", 168, 115, 32, 30), ("ellipse", 320, 130, 30, 28)]),
    ("astronaut", "the helmet she could put on", "affordances", [("ellipse", 395, 430, 105, 95)]),
    (
        "astronaut",
        "the space shuttle behind her",
        "spatial",
        [("poly", [(395, 0), (420, 0), (450, 150), (455, 270), (370, 270), (375, 150)])],
    ),
    (
        "rocket",
        "the night sky above the launch pad",
        "spatial",
        [("poly", [(0, 0), (640, 0), (640, 250), (0, 250)])],
    ),
]


def _photo(name: str) -> np.ndarray:
    from skimage import data

    return getattr(data, name)()


def demo_mask(shape: tuple[int, int], shapes: list[tuple]) -> np.ndarray:
    """Rasterise the hand-placed shapes into a bool mask of ``shape`` (H, W)."""
    mask = np.zeros(shape, np.uint8)
    for kind, *args in shapes:
        if kind == "ellipse":
            cx, cy, ax, ay = args
            cv2.ellipse(mask, (cx, cy), (ax, ay), 0, 0, 360, 1, -1)
        else:
            cv2.fillPoly(mask, [np.asarray(args[0], np.int32).reshape(-1, 1, 2)], 1)
    return mask.astype(bool)


def write_demo_dataset(out_dir: str | Path, max_side: int | None = None, limit: int | None = None) -> Path:
    """Write ``images/``, ``masks/``, ``dataset.jsonl`` and ``items.json``; returns ``out_dir``.

    ``max_side`` shrinks the photos (and masks) so their longer side is at most that many pixels."""
    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "masks").mkdir(exist_ok=True)
    rows, items = [], []
    for k, (name, prompt, concept, shapes) in enumerate(DEMO_ITEMS[:limit]):
        rgb = _photo(name)
        mask = demo_mask(rgb.shape[:2], shapes)
        if max_side and max(rgb.shape[:2]) > max_side:
            scale = max_side / max(rgb.shape[:2])
            size = (max(1, round(rgb.shape[1] * scale)), max(1, round(rgb.shape[0] * scale)))
            rgb = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
            mask = cv2.resize(mask.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST) > 0
        image_rel, mask_rel = f"images/{name}.png", f"masks/{k:03d}_{name}.png"
        cv2.imwrite(str(out / image_rel), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        cv2.imwrite(str(out / mask_rel), mask.astype(np.uint8) * 255)
        rows.append({"image": image_rel, "mask_merged": mask_rel, "prompt": prompt})
        items.append(
            {
                "id": f"{k:03d}_{name}",
                "image": image_rel,
                "mask": mask_rel,
                "prompt": prompt,
                "concept": concept,
            }
        )
    (out / "dataset.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    (out / "items.json").write_text(
        json.dumps({"dataset": "demo", "count": len(items), "items": items}, indent=1), encoding="utf-8"
    )
    return out
