"""gIoU and cIoU, overall and per concept family.

Per item: I = |P ∧ G|, U = |P ∨ G| over the pixels not marked ignore; IoU = I / U, and 1 when U = 0 (an
empty prediction on an empty mask). gIoU = mean per-item IoU; cIoU = ΣI / ΣU over the items (1 when ΣU = 0).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from converseg_ros.data.concepts import FAMILIES, OTHER, concept_family

ALL = "all"


@dataclass(frozen=True)
class ItemScore:
    """Intersection, union and IoU of one prediction."""

    id: str
    family: str
    intersection: int
    union: int

    @property
    def iou(self) -> float:
        return 1.0 if self.union == 0 else self.intersection / self.union


def score_item(
    item_id: str,
    pred: np.ndarray,
    gt: np.ndarray,
    concept: str | None = None,
    ignore: np.ndarray | None = None,
) -> ItemScore:
    """Score a bool prediction against a bool ground truth of the same shape."""
    if pred.shape != gt.shape:
        raise ValueError(f"item {item_id}: prediction {pred.shape} and mask {gt.shape} differ in size")
    pred, gt = pred.astype(bool), gt.astype(bool)
    if ignore is not None:
        keep = ~ignore.astype(bool)
        pred, gt = pred & keep, gt & keep
    return ItemScore(item_id, concept_family(concept), int((pred & gt).sum()), int((pred | gt).sum()))


@dataclass
class Aggregate:
    """Running sums for one group of items."""

    count: int = 0
    iou_sum: float = 0.0
    intersection: int = 0
    union: int = 0

    def add(self, score: ItemScore) -> None:
        self.count += 1
        self.iou_sum += score.iou
        self.intersection += score.intersection
        self.union += score.union

    def as_dict(self) -> dict[str, float | int | None]:
        if self.count == 0:
            return {"count": 0, "giou": None, "ciou": None}
        ciou = 1.0 if self.union == 0 else self.intersection / self.union
        return {"count": self.count, "giou": self.iou_sum / self.count, "ciou": ciou}


@dataclass
class SplitMetrics:
    """Aggregates for one split: ``all`` and one per concept family (``other`` for unlabelled items)."""

    groups: dict[str, Aggregate] = field(default_factory=dict)
    failed: list[str] = field(default_factory=list)

    def add(self, score: ItemScore) -> None:
        for key in (ALL, score.family):
            self.groups.setdefault(key, Aggregate()).add(score)

    def summary(self) -> dict[str, dict]:
        """``{"all": {...}, "entities": {...}, ...}`` with count, giou, ciou (families in paper order)."""
        order = [ALL, *FAMILIES, OTHER]
        return {
            key: self.groups.get(key, Aggregate()).as_dict()
            for key in order
            if key in self.groups or key in FAMILIES
        }
