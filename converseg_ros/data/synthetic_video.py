"""A "real video" with known motion, made from one real photo: a camera window slides and zooms over it.

Frame ``t`` shows the photo through an affine map ``to_photo[t]`` (frame pixel -> photo pixel: a scale and
a shift, eased smoothly from a start window to an end window). The motion between consecutive frames is
therefore known exactly: ``motion(t)`` maps frame-``t`` pixels to frame-``t+1`` pixels. A region given on the
photo (e.g. an object's mask) is carried into every frame by the same maps, so its ground-truth position
is known too. Coordinates are pixel centres, ``(x, y)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class Window:
    """A camera window on the photo: centre (x, y) in photo pixels and width in photo pixels."""

    cx: float
    cy: float
    width: float


@dataclass
class SyntheticVideo:
    """Frames (H x W x 3 uint8 RGB) with their affine maps to the photo (2 x 3, frame -> photo)."""

    frames: list[np.ndarray]
    to_photo: list[np.ndarray]
    photo_shape: tuple[int, int]
    regions: list[np.ndarray] | None = None  # H x W bool per frame: the photo region seen by each frame

    def __len__(self) -> int:
        return len(self.frames)

    def motion(self, t: int) -> np.ndarray:
        """2 x 3 affine taking frame-``t`` pixels to frame-``t+1`` pixels."""
        return compose(invert(self.to_photo[t + 1]), self.to_photo[t])


def as_3x3(affine: np.ndarray) -> np.ndarray:
    return np.vstack([affine, [0.0, 0.0, 1.0]])


def invert(affine: np.ndarray) -> np.ndarray:
    return np.linalg.inv(as_3x3(affine))[:2]


def compose(outer: np.ndarray, inner: np.ndarray) -> np.ndarray:
    """``outer`` after ``inner`` (both 2 x 3)."""
    return (as_3x3(outer) @ as_3x3(inner))[:2]


def window_map(window: Window, size: tuple[int, int]) -> np.ndarray:
    """Affine frame pixel -> photo pixel for a window shown at ``size`` (height, width)."""
    height, width = size
    scale = window.width / width
    return np.array([
        [scale, 0.0, window.cx - scale * (width - 1) / 2],
        [0.0, scale, window.cy - scale * (height - 1) / 2],
    ])


def _ease(u: float) -> float:
    """Smooth 0 -> 1 (zero velocity at both ends, as a camera starting and stopping)."""
    return 0.5 - 0.5 * np.cos(np.pi * u)


def make_video(
    photo: np.ndarray, n_frames: int, size: tuple[int, int], start: Window, end: Window,
    region: np.ndarray | None = None,
) -> SyntheticVideo:
    """Render ``n_frames`` of ``size`` (height, width) while the window eases from ``start`` to ``end``.

    Windows must stay inside the photo (no invented border pixels). ``region`` (photo-sized bool) is
    carried into each frame (nearest neighbour).
    """
    if n_frames < 2:
        raise ValueError("a video needs at least 2 frames")
    height, width = size
    maps, frames, regions = [], [], []
    for t in range(n_frames):
        u = _ease(t / (n_frames - 1))
        window = Window(*(a + (b - a) * u for a, b in ((start.cx, end.cx), (start.cy, end.cy),
                                                        (start.width, end.width))))
        affine = window_map(window, size)
        _check_inside(affine, size, photo.shape[:2])
        maps.append(affine)
        flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP  # the map goes from output pixel to photo pixel
        frames.append(cv2.warpAffine(photo, affine, (width, height), flags=flags, borderMode=cv2.BORDER_REFLECT))
        if region is not None:
            warped = cv2.warpAffine(region.astype(np.uint8), affine, (width, height),
                                    flags=cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP)
            regions.append(warped.astype(bool))
    return SyntheticVideo(frames, maps, photo.shape[:2], regions if region is not None else None)


def _check_inside(affine: np.ndarray, size: tuple[int, int], photo: tuple[int, int]) -> None:
    height, width = size
    corners = np.array([[0, 0, 1], [width - 1, 0, 1], [0, height - 1, 1], [width - 1, height - 1, 1]], float)
    xy = corners @ affine.T
    if xy.min() < 0 or xy[:, 0].max() > photo[1] - 1 or xy[:, 1].max() > photo[0] - 1:
        raise ValueError(f"camera window leaves the {photo[1]}x{photo[0]} photo: corners {xy.round(1).tolist()}")


def camera_sweep(photo: np.ndarray, n_frames: int = 12, size: tuple[int, int] = (240, 320),
                 region: np.ndarray | None = None) -> SyntheticVideo:
    """A default sweep: the window pans across the photo and zooms in by a quarter (scale 1.25)."""
    photo_h, photo_w = photo.shape[:2]
    aspect = size[1] / size[0]
    width = min(photo_w * 0.7, photo_h * 0.7 * aspect)
    start = Window(photo_w * 0.42, photo_h * 0.45, width)
    end = Window(photo_w * 0.58, photo_h * 0.55, width / 1.25)
    return make_video(photo, n_frames, size, start, end, region)


def warp_mask(mask: np.ndarray, motion: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Carry a frame-``t`` mask into frame ``t+1`` by ``motion``: (warped mask, pixels of frame ``t+1`` that
    frame ``t`` saw). Both H x W bool."""
    height, width = mask.shape
    warped = cv2.warpAffine(mask.astype(np.uint8), motion, (width, height), flags=cv2.INTER_NEAREST,
                            borderValue=0).astype(bool)
    seen = cv2.warpAffine(np.ones_like(mask, np.uint8), motion, (width, height), flags=cv2.INTER_NEAREST,
                          borderValue=0).astype(bool)
    return warped, seen


def consistency_iou(mask: np.ndarray, next_mask: np.ndarray, motion: np.ndarray) -> float:
    """IoU of frame ``t+1``'s mask and frame ``t``'s mask moved by the known motion, over the pixels both
    frames see. 1.0 when both are empty there (nothing, consistently)."""
    warped, seen = warp_mask(mask, motion)
    a, b = warped & seen, next_mask & seen
    union = np.count_nonzero(a | b)
    return 1.0 if union == 0 else np.count_nonzero(a & b) / union
