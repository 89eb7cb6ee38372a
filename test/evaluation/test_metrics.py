"""gIoU / cIoU on hand-computed cases, empty predictions / empty masks, per concept family."""

import numpy as np
import pytest

from converseg_ros.data.concepts import concept_family
from converseg_ros.evaluation.metrics import SplitMetrics, score_item


def _mask(cells: list[tuple[int, int]], shape=(4, 4)) -> np.ndarray:
    m = np.zeros(shape, bool)
    for r, c in cells:
        m[r, c] = True
    return m


def test_item_iou_hand_computed():
    pred = _mask([(0, 0), (0, 1), (1, 0)])
    gt = _mask([(0, 0), (1, 1)])
    s = score_item("a", pred, gt)
    assert (s.intersection, s.union) == (1, 4)
    assert s.iou == pytest.approx(0.25)


def test_empty_cases():
    empty = np.zeros((3, 3), bool)
    full = np.ones((3, 3), bool)
    assert score_item("both", empty, empty).iou == 1.0
    assert score_item("pred-empty", empty, full).iou == 0.0
    assert score_item("gt-empty", full, empty).iou == 0.0


def test_ignore_pixels_are_excluded():
    pred = _mask([(0, 0), (3, 3)])
    gt = _mask([(0, 0)])
    ignore = _mask([(3, 3)])
    assert score_item("x", pred, gt, ignore=ignore).iou == 1.0
    assert score_item("x", pred, gt).iou == 0.5


def test_size_mismatch_raises():
    with pytest.raises(ValueError, match="differ in size"):
        score_item("x", np.zeros((2, 3), bool), np.zeros((3, 2), bool))


def test_giou_ciou_per_family():
    m = SplitMetrics()
    # entities: IoU 1/4 (I=1, U=4) and empty-on-empty (I=0, U=0, IoU 1)
    m.add(score_item("e1", _mask([(0, 0), (0, 1), (1, 0)]), _mask([(0, 0), (1, 1)]), "entities"))
    m.add(score_item("e2", np.zeros((4, 4), bool), np.zeros((4, 4), bool), "Entities"))
    # spatial: I=2, U=2 (IoU 1) and I=0, U=6 (IoU 0)
    m.add(score_item("s1", _mask([(2, 2), (2, 3)]), _mask([(2, 2), (2, 3)]), "Spatial & Layout"))
    m.add(score_item("s2", _mask([(0, 0), (0, 1), (0, 2)]), _mask([(3, 0), (3, 1), (3, 2)]), "spatial"))
    # physics, via a sub-type name: full 16-pixel prediction on 4-pixel mask -> 4/16
    m.add(score_item("p1", np.ones((4, 4), bool), _mask([(0, 0), (1, 1), (2, 2), (3, 3)]), "hazard"))
    out = m.summary()
    assert out["entities"] == {
        "count": 2,
        "giou": pytest.approx((0.25 + 1.0) / 2),
        "ciou": pytest.approx(1 / 4),
    }
    assert out["spatial"] == {"count": 2, "giou": pytest.approx(0.5), "ciou": pytest.approx(2 / 8)}
    assert out["physics"]["giou"] == pytest.approx(0.25)
    assert out["relations"] == {"count": 0, "giou": None, "ciou": None}
    assert out["all"]["count"] == 5
    assert out["all"]["giou"] == pytest.approx((0.25 + 1 + 1 + 0 + 0.25) / 5)
    assert out["all"]["ciou"] == pytest.approx((1 + 0 + 2 + 0 + 4) / (4 + 0 + 2 + 6 + 16))
    assert list(out)[:6] == ["all", "entities", "spatial", "relations", "affordances", "physics"]


@pytest.mark.parametrize(
    "label,family",
    [
        ("ENTITIES", "entities"),
        ("Relations & Events", "relations"),
        ("Affordances & Functions", "affordances"),
        ("Physics & Safety", "physics"),
        ("spatial.visibility_occlusion", "spatial"),
        ("event_state", "relations"),
        ("counterfactual_affordance", "affordances"),
        (None, "other"),
        ("weather", "other"),
    ],
)
def test_concept_family_mapping(label, family):
    assert concept_family(label) == family
