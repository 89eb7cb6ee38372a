"""Mask -> regions (connected components with bbox, centroid, area, score, contour)."""

from __future__ import annotations

import numpy as np

from converseg_ros.regions import extract_regions


def _mask() -> np.ndarray:
    mask = np.zeros((50, 80), bool)
    mask[5:15, 10:30] = True  # 200 px
    mask[30:45, 50:70] = True  # 300 px
    mask[2, 2] = True  # 1 px speck
    return mask


def test_components_with_geometry():
    probability = np.where(_mask(), 0.6, 0.1)
    probability[5:15, 10:30] = 0.9
    regions = extract_regions(_mask(), probability, min_area=10)
    assert [r.area for r in regions] == [200, 300]  # sorted by score: the 0.9 blob first
    first, second = regions
    assert first.bbox == (10, 5, 20, 10) and first.centroid == (19.5, 9.5)
    assert abs(first.score - 0.9) < 1e-6 and abs(second.score - 0.6) < 1e-6
    assert [r.index for r in regions] == [0, 1]
    for region in regions:
        x, y, w, h = region.bbox
        assert region.contour.shape[1] == 2 and len(region.contour) >= 4
        assert (region.contour[:, 0] >= x).all() and (region.contour[:, 0] < x + w).all()
        assert (region.contour[:, 1] >= y).all() and (region.contour[:, 1] < y + h).all()
        assert region.crop(_mask()).all()


def test_min_area_and_max_count():
    assert len(extract_regions(_mask(), min_area=1)) == 3
    assert len(extract_regions(_mask(), min_area=250)) == 1
    assert len(extract_regions(_mask(), min_area=1, max_count=2)) == 2
    assert extract_regions(np.zeros((5, 5), bool)) == []
