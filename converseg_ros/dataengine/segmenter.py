"""Boxes -> SAM2 masks at the image's own resolution (stage 2's model).

The image is letterboxed to SAM2's input exactly as for ConverSeg inference, each box becomes SAM2's two
corner points (labels 2 and 3, as ``SAM2ImagePredictor`` encodes boxes), and the decoder returns all four
outputs: output 0 (the single-mask token) is the *initial* mask, the best predicted IoU of outputs 1..3
the *refined* candidate that stage 3 may prefer.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np
import torch

from converseg_ros.engine.postprocess import logits_to_image
from converseg_ros.imaging import letterbox
from converseg_ros.modeling.sam2_model import encode_images, to_sam_pixels


@dataclass
class BoxMasks:
    """Two candidate masks for one box (H x W bool) and SAM2's predicted IoU of each."""

    initial: np.ndarray
    refined: np.ndarray
    iou_initial: float
    iou_refined: float


_LOCKS: dict[int, threading.Lock] = {}  # one lock per SAM2 module, shared by every segmenter using it
_LOCKS_GUARD = threading.Lock()


class BoxSegmenter:
    """Thread-safe wrapper around a SAM2Base for box prompts."""

    def __init__(self, sam):
        self.sam = sam.eval()
        with _LOCKS_GUARD:
            self._lock = _LOCKS.setdefault(id(sam), threading.Lock())

    @property
    def device(self) -> torch.device:
        return next(self.sam.parameters()).device

    def segment(self, rgb: np.ndarray, boxes: list[list[float]]) -> list[BoxMasks]:
        """Masks for ``boxes`` ([x0, y0, x1, y1] in pixels of ``rgb``)."""
        if not boxes:
            return []
        size = int(self.sam.image_size)
        square, geo = letterbox(rgb, size)
        scale_x, scale_y = geo.new_width / geo.width, geo.new_height / geo.height
        corners = torch.tensor(boxes, dtype=torch.float32).reshape(-1, 2, 2)  # [B, 2, (x, y)]
        corners[..., 0] = corners[..., 0] * scale_x + geo.left
        corners[..., 1] = corners[..., 1] * scale_y + geo.top
        labels = torch.tensor([[2, 3]] * len(boxes), dtype=torch.int32)
        with self._lock, torch.inference_mode():
            features = encode_images(self.sam, to_sam_pixels([square], size, self.device))
            sparse, dense = self.sam.sam_prompt_encoder(
                points=(corners.to(self.device), labels.to(self.device)), boxes=None, masks=None
            )
            masks, iou, _, _ = self.sam.sam_mask_decoder.predict_masks(
                image_embeddings=features.image_embed,
                image_pe=self.sam.sam_prompt_encoder.get_dense_pe(),
                sparse_prompt_embeddings=sparse,
                dense_prompt_embeddings=dense,
                repeat_image=True,
                high_res_features=features.high_res,
            )  # masks [B, 4, S/4, S/4], iou [B, 4]
            best = iou[:, 1:].argmax(dim=1) + 1
            rows = torch.arange(len(boxes), device=masks.device)
            initial = logits_to_image(masks[:, 0], geo) > 0
            refined = logits_to_image(masks[rows, best], geo) > 0
        return [
            BoxMasks(initial[k].cpu().numpy(), refined[k].cpu().numpy(), float(iou[k, 0]), float(iou[k, best[k]]))
            for k in range(len(boxes))
        ]
