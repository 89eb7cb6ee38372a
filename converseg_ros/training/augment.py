"""Augmentations that keep image, mask and prompt consistent (the paper's recipe uses none).

Every random choice comes from a generator seeded by (run seed, epoch, sample index), so an item looks the
same whichever DataLoader worker builds it and a resumed run sees the same data as an uninterrupted one.
"""

from __future__ import annotations

import re

import cv2
import numpy as np

from converseg_ros.training.config import AugmentConfig

_SIDE = re.compile(r"\b(left|right)(most|wards?|-hand)?\b", re.IGNORECASE)


def swap_left_right(prompt: str) -> str:
    """Mirror a prompt: "left" <-> "right" (keeping case and suffixes such as "-most")."""

    def repl(match: re.Match) -> str:
        word = match.group(1)
        new = "right" if word.lower() == "left" else "left"
        if word.isupper():
            new = new.upper()
        elif word[0].isupper():
            new = new.capitalize()
        return new + (match.group(2) or "")

    return _SIDE.sub(repl, prompt)


def _crop_window(mask: np.ndarray, frac: float, rng: np.random.Generator) -> tuple[int, int, int, int]:
    """A window of ``frac`` of each side, placed at random but covering the target's box where it fits."""
    h, w = mask.shape
    ch, cw = max(1, round(h * frac)), max(1, round(w * frac))
    ys, xs = np.nonzero(mask)
    lo_y, hi_y, lo_x, hi_x = 0, h - ch, 0, w - cw
    if ys.size:  # keep the whole target visible when the window is large enough
        lo_y, hi_y = max(0, ys.max() + 1 - ch), min(hi_y, ys.min())
        lo_x, hi_x = max(0, xs.max() + 1 - cw), min(hi_x, xs.min())
        if lo_y > hi_y:
            lo_y = hi_y = int(np.clip((ys.min() + ys.max() + 1 - ch) // 2, 0, h - ch))
        if lo_x > hi_x:
            lo_x = hi_x = int(np.clip((xs.min() + xs.max() + 1 - cw) // 2, 0, w - cw))
    top = int(rng.integers(lo_y, hi_y + 1))
    left = int(rng.integers(lo_x, hi_x + 1))
    return top, left, ch, cw


def _jitter_colour(rgb: np.ndarray, strength: float, rng: np.random.Generator) -> np.ndarray:
    img = rgb.astype(np.float32)
    brightness, contrast, saturation = 1 + rng.uniform(-strength, strength, size=3)
    img = img * brightness
    mean = img.mean()
    img = (img - mean) * contrast + mean
    gray = cv2.cvtColor(np.clip(img, 0, 255).astype(np.uint8), cv2.COLOR_RGB2GRAY).astype(np.float32)
    img = (img - gray[..., None]) * saturation + gray[..., None]
    return np.clip(img + 0.5, 0, 255).astype(np.uint8)


def augment(
    rgb: np.ndarray, mask: np.ndarray, prompt: str, cfg: AugmentConfig, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, str]:
    """Apply the configured crop, flip and colour jitter to (image, mask, prompt)."""
    if cfg.scale_min < 1.0 or cfg.scale_max < 1.0:
        low, high = sorted((cfg.scale_min, cfg.scale_max))
        frac = float(rng.uniform(low, min(high, 1.0)))
        top, left, ch, cw = _crop_window(mask, frac, rng)
        rgb, mask = rgb[top : top + ch, left : left + cw], mask[top : top + ch, left : left + cw]
    if cfg.hflip > 0 and rng.random() < cfg.hflip:
        rgb, mask, prompt = rgb[:, ::-1], mask[:, ::-1], swap_left_right(prompt)
    if cfg.color > 0:
        rgb = _jitter_colour(rgb, cfg.color, rng)
    return np.ascontiguousarray(rgb), np.ascontiguousarray(mask), prompt
