"""What a stage works with: the image (original and VLM view), the client, SAM2, settings and its files."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from converseg_ros.data.concepts import FAMILIES
from converseg_ros.data.masks import read_mask
from converseg_ros.dataengine.vlm import VLMClient
from converseg_ros.modeling.atomic import atomic_write_bytes


@dataclass(frozen=True)
class StageSettings:
    """Knobs of the five stages (defaults follow the paper's meta-prompts and the reference engine)."""

    families: tuple[str, ...] = FAMILIES
    hard_negatives: bool = False  # stage 4 may author prompts whose target is empty
    max_regions: int = 8  # stage 1 keeps at most this many (the reference: 8)
    min_region_pixels: int = 64  # smaller masks are dropped in stage 2
    min_box_pixels: float = 2.0  # boxes thinner than this are dropped in stage 1
    compare_below_iou: float = 0.9  # stage 3 asks initial-vs-refined only when the two differ this much
    max_prompt_words: int = 10
    prompts_per_family: int = 3
    temperature: float = 0.7
    vlm_max_side: int = 1024  # the VLM sees the image downscaled to this longer side


class ItemFiles:
    """Mask files of one item, written atomically; paths are relative to the item folder."""

    def __init__(self, root: Path):
        self.root = Path(root)

    def write_mask(self, rel: str, mask: np.ndarray) -> str:
        ok, buf = cv2.imencode(".png", mask.astype(np.uint8) * 255)
        if not ok:
            raise OSError(f"cannot encode mask {rel}")
        atomic_write_bytes(self.root / rel, buf.tobytes())
        return rel

    def read_mask(self, rel: str) -> np.ndarray:
        return read_mask(self.root / rel)


@dataclass
class StageContext:
    """One image on its way through the stages."""

    image_id: str
    rgb: np.ndarray  # H x W x 3 uint8, the original pixels (EXIF applied): masks live at this size
    vlm_rgb: np.ndarray  # the downscaled copy the VLM sees
    factor: float  # vlm_rgb = rgb scaled by this
    client: VLMClient
    files: ItemFiles
    settings: StageSettings = field(default_factory=StageSettings)
    segmenter: object | None = None  # BoxSegmenter
    instructions: list[str] = field(default_factory=list)  # what the robot was doing (DROID task, RLDS text)

    @property
    def height(self) -> int:
        return int(self.rgb.shape[0])

    @property
    def width(self) -> int:
        return int(self.rgb.shape[1])

    def to_vlm(self, image: np.ndarray) -> np.ndarray:
        """A picture at original resolution, scaled like the VLM's view of the image."""
        if self.factor == 1.0:
            return image
        size = (max(1, round(image.shape[1] * self.factor)), max(1, round(image.shape[0] * self.factor)))
        return cv2.resize(image, size, interpolation=cv2.INTER_AREA)
