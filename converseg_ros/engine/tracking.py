"""Continuous language queries at camera rate: ground once with ConverSeg-Net, follow with SAM2's memory.

``QueryTracker`` (one per camera) holds any number of tracked queries::

    tracker = QueryTracker(engine, TrackingConfig(reground_every=30))
    first = tracker.track_start(image0, "segment surfaces safe to place hot items")   # grounded
    for image in camera:
        for result in tracker.track_step(image):      # one SAM2 image-encoder pass for every query
            result.output.mask, result.grounded, result.grounding_age

What each frame costs and why:

* **Grounding** is ``ConverSegEngine.segment`` on the frame (SAM2 image encoder, Qwen image prefix, the
  query's tokens, mask decoder): the grounded mask *is* segment()'s mask. SAM2's memory encoder then turns
  it into the track's conditioning memory (temporal slot 0, as SAM2's prompted frame). The object counts as
  present iff the grounded mask is non-empty: the grounded answer is authoritative, as SAM2 treats a mask it
  is given (``_use_mask_as_output``), and ConverSeg's decoder never trained its object-score head on
  language prompts.
* **Tracked frames** run the SAM2 image encoder once for all queries, then per query SAM2's memory attention
  over its bank (the grounded frame, up to ``num_maskmem - 1`` recent frames and their object pointers,
  engine/memory.py), the mask decoder and the memory encoder; no language model.
* **Language conditioning is kept**: on tracked frames the decoder gets the query's sparse tokens and dense
  bias from its last grounding, not SAM2's empty prompt (a padding point and its no-mask embedding). SAM2's
  decoder takes any prompt tokens, and ConverSeg fine-tuned it only with these: an empty prompt would put
  the fine-tuned decoder off its training inputs, while the language tokens cost nothing (computed at
  grounding) and say *what* to segment where the memory says *where*. They come from Qwen reading the
  grounded frame and are refreshed at every re-grounding.
* The output is chosen as the engine's ``decode_mode`` chooses it (``multimask``: best predicted IoU of
  outputs 1..3, as SAM2 tracks with ``multimask_output_for_tracking``); on tracked frames an object score
  <= 0 means absent (SAM2's rule): empty mask, no-object memory and pointer.
* **Re-grounding** happens when a tracked frame's object score or predicted IoU is at or below its
  threshold (on the same frame: its SAM2 encoding is reused, the Qwen prefix added, so a rejected tracked
  mask is never returned), every ``reground_every`` frames, and on request. The bank restarts from the
  new grounding: memories of a drifted mask would pull the track back.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from collections.abc import Hashable
from dataclasses import dataclass, field

import numpy as np
import torch

from converseg_ros.engine.core import ConverSegEngine, FrameEncoding, SegmentationOutput
from converseg_ros.engine.decoding import DecodedPrompt, decode_prompts
from converseg_ros.engine.memory import (
    MemoryBank,
    MemoryEntry,
    condition_on_memory,
    encode_memory,
    frame_tokens,
    masked_logits,
    object_pointers,
)
from converseg_ros.engine.postprocess import logits_to_image
from converseg_ros.modeling.sam2_model import SamFeatures

# Object-score logits that stand for "present"/"absent" on a grounded frame (SAM2's mask-input values).
_PRESENT, _ABSENT = 10.0, -10.0


@dataclass(frozen=True)
class TrackingConfig:
    """When a tracked query is grounded again by the full model."""

    min_object_score: float = 0.0  # object-score logit; SAM2 deems an object present above 0
    min_iou: float = 0.5  # the decoder's predicted IoU of the tracked mask
    reground_every: int = 30  # frames after a grounding; 0 = never by count

    def __post_init__(self) -> None:
        if self.reground_every < 0:
            raise ValueError(f"reground_every must be >= 0 (0 = off), got {self.reground_every}")
        if not 0.0 <= self.min_iou <= 1.0:
            raise ValueError(f"min_iou must be in [0, 1], got {self.min_iou}")


@dataclass
class TrackResult:
    """One tracked query's answer on one frame."""

    track_id: Hashable
    output: SegmentationOutput  # mask, score (predicted IoU), regions, timings
    grounded: bool  # True: the full ConverSeg-Net answered; False: SAM2's memory propagated the mask
    grounding_age: int  # frames since the last grounding (0 on a grounded frame)
    object_score: float  # the decoder's object-score logit
    reason: str = ""  # why this frame was grounded: start, request, every_n, low_object_score, low_iou


@dataclass
class _Track:
    track_id: Hashable
    prompt: str
    options: tuple[bool, int, int]  # return_logits, min_region_area, max_regions
    bank: MemoryBank
    language: tuple[torch.Tensor, torch.Tensor] | None = None  # sparse [1, N, C], dense [1, C]
    frame_index: int = 0  # frames seen since the track started
    grounded_at: int = 0
    reground_requested: bool = False


@dataclass
class _Update:
    """A computed but not yet applied change of one track (applied only when the whole frame succeeded)."""

    track: _Track
    index: int  # the frame's index in the track
    result: TrackResult
    entry: MemoryEntry
    language: tuple[torch.Tensor, torch.Tensor] | None = None  # set when grounded


@dataclass
class _Propagated:
    track: _Track
    decoded: DecodedPrompt
    timings: dict[str, float] = field(default_factory=dict)


class QueryTracker:
    """Tracked language queries on one camera, sharing each frame's SAM2 encoding.

    Thread-safe; every call waits for a running step, so call it from the thread that runs the model.
    """

    def __init__(self, engine: ConverSegEngine, config: TrackingConfig | None = None):
        self.engine = engine
        self.config = config or TrackingConfig()
        self._tracks: dict[Hashable, _Track] = {}
        self._next_id = 0
        self._memory_pos: torch.Tensor | None = None  # memory-encoder position encoding, equal for all frames
        self._lock = threading.Lock()

    @property
    def track_ids(self) -> list[Hashable]:
        return list(self._tracks)

    def memory_size(self, track_id: Hashable) -> tuple[int, int]:
        """(frames in the track's memory bank, of which hold spatial memory)."""
        bank = self._tracks[track_id].bank
        return len(bank), bank.spatial_count()

    def encode(self, image: np.ndarray) -> FrameEncoding:
        """The SAM2 encoding a tracked frame needs (validated: ImageError on a bad frame)."""
        return self.engine.encode_sam_frame(image)

    @torch.inference_mode()
    def track_start(
        self, frame: np.ndarray | FrameEncoding, prompt: str, track_id: Hashable | None = None,
        return_logits: bool = False, min_region_area: int = 1, max_regions: int = 10,
    ) -> TrackResult:
        """Ground ``prompt`` on ``frame`` (an image or an encoding shared with other calls) and track it from
        there. Raises QueryError (bad prompt) or ImageError (bad frame) before anything is kept."""
        with self._lock:
            if track_id is None:
                track_id = self._next_id
            if track_id in self._tracks:
                raise ValueError(f"track {track_id!r} already exists; stop it first")
            encoding = frame if isinstance(frame, FrameEncoding) else self.engine.encode_frame(frame)
            track = _Track(track_id, prompt, (return_logits, min_region_area, max_regions), MemoryBank(self._sam))
            update = self._ground(encoding, [(track, "start", 0)])[0]
            self._apply([update], grounded=True)
            self._tracks[track_id] = track
            if isinstance(track_id, int) and track_id >= self._next_id:
                self._next_id = track_id + 1
            return update.result

    @torch.inference_mode()
    def track_step(self, frame: np.ndarray | FrameEncoding) -> list[TrackResult]:
        """Answer every tracked query on the next frame; one result per track, in start order.

        A bad frame raises ImageError and leaves every track as it was.
        """
        with self._lock:
            if not self._tracks:
                return []
            start = time.perf_counter()
            encoding = frame if isinstance(frame, FrameEncoding) else self.encode(frame)
            due: dict[Hashable, str] = {}
            for track in self._tracks.values():
                age = track.frame_index + 1 - track.grounded_at
                if track.reground_requested:
                    due[track.track_id] = "request"
                elif self.config.reground_every and age >= self.config.reground_every:
                    due[track.track_id] = "every_n"
            tracked = [t for t in self._tracks.values() if t.track_id not in due]
            propagated = self._propagate(encoding, tracked) if tracked else []
            keep = []
            for item in propagated:
                reason = self._weak(item.decoded)
                if reason:
                    due[item.track.track_id] = reason
                else:
                    keep.append(item)
            updates = self._tracked_updates(encoding, keep)
            grounding = [(t, due[t.track_id], t.frame_index + 1) for t in self._tracks.values() if t.track_id in due]
            regrounded = self._ground(encoding, grounding) if grounding else []
            self._apply(updates, grounded=False)
            self._apply(regrounded, grounded=True)
            frame_ms = (time.perf_counter() - start) * 1e3
            by_id = {u.track.track_id: u.result for u in (*updates, *regrounded)}
            results = [by_id[track_id] for track_id in self._tracks]
            for result in results:
                result.output.timings["frame_ms"] = frame_ms
            return results

    def request_reground(self, track_id: Hashable | None = None) -> None:
        """Ground ``track_id`` (every track when None) again on the next frame."""
        with self._lock:
            for track in self._tracks.values() if track_id is None else [self._tracks[track_id]]:
                track.reground_requested = True

    def stop(self, track_id: Hashable) -> None:
        """Forget a track and its memory (KeyError if unknown)."""
        with self._lock:
            del self._tracks[track_id]

    @property
    def _sam(self):
        return self.engine.net.sam

    def _weak(self, decoded: DecodedPrompt) -> str:
        if float(decoded.object_score) <= self.config.min_object_score:
            return "low_object_score"
        if float(decoded.score) <= self.config.min_iou:
            return "low_iou"
        return ""

    def _ground(self, encoding: FrameEncoding, items: list[tuple[_Track, str, int]]) -> list[_Update]:
        """Full ConverSeg-Net on the frame for each (track, reason, frame index) and its new memory."""
        by_options: dict[tuple, list[tuple[_Track, str, int]]] = defaultdict(list)
        for item in items:
            by_options[item[0].options].append(item)
        updates = []
        for (return_logits, min_area, max_regions), members in by_options.items():
            answers = self.engine.segment_with_state(
                encoding, [track.prompt for track, _, _ in members], return_logits, min_area, max_regions
            )
            outputs = [output for output, _ in answers]
            decoded = [state for _, state in answers]
            present = torch.tensor([_PRESENT if o.mask.any() else _ABSENT for o in outputs])
            entries, memory_ms = self._remember(encoding, decoded, present, from_prompt=True)
            for (track, reason, index), output, state, entry in zip(members, outputs, decoded, entries, strict=True):
                output.timings.update(self._frame_timings(encoding), memory_encode_ms=memory_ms)
                result = TrackResult(track.track_id, output, True, 0, float(state.object_score), reason)
                updates.append(_Update(track, index, result, entry, (state.sparse, state.dense)))
        return updates

    def _propagate(self, encoding: FrameEncoding, tracks: list[_Track]) -> list[_Propagated]:
        """Memory attention and mask decoder for each track on a frame (nothing is stored yet)."""
        sam = self._sam
        with self.engine._lock:  # the engine's model lock: one model user at a time
            start = time.perf_counter()
            frame = frame_tokens(sam, encoding.sam)
            groups: dict[tuple, list[int]] = defaultdict(list)
            for i, track in enumerate(tracks):
                groups[track.bank.layout(track.frame_index + 1)].append(i)
            conditioned: list[torch.Tensor | None] = [None] * len(tracks)
            for members in groups.values():
                banks = [tracks[i].bank for i in members]
                indices = [tracks[i].frame_index + 1 for i in members]
                features = condition_on_memory(sam, frame, banks, indices, self._memory_pos)
                for row, i in enumerate(members):
                    conditioned[i] = features[row : row + 1]
            attended = time.perf_counter()
            features = SamFeatures(torch.cat(conditioned), encoding.sam.high_res)
            decoded = decode_prompts(sam, features, [t.language for t in tracks], self.engine.decode_mode)
            done = time.perf_counter()
        timings = {"memory_attention_ms": (attended - start) * 1e3 / len(tracks),
                   "decode_ms": (done - attended) * 1e3 / len(tracks)}
        return [_Propagated(track, d, dict(timings)) for track, d in zip(tracks, decoded, strict=True)]

    def _tracked_updates(self, encoding: FrameEncoding, items: list[_Propagated]) -> list[_Update]:
        if not items:
            return []
        decoded = [item.decoded for item in items]
        object_scores = torch.stack([d.object_score for d in decoded])
        logits = masked_logits(torch.stack([d.logits for d in decoded]), object_scores)
        full = logits_to_image(logits, encoding.geometry)
        entries, memory_ms = self._remember(encoding, decoded, object_scores, from_prompt=False)
        outputs = self.engine.make_outputs(
            [item.track.prompt for item in items], full, torch.stack([d.score for d in decoded]),
            [item.track.options for item in items],
            [{**self._frame_timings(encoding), **item.timings, "memory_encode_ms": memory_ms} for item in items],
        )
        updates = []
        for i, (item, entry, output) in enumerate(zip(items, entries, outputs, strict=True)):
            track = item.track
            index = track.frame_index + 1
            result = TrackResult(track.track_id, output, False, index - track.grounded_at,
                                 float(decoded[i].object_score))
            updates.append(_Update(track, index, result, entry))
        return updates

    def _remember(
        self, encoding: FrameEncoding, decoded: list[DecodedPrompt], object_scores: torch.Tensor, from_prompt: bool
    ) -> tuple[list[MemoryEntry], float]:
        """SAM2's memory encoder and object pointers for masks of one frame (batched); ms per mask."""
        sam = self._sam
        with self.engine._lock:
            start = time.perf_counter()
            frame = frame_tokens(sam, encoding.sam)
            logits = torch.stack([d.logits for d in decoded])
            features, pos = encode_memory(sam, frame, logits, object_scores, from_prompt)
            pointers = object_pointers(sam, torch.stack([d.token for d in decoded]), object_scores)
            if self._memory_pos is None:
                self._memory_pos = pos
            elapsed = (time.perf_counter() - start) * 1e3 / len(decoded)
        entries = [MemoryEntry(features[i : i + 1].clone(), pointers[i : i + 1].clone()) for i in range(len(decoded))]
        return entries, elapsed

    @staticmethod
    def _frame_timings(encoding: FrameEncoding) -> dict[str, float]:
        return {k: v for k, v in encoding.timings.items() if k in ("sam_encode_ms", "qwen_prefix_ms")}

    @staticmethod
    def _apply(updates: list[_Update], grounded: bool) -> None:
        for update in updates:
            track = update.track
            track.frame_index = update.index
            if grounded:
                track.grounded_at = update.index
                track.language = update.language
                track.reground_requested = False
                track.bank.reset(update.index, update.entry)
            else:
                track.bank.add(update.index, update.entry)


