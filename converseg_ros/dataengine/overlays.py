"""Pictures the VLM judges (and the review page shows): masks, boxes, region numbers, prompt banners.

All take and return RGB uint8 arrays; boxes are [x0, y0, x1, y1] pixels.
"""

from __future__ import annotations

import cv2
import numpy as np

RED = (230, 30, 30)
GREEN = (0, 210, 0)
PALETTE = [  # distinct colours for numbered regions (RGB)
    (230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48), (145, 30, 180),
    (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212), (0, 128, 128), (170, 110, 40),
]


def _thickness(rgb: np.ndarray) -> int:
    return max(1, round(max(rgb.shape[:2]) / 320))


def _box(canvas: np.ndarray, box, colour) -> None:
    x0, y0, x1, y1 = (int(round(v)) for v in box)
    cv2.rectangle(canvas, (x0, y0), (x1, y1), colour, _thickness(canvas))


def _fill(canvas: np.ndarray, mask: np.ndarray, colour, alpha: float) -> None:
    canvas[mask] = (canvas[mask] * (1 - alpha) + np.array(colour) * alpha).astype(np.uint8)


def _contour(canvas: np.ndarray, mask: np.ndarray, colour) -> None:
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    cv2.drawContours(canvas, contours, -1, colour, _thickness(canvas))


def _text(canvas: np.ndarray, text: str, origin: tuple[int, int], scale: float) -> None:
    text = text.encode("ascii", "replace").decode("ascii")  # Hershey fonts draw ASCII only
    thick = max(1, int(scale * 2))
    cv2.putText(canvas, text, origin, cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), thick + 2, cv2.LINE_AA)
    cv2.putText(canvas, text, origin, cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), thick, cv2.LINE_AA)


def dimmed_outside(rgb: np.ndarray, mask: np.ndarray, box, dim: float = 0.35) -> np.ndarray:
    """Everything outside the mask darkened, green box (stage 3's first view)."""
    canvas = (rgb * dim).astype(np.uint8)
    canvas[mask] = rgb[mask]
    _box(canvas, box, GREEN)
    return canvas


def red_mask(rgb: np.ndarray, mask: np.ndarray, box) -> np.ndarray:
    """Red translucent mask + green box (stage 3's second view and the initial/refined comparison)."""
    canvas = rgb.copy()
    _fill(canvas, mask, RED, 0.5)
    _box(canvas, box, GREEN)
    return canvas


def numbered_regions(rgb: np.ndarray, masks: list[np.ndarray]) -> np.ndarray:
    """Every accepted region in its own colour with its index written on it (stage 4's second image)."""
    canvas = rgb.copy()
    scale = max(0.5, max(rgb.shape[:2]) / 800)
    for k, mask in enumerate(masks):
        colour = PALETTE[k % len(PALETTE)]
        _fill(canvas, mask, colour, 0.45)
        _contour(canvas, mask, colour)
    for k, mask in enumerate(masks):
        ys, xs = np.nonzero(mask)
        if len(xs):
            _text(canvas, str(k), (int(xs.mean()), int(ys.mean())), scale)
    return canvas


def prompt_view(rgb: np.ndarray, masks: list[np.ndarray], boxes: list, prompt: str) -> np.ndarray:
    """Target masks coloured with boxes, the rest dimmed, the prompt in a banner on top (stage 5)."""
    union = np.zeros(rgb.shape[:2], bool)
    for mask in masks:
        union |= mask
    canvas = (rgb * 0.45).astype(np.uint8)
    canvas[union] = rgb[union]
    for k, (mask, box) in enumerate(zip(masks, boxes, strict=True)):
        colour = PALETTE[k % len(PALETTE)]
        _fill(canvas, mask, colour, 0.35)
        _box(canvas, box, colour)
    banner_h = max(24, rgb.shape[0] // 12)
    banner = np.zeros((banner_h, rgb.shape[1], 3), np.uint8)
    _text(banner, prompt, (6, int(banner_h * 0.7)), max(0.4, banner_h / 48))
    return np.concatenate([banner, canvas], axis=0)


def review_overlay(rgb: np.ndarray, mask: np.ndarray, colour=(255, 0, 110)) -> np.ndarray:
    """Pastel fill with a contour, as the review page shows a sample."""
    canvas = rgb.copy()
    _fill(canvas, mask, colour, 0.45)
    _contour(canvas, mask, colour)
    return canvas


def downscale(rgb: np.ndarray, max_side: int) -> tuple[np.ndarray, float]:
    """Image with its longer side at most ``max_side`` (INTER_AREA) and the factor applied."""
    side = max(rgb.shape[:2])
    if side <= max_side:
        return rgb, 1.0
    factor = max_side / side
    size = (max(1, round(rgb.shape[1] * factor)), max(1, round(rgb.shape[0] * factor)))
    return cv2.resize(rgb, size, interpolation=cv2.INTER_AREA), factor


def box_of(mask: np.ndarray) -> list[float]:
    """Tight [x0, y0, x1, y1] of a non-empty mask (exclusive right/bottom edges)."""
    ys, xs = np.nonzero(mask)
    return [float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)]
