"""Overlay drawing shared by the CLI, the ROS node and evaluation panels."""

from __future__ import annotations

import cv2
import numpy as np

from converseg_ros.regions import Region

TINT = (255, 0, 110)  # RGB
BOX = (255, 214, 0)
_FONT = cv2.FONT_HERSHEY_SIMPLEX


def draw_overlay(
    rgb: np.ndarray, mask: np.ndarray, regions: list[Region] = (), title: str = "", alpha: float = 0.5,
    color: tuple[int, int, int] = TINT,
) -> np.ndarray:
    """RGB image (same size) with the mask tinted, region contours, boxes, ``#k score`` labels and a
    title banner across the top."""
    out = rgb.copy()
    mask = mask.astype(bool)
    if mask.any():
        tint = np.asarray(color, dtype=np.float32)
        out[mask] = (out[mask] * (1.0 - alpha) + tint * alpha).astype(np.uint8)
    scale = max(0.4, min(out.shape[:2]) / 900)
    thickness = max(1, round(scale * 2))
    for region in regions:
        x, y, w, h = region.bbox
        cv2.polylines(out, [region.contour.reshape(-1, 1, 2)], True, color, thickness)
        cv2.rectangle(out, (x, y), (x + w - 1, y + h - 1), BOX, thickness)
        _label(out, f"#{region.index} {region.score:.2f}", (x, max(y - 4, 12)), scale, thickness)
    if title:
        out = _banner(out, title, scale, thickness)
    return out


def _label(image: np.ndarray, text: str, origin: tuple[int, int], scale: float, thickness: int) -> None:
    (w, h), base = cv2.getTextSize(text, _FONT, scale, thickness)
    x, y = origin
    cv2.rectangle(image, (x, y - h - base), (x + w, y + base), (0, 0, 0), -1)
    cv2.putText(image, text, (x, y), _FONT, scale, BOX, thickness, cv2.LINE_AA)


def _banner(image: np.ndarray, title: str, scale: float, thickness: int) -> np.ndarray:
    """Title text wrapped onto a darkened band across the top of the image (size unchanged)."""
    width = image.shape[1]
    lines, current = [], ""
    for word in title.split():
        trial = f"{current} {word}".strip()
        if current and cv2.getTextSize(trial, _FONT, scale, thickness)[0][0] > width - 16:
            lines.append(current)
            current = word
        else:
            current = trial
    lines.append(current)
    line_h = cv2.getTextSize("Ag", _FONT, scale, thickness)[0][1] + 10
    band_h = min(image.shape[0], line_h * len(lines) + 8)
    image[:band_h] = (image[:band_h] * 0.3).astype(np.uint8)
    for i, line in enumerate(lines):
        cv2.putText(image, line, (8, line_h * (i + 1)), _FONT, scale, (255, 255, 255), thickness, cv2.LINE_AA)
    return image
