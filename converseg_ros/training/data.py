"""Training data: samples -> letterboxed SAM2 images, Qwen images and eroded low-res targets.

Decoding, augmentation, letterboxing and erosion run in DataLoader workers. Batches are indexed by step
(``StepBatches``), so a resumed run continues with exactly the batches an uninterrupted run would see.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from converseg_ros.data.masks import erode
from converseg_ros.data.samples import Sample
from converseg_ros.errors import ConverSegError, QueryError
from converseg_ros.imaging import decode_image, letterbox, letterbox_geometry
from converseg_ros.modeling.qwen_inputs import QwenInputs
from converseg_ros.training.augment import augment
from converseg_ros.training.config import DataConfig

MASK_STRIDE = 4  # the decoder's low-res logits are 1/4 of the SAM2 input side


def letterbox_mask(mask: np.ndarray, size: int) -> np.ndarray:
    """Letterbox a bool mask like its image (nearest neighbour, zero padding)."""
    geo = letterbox_geometry(mask.shape[0], mask.shape[1], size)
    resized = cv2.resize(
        mask.astype(np.uint8), (geo.new_width, geo.new_height), interpolation=cv2.INTER_NEAREST
    )
    canvas = np.zeros((size, size), np.uint8)
    canvas[geo.top : geo.top + geo.new_height, geo.left : geo.left + geo.new_width] = resized
    return canvas.astype(bool)


@dataclass
class Item:
    """One prepared training example (or the reason it could not be prepared)."""

    id: str
    prompt: str = ""
    sam_image: np.ndarray | None = None  # [S, S, 3] uint8, letterboxed
    qwen_image: np.ndarray | None = None  # [H, W, 3] uint8, the (augmented) full-resolution image
    target: np.ndarray | None = None  # [S/4, S/4] bool, binarised + eroded
    error: str | None = None


class TrainDataset(Dataset):
    """Prepares ``Sample``s; keys are (index, epoch) so augmentation is reproducible per epoch."""

    def __init__(self, samples: list[Sample], size: int, cfg: DataConfig, seed: int, train: bool = True):
        self.samples, self.size, self.cfg, self.seed, self.train = samples, size, cfg, seed, train

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, key: tuple[int, int] | int) -> Item:
        index, epoch = key if isinstance(key, tuple) else (key, 0)
        sample = self.samples[index]
        try:
            rgb = decode_image(sample.image)
            mask, _ = sample.load_target(rgb.shape[:2])
            prompt = sample.prompt
            if self.train:
                rng = np.random.default_rng([self.seed, epoch, index])
                rgb, mask, prompt = augment(rgb, mask, prompt, self.cfg.augment, rng)
            sam_image, _ = letterbox(rgb, self.size)
            full = erode(letterbox_mask(mask, self.size), self.cfg.erode_kernel, self.cfg.erode_iterations)
            low = self.size // MASK_STRIDE
            target = cv2.resize(full.astype(np.uint8), (low, low), interpolation=cv2.INTER_NEAREST) > 0
        except (ConverSegError, ValueError, OSError) as exc:
            return Item(sample.id, error=str(exc))
        return Item(sample.id, prompt, sam_image, rgb, target)


class Collator:
    """Stacks good items and builds their Qwen inputs (tokenising, image patches) in the worker; keeps the
    errors of bad items (unreadable files, unusable prompts) so the loop can report them."""

    def __init__(self, inputs: QwenInputs):
        self.inputs = inputs

    def __call__(self, items: list[Item]) -> dict:
        errors = [(it.id, it.error) for it in items if it.error is not None]
        good = []
        for it in items:
            if it.error is None:
                try:
                    self.inputs.clean_prompt(it.prompt)
                    good.append(it)
                except QueryError as exc:
                    errors.append((it.id, str(exc)))
        return {
            "ids": [it.id for it in good],
            "prompts": [it.prompt for it in good],
            "qwen": self.inputs.batch([it.qwen_image for it in good], [it.prompt for it in good])
            if good
            else {},
            "sam_images": [it.sam_image for it in good],
            "targets": torch.from_numpy(np.stack([it.target for it in good])) if good else None,
            "errors": errors,
        }


class StepBatches(Sampler):
    """Batch keys for steps ``start..end-1``: a fresh seeded permutation per epoch, split across ranks."""

    def __init__(self, n: int, batch: int, seed: int, start: int, end: int, rank: int = 0, world: int = 1):
        if n == 0:
            raise ValueError("the training set is empty")
        self.n, self.batch, self.seed, self.start, self.end = n, batch, seed, start, end
        self.rank, self.world = rank, world
        self._perms: dict[int, np.ndarray] = {}

    def __len__(self) -> int:
        return max(0, self.end - self.start)

    def _key(self, position: int) -> tuple[int, int]:
        epoch, offset = divmod(position, self.n)
        if epoch not in self._perms:
            self._perms = {epoch: np.random.default_rng([self.seed, epoch]).permutation(self.n)}
        return int(self._perms[epoch][offset]), epoch

    def __iter__(self):
        for step in range(self.start, self.end):
            first = (step * self.world + self.rank) * self.batch
            yield [self._key(first + j) for j in range(self.batch)]
