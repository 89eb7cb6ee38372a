"""Connected regions of a mask: what a planner acts on (bbox, centroid, area, score, contour)."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass
class Region:
    """One connected component of a query's mask, in original-image pixels."""

    index: int
    bbox: tuple[int, int, int, int]  # x, y, width, height
    centroid: tuple[float, float]  # x right, y down
    area: int
    score: float  # mean mask probability inside the region
    contour: np.ndarray  # [K, 2] int32 simplified outer contour (x, y)

    def crop(self, mask: np.ndarray) -> np.ndarray:
        """This region's pixels of ``mask`` cropped to its bbox (other components left out)."""
        x, y, w, h = self.bbox
        return mask[y : y + h, x : x + w]


def extract_regions(
    mask: np.ndarray, probability: np.ndarray | None = None, min_area: int = 1, max_count: int = 10,
    simplify: float = 0.005,
) -> list[Region]:
    """Components of a boolean mask with area >= ``min_area`` (8-connected), best ``max_count`` by score.

    ``simplify`` is the contour tolerance as a fraction of its perimeter (Douglas-Peucker, >= 1 px).
    """
    if mask.ndim != 2:
        raise ValueError(f"mask must be 2-D, got shape {mask.shape}")
    count, labels, stats, centroids = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    regions = []
    for label in range(1, count):
        area = int(stats[label, cv2.CC_STAT_AREA])
        if area < max(min_area, 1):
            continue
        x, y, w, h = (int(v) for v in stats[label, :4])
        component = labels[y : y + h, x : x + w] == label
        score = float(probability[y : y + h, x : x + w][component].mean()) if probability is not None else 1.0
        regions.append(
            Region(0, (x, y, w, h), (float(centroids[label][0]), float(centroids[label][1])), area, score,
                   _contour(component, (x, y), simplify))
        )
    regions.sort(key=lambda r: (-r.score, -r.area))
    regions = regions[: max(max_count, 0)]
    for index, region in enumerate(regions):
        region.index = index
    return regions


def _contour(component: np.ndarray, offset: tuple[int, int], simplify: float) -> np.ndarray:
    contours, _ = cv2.findContours(component.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    outer = max(contours, key=cv2.contourArea)
    epsilon = max(1.0, simplify * cv2.arcLength(outer, closed=True))
    points = cv2.approxPolyDP(outer, epsilon, closed=True).reshape(-1, 2)
    return (points + np.asarray(offset)).astype(np.int32)
