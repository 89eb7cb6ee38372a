"""The record every dataset reader returns, and how its image and target are loaded."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from converseg_ros.data.masks import MaskError, Polygon, check_same_size, rasterize_polygons, read_mask


@dataclass(frozen=True)
class Sample:
    """One (image, prompt, target mask) triplet.

    ``image`` and ``mask`` are file paths or encoded bytes (hub datasets); ReasonSeg-style items give the
    target as ``polygons`` instead (plus optional ``ignore`` polygons, excluded from the metrics).
    """

    id: str
    image: Path | bytes
    prompt: str
    mask: Path | bytes | None = None
    polygons: tuple[Polygon, ...] = ()
    ignore: tuple[Polygon, ...] = ()
    concept: str | None = None

    def load_target(self, image_hw: tuple[int, int]) -> tuple[np.ndarray, np.ndarray | None]:
        """Return (target bool HxW, ignore bool HxW or None); raise MaskError on a bad or mismatched mask."""
        h, w = image_hw
        if self.mask is not None:
            target = read_mask(self.mask)
            check_same_size(target, image_hw, self.id)
        elif self.polygons:
            target = rasterize_polygons(list(self.polygons), h, w)
        else:
            raise MaskError(f"item {self.id}: no mask and no polygons")
        ignore = rasterize_polygons(list(self.ignore), h, w) if self.ignore else None
        return target, ignore


@dataclass
class ReadResult:
    """Samples read from one source plus the problems found (skipped entries, with reasons)."""

    samples: list[Sample]
    problems: list[str] = field(default_factory=list)

    def extend(self, other: ReadResult) -> None:
        self.samples.extend(other.samples)
        self.problems.extend(other.problems)
