"""3D region positions from a depth image and the camera intrinsics (pinhole back-projection)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

MAX_SAMPLES = 4096


@dataclass(frozen=True)
class Intrinsics:
    """Pinhole intrinsics in pixels of the image they belong to."""

    fx: float
    fy: float
    cx: float
    cy: float
    width: int
    height: int

    @classmethod
    def from_camera_info(cls, info: Any) -> Intrinsics | None:
        """From sensor_msgs/CameraInfo (None when K is unset)."""
        k = list(info.k)
        if len(k) != 9 or k[0] <= 0 or k[4] <= 0:
            return None
        return cls(k[0], k[4], k[2], k[5], int(info.width), int(info.height))

    def scaled_to(self, width: int, height: int) -> Intrinsics:
        """The same camera at another resolution (e.g. camera_info for a resized stream)."""
        if self.width <= 0 or self.height <= 0 or (width, height) == (self.width, self.height):
            return self
        sx, sy = width / self.width, height / self.height
        return Intrinsics(self.fx * sx, self.fy * sy, self.cx * sx, self.cy * sy, width, height)


def region_position(
    depth_m: np.ndarray,
    intrinsics: Intrinsics,
    image_shape: tuple[int, int],
    bbox: tuple[int, int, int, int],
    crop_mask: np.ndarray,
    centroid: tuple[float, float],
) -> tuple[float, float, float] | None:
    """Camera-frame (X right, Y down, Z forward) metres of a region: median valid depth under the region's
    pixels, back-projected through its centroid. None when no pixel has a valid depth."""
    height, width = image_shape
    x0, y0 = int(bbox[0]), int(bbox[1])
    ys, xs = np.nonzero(crop_mask)
    if ys.size == 0:
        return None
    if ys.size > MAX_SAMPLES:
        pick = np.linspace(0, ys.size - 1, MAX_SAMPLES).astype(np.int64)
        ys, xs = ys[pick], xs[pick]
    dh, dw = depth_m.shape[:2]
    dys = np.clip(((ys + y0 + 0.5) * dh / height).astype(np.int64), 0, dh - 1)
    dxs = np.clip(((xs + x0 + 0.5) * dw / width).astype(np.int64), 0, dw - 1)
    z = depth_m[dys, dxs]
    z = z[np.isfinite(z) & (z > 0)]
    if z.size == 0:
        return None
    zm = float(np.median(z))
    k = intrinsics.scaled_to(width, height)
    u, v = centroid
    return ((u - k.cx) * zm / k.fx, (v - k.cy) * zm / k.fy, zm)
