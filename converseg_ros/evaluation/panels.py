"""Prediction panels: image + prompt | ground truth | prediction (with IoU), one row per item."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from converseg_ros.modeling.atomic import atomic_write_bytes
from converseg_ros.visualization import draw_overlay

GT_COLOR = (0, 200, 80)
COLUMN_WIDTH = 320


def _fit(rgb: np.ndarray, width: int) -> np.ndarray:
    height = max(1, round(rgb.shape[0] * width / rgb.shape[1]))
    return cv2.resize(rgb, (width, height), interpolation=cv2.INTER_AREA)


def panel_row(
    rgb: np.ndarray,
    gt: np.ndarray | None,
    pred: np.ndarray,
    prompt: str,
    iou: float | None,
    width: int = COLUMN_WIDTH,
) -> np.ndarray:
    """One row of three columns at ``width`` px each (GT column omitted when ``gt`` is None)."""
    small = _fit(rgb, width)
    size = (small.shape[1], small.shape[0])

    def resized(mask: np.ndarray) -> np.ndarray:
        return cv2.resize(mask.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST) > 0

    columns = [draw_overlay(small, np.zeros(small.shape[:2], bool), title=prompt)]
    if gt is not None:
        columns.append(draw_overlay(small, resized(gt), title="ground truth", color=GT_COLOR))
    label = "prediction" + (f"  IoU {iou:.3f}" if iou is not None else "")
    columns.append(draw_overlay(small, resized(pred), title=label))
    return np.concatenate(columns, axis=1)


def stack_rows(rows: list[np.ndarray]) -> np.ndarray:
    """Rows one above the other (narrower rows padded with black on the right)."""
    width = max(r.shape[1] for r in rows)
    padded = [np.pad(r, ((0, 0), (0, width - r.shape[1]), (0, 0))) for r in rows]
    return np.concatenate(padded, axis=0)


def write_png(path: Path, rgb_or_mask: np.ndarray) -> None:
    """Write an RGB image or a uint8 mask as PNG, atomically."""
    image = rgb_or_mask if rgb_or_mask.ndim == 2 else cv2.cvtColor(rgb_or_mask, cv2.COLOR_RGB2BGR)
    ok, data = cv2.imencode(".png", image)
    if not ok:
        raise OSError(f"PNG encoding failed for {path}")
    atomic_write_bytes(Path(path), data.tobytes())
