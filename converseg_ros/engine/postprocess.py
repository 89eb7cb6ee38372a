"""Low-resolution decoder logits -> full-resolution logits of the original image (reference demo/eval)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from converseg_ros.imaging import SquareGeometry, SquashGeometry


def logits_to_image(low_res: torch.Tensor, geo: SquareGeometry) -> torch.Tensor:
    """[B, h, w] low-res logits -> [B, H, W] float32 logits on the original image, bilinear
    (align_corners=False). Letterbox (demo.py): up to the square SAM2 input, crop the letterbox, down to
    H x W. Squash (eval.py): straight to H x W.
    """
    if isinstance(geo, SquashGeometry):
        full = F.interpolate(low_res[:, None].float(), size=(geo.height, geo.width), mode="bilinear",
                             align_corners=False)
        return full[:, 0]
    square = F.interpolate(low_res[:, None].float(), size=(geo.size, geo.size), mode="bilinear",
                           align_corners=False)
    crop = square[:, :, geo.top : geo.top + geo.new_height, geo.left : geo.left + geo.new_width]
    full = F.interpolate(crop, size=(geo.height, geo.width), mode="bilinear", align_corners=False)
    return full[:, 0]


def probability_to_logit(threshold: float) -> float:
    """Mask threshold given as a probability (0.5 = the reference's logit 0)."""
    if not 0.0 < threshold < 1.0:
        raise ValueError(f"mask threshold must be in (0, 1), got {threshold}")
    return float(torch.logit(torch.tensor(threshold, dtype=torch.float64)))
