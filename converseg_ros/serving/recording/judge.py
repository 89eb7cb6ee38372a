"""Which answers are hard cases (plain Python, on the recorder's thread): a score below ``min_score``, no
region found, and a tracked query whose mask disagreed with its re-grounding — the IoU between the last
tracked mask and the mask the full model gave when it grounded the query again is below ``min_track_iou``.
The judge also keeps each query's latest answer, which an operator's flag refers to."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import numpy as np

from converseg_ros.serving.queries import MODE_NAMES, MODE_TRACK, Batch, Outcome, Query
from converseg_ros.serving.recording.settings import LOW_SCORE, NOTHING_FOUND, TRACK_DISAGREED, RecordSettings

MAX_REMEMBERED = 256  # tracks' last masks and queries' latest answers kept (the least recent go first)


@dataclass(frozen=True)
class Finding:
    """Why one answer was kept."""

    reason: str
    query: Query
    detail: str


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two boolean masks (1.0 when both are empty)."""
    union = np.count_nonzero(a | b)
    return 1.0 if union == 0 else np.count_nonzero(a & b) / union


def answer_summary(outcome: Outcome) -> dict[str, Any]:
    """A query's answer as the record keeps it (no pixels: score, regions' boxes, tracking state)."""
    q, out = outcome.query, outcome.output
    regions = [{"bbox": [int(v) for v in r.bbox], "score": round(float(r.score), 4), "area_px": int(r.area)}
               for r in out.regions] if out is not None else []
    return {
        "id": q.id, "text": q.text, "mode": MODE_NAMES.get(q.mode, str(q.mode)),
        "score": round(float(out.score), 4) if out is not None else None,
        "area_px": int(np.count_nonzero(out.mask)) if out is not None else 0, "regions": regions,
        "grounded": outcome.grounded, "grounding_reason": outcome.reason, "grounding_age": outcome.grounding_age,
    }


class HardCaseJudge:
    """Judges each batch's answers (in the order they were computed)."""

    def __init__(self) -> None:
        self._tracked: OrderedDict[tuple[str, str], np.ndarray] = OrderedDict()
        self._latest: OrderedDict[tuple[str, str], tuple[Batch, Outcome]] = OrderedDict()

    def judge(self, batch: Batch, settings: RecordSettings) -> list[Finding]:
        """The hard cases among ``batch``'s answers (failed answers are not judged)."""
        found = []
        for outcome in batch.outcomes:
            out, query = outcome.output, outcome.query
            if out is None:
                continue
            self._remember(self._latest, (batch.camera, query.id), (batch, outcome))
            if NOTHING_FOUND in settings.reasons and not out.regions:
                found.append(Finding(NOTHING_FOUND, query, "no region"))
            if LOW_SCORE in settings.reasons and float(out.score) < settings.min_score:
                found.append(Finding(LOW_SCORE, query, f"score {float(out.score):.3f} < {settings.min_score:g}"))
            if query.mode == MODE_TRACK:
                finding = self._track(batch.camera, outcome, settings)
                if finding is not None:
                    found.append(finding)
        return found

    def _track(self, camera: str, outcome: Outcome, settings: RecordSettings) -> Finding | None:
        key, mask = (camera, outcome.query.id), np.asarray(outcome.output.mask, dtype=bool)
        before = self._tracked.get(key) if outcome.reason != "start" else None
        self._remember(self._tracked, key, mask)
        if before is None or not outcome.grounded or before.shape != mask.shape:
            return None
        iou = mask_iou(before, mask)
        if TRACK_DISAGREED not in settings.reasons or iou >= settings.min_track_iou:
            return None
        return Finding(TRACK_DISAGREED, outcome.query, f"IoU {iou:.3f} < {settings.min_track_iou:g} between the "
                       f"tracked mask and its re-grounding ({outcome.reason})")

    def latest(self, query_id: str, camera: str = "") -> tuple[Batch, Outcome] | None:
        """The newest answer to ``query_id`` (on ``camera``; "" = any camera)."""
        for (cam, qid), entry in reversed(self._latest.items()):
            if qid == query_id and (not camera or cam == camera):
                return entry
        return None

    @staticmethod
    def _remember(store: OrderedDict, key: tuple[str, str], value: Any) -> None:
        store[key] = value
        store.move_to_end(key)
        while len(store) > MAX_REMEMBERED:
            store.popitem(last=False)
