"""Segmentation loss on decoder output 0: BCE-with-logits + weighted soft Dice (the reference's loss)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def dice_loss(logits: torch.Tensor, target: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Per-sample soft Dice loss 1 - (2·Σpt + ε)/(Σp + Σt + ε), averaged over the batch."""
    probs = logits.sigmoid().flatten(1)
    target = target.flatten(1)
    inter = (probs * target).sum(1)
    return (1 - (2 * inter + eps) / (probs.sum(1) + target.sum(1) + eps)).mean()


def segmentation_loss(
    logits: torch.Tensor, target: torch.Tensor, bce_weight: float = 1.0, dice_weight: float = 0.25
) -> dict[str, torch.Tensor]:
    """Loss terms for logits [B, h, w] against a {0,1} target of the same shape (computed in fp32)."""
    logits, target = logits.float(), target.float()
    bce = F.binary_cross_entropy_with_logits(logits, target)
    dice = dice_loss(logits, target)
    return {"loss": bce_weight * bce + dice_weight * dice, "bce": bce, "dice": dice}


def batch_iou(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """IoU of (logits > 0) against a bool target, per sample [B] (empty vs empty = 1)."""
    pred = (logits > 0).flatten(1)
    gt = target.bool().flatten(1)
    inter = (pred & gt).sum(1).float()
    union = (pred | gt).sum(1).float()
    return torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(union))
