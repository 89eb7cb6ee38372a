"""Tracked queries on a synthetic camera sweep over a real photo (tiny preset: the mechanics, not quality)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from converseg_ros.data.synthetic_video import camera_sweep
from converseg_ros.engine import ConverSegEngine
from converseg_ros.engine.memory import frame_tokens
from converseg_ros.engine.tracking import QueryTracker, TrackingConfig
from converseg_ros.errors import ImageError, QueryError

PROMPT = "the cup on the saucer"
OTHER = "segment surfaces safe to place hot items"
NEVER = {"min_object_score": -math.inf, "min_iou": 0.0, "reground_every": 0}  # only requests re-ground


@pytest.fixture(scope="module")
def video(photos):
    return camera_sweep(photos["coffee"], n_frames=8, size=(96, 128))


def _tracker(engine, **config) -> QueryTracker:
    return QueryTracker(engine, TrackingConfig(**{**NEVER, **config}))


class CallCounter:
    """Counts forward calls of real modules (hooks; the modules run unchanged)."""

    def __init__(self, **modules: torch.nn.Module):
        self.counts = dict.fromkeys(modules, 0)
        self._handles = [m.register_forward_hook(self._hook(name)) for name, m in modules.items()]

    def _hook(self, name: str):
        def hook(*_):
            self.counts[name] += 1
        return hook

    def close(self) -> None:
        for handle in self._handles:
            handle.remove()


def test_grounded_frames_are_segment_answers(tiny_engine, video):
    tracker = _tracker(tiny_engine)
    start = tracker.track_start(video.frames[0], PROMPT, return_logits=True)
    expected = tiny_engine.segment_image(video.frames[0], [PROMPT], return_logits=True)[0]
    assert start.grounded and start.grounding_age == 0 and start.reason == "start"
    assert np.array_equal(start.output.mask, expected.mask)
    np.testing.assert_array_equal(start.output.logits, expected.logits)
    assert start.output.score == expected.score
    tracker.track_step(video.frames[1])
    tracker.request_reground(start.track_id)
    again = tracker.track_step(video.frames[2])[0]
    expected = tiny_engine.segment_image(video.frames[2], [PROMPT], return_logits=True)[0]
    assert again.grounded and again.reason == "request" and again.grounding_age == 0
    np.testing.assert_array_equal(again.output.logits, expected.logits)


def test_sam_only_encoding_is_completed_for_language_queries(tiny_engine, video):
    sam_only = tiny_engine.encode_sam_frame(video.frames[3])
    assert sam_only.prefix is None and "qwen_prefix_ms" not in sam_only.timings
    lazy = tiny_engine.segment(sam_only, [PROMPT], return_logits=True)[0]
    assert sam_only.prefix is not None and "qwen_prefix_ms" in sam_only.timings
    full = tiny_engine.segment_image(video.frames[3], [PROMPT], return_logits=True)[0]
    np.testing.assert_array_equal(lazy.logits, full.logits)


def test_tracking_features_are_the_backbone_s(tiny_net, video):
    """Memory attention must see the encoder's top-level features without no_mem_embed, with their position
    encoding: recovered from the engine's frame encoding, they equal SAM2's own backbone outputs."""
    engine = ConverSegEngine(tiny_net)
    encoding = engine.encode_sam_frame(video.frames[0])
    tokens = frame_tokens(tiny_net.sam, encoding.sam)
    from converseg_ros.imaging import letterbox

    square, _ = letterbox(encoding.image, tiny_net.image_size)
    with torch.inference_mode():
        backbone = tiny_net.sam.forward_image(tiny_net.sam_transform([square]))
    _, feats, pos, sizes = tiny_net.sam._prepare_backbone_features(backbone)
    assert tokens.size == sizes[-1]
    torch.testing.assert_close(tokens.tokens, feats[-1], atol=1e-6, rtol=0)
    torch.testing.assert_close(tokens.pos, pos[-1], atol=0, rtol=0)


def test_tracked_frames_skip_the_language_model_and_share_one_encoding(tiny_engine, video):
    sam, qwen = tiny_engine.net.sam, tiny_engine.net.adapter.qwen
    tracker = _tracker(tiny_engine)
    first = tiny_engine.encode_frame(video.frames[0])
    for _ in range(3):  # the same prompt three times: equal token counts, so one batched decoder pass
        tracker.track_start(first, PROMPT)
    counter = CallCounter(image_encoder=sam.image_encoder, qwen=qwen, memory_attention=sam.memory_attention,
                          decoder=sam.sam_mask_decoder.transformer, memory_encoder=sam.memory_encoder)
    try:
        results = tracker.track_step(video.frames[1])
    finally:
        counter.close()
    assert [r.track_id for r in results] == [0, 1, 2]
    assert not any(r.grounded for r in results)
    assert counter.counts == {"image_encoder": 1, "qwen": 0, "memory_attention": 1, "decoder": 1,
                              "memory_encoder": 1}


def test_batched_tracks_equal_tracks_alone(tiny_engine, video):
    """Two queries batched through memory attention and decoder give what each gives on its own."""
    together = _tracker(tiny_engine)
    encoding = tiny_engine.encode_frame(video.frames[0])
    together.track_start(encoding, PROMPT)
    together.track_start(encoding, OTHER)
    alone = [_tracker(tiny_engine), _tracker(tiny_engine)]
    alone[0].track_start(encoding, PROMPT)
    alone[1].track_start(encoding, OTHER)
    for frame in video.frames[1:4]:
        encoding = tiny_engine.encode_sam_frame(frame)
        pair = together.track_step(encoding)
        singles = [tracker.track_step(encoding)[0] for tracker in alone]
        for batched, single in zip(pair, singles, strict=True):
            assert not batched.grounded and batched.grounding_age == single.grounding_age
            assert batched.output.score == pytest.approx(single.output.score, abs=1e-5)
            assert batched.object_score == pytest.approx(single.object_score, abs=1e-4)
            assert (batched.output.mask != single.output.mask).mean() < 1e-3


def test_tracked_masks_come_from_the_memory(tiny_engine, video):
    """A tracked frame's answer depends on the memory bank: the same frame after three tracked frames differs
    from it right after the grounding (same language conditioning, other memories)."""
    long_run, short_run = _tracker(tiny_engine), _tracker(tiny_engine)
    encoding = tiny_engine.encode_frame(video.frames[0])
    long_run.track_start(encoding, PROMPT, return_logits=True)
    short_run.track_start(encoding, PROMPT, return_logits=True)
    for k in (1, 2, 3):
        result = long_run.track_step(video.frames[k])[0]
        assert result.output.mask.shape == video.frames[k].shape[:2] and result.output.mask.dtype == bool
        assert result.grounding_age == k and not result.grounded
        assert np.isfinite(result.output.logits).all()
    after_memory = long_run.track_step(video.frames[4])[0]
    right_after = short_run.track_step(video.frames[4])[0]
    assert after_memory.grounding_age == 4 and right_after.grounding_age == 1
    assert np.abs(after_memory.output.logits - right_after.output.logits).max() > 1e-3


def test_memory_bank_is_bounded(tiny_engine, video):
    sam = tiny_engine.net.sam
    tracker = _tracker(tiny_engine)
    track = tracker.track_start(video.frames[0], PROMPT).track_id
    frames = [video.frames[k % len(video)] for k in range(1, sam.max_obj_ptrs_in_encoder + 3)]
    sizes = []
    for frame in frames:
        tracker.track_step(frame)
        sizes.append(tracker.memory_size(track))
    pointers, spatial = sam.max_obj_ptrs_in_encoder, sam.num_maskmem  # grounded frame included in both
    assert sizes[0] == (2, 2)
    assert max(total for total, _ in sizes) == pointers and sizes[-1] == (pointers, spatial)
    assert max(held for _, held in sizes) == spatial


def test_low_object_score_regrounds_on_the_same_frame(tiny_engine, video):
    tracker = _tracker(tiny_engine, min_object_score=math.inf)
    tracker.track_start(video.frames[0], PROMPT)
    for frame in video.frames[1:3]:
        result = tracker.track_step(frame)[0]
        assert result.grounded and result.reason == "low_object_score" and result.grounding_age == 0
        assert np.array_equal(result.output.mask, tiny_engine.segment_image(frame, [PROMPT])[0].mask)


def test_low_predicted_iou_regrounds(tiny_engine, video):
    tracker = _tracker(tiny_engine, min_iou=1.0)
    tracker.track_start(video.frames[0], PROMPT)
    result = tracker.track_step(video.frames[1])[0]
    assert result.grounded and result.reason == "low_iou"


def test_thresholds_decide_between_tracked_and_regrounded(tiny_engine, video):
    """The same tracked answer is kept or re-grounded depending on where the threshold lies around it."""
    probe = _tracker(tiny_engine)
    probe.track_start(video.frames[0], PROMPT)
    tracked = probe.track_step(video.frames[1])[0]
    for margin, grounded in ((-1e-3, False), (1e-3, True)):
        tracker = _tracker(tiny_engine, min_iou=tracked.output.score + margin)
        tracker.track_start(video.frames[0], PROMPT)
        assert tracker.track_step(video.frames[1])[0].grounded is grounded


def test_regrounds_every_n_frames_and_on_request(tiny_engine, video):
    tracker = _tracker(tiny_engine, reground_every=3)
    a = tracker.track_start(video.frames[0], PROMPT).track_id
    b = tracker.track_start(video.frames[0], OTHER).track_id
    pattern = []
    for k, frame in enumerate(video.frames[1:8], start=1):
        if k == 5:
            tracker.request_reground(b)
        results = {r.track_id: r for r in tracker.track_step(frame)}
        pattern.append((results[a].reason or results[a].grounding_age, results[b].reason or results[b].grounding_age))
    assert pattern == [(1, 1), (2, 2), ("every_n", "every_n"), (1, 1), (2, "request"), ("every_n", 1), (1, 2)]


def test_bad_input_leaves_tracks_untouched(tiny_engine, video):
    tracker = _tracker(tiny_engine)
    track = tracker.track_start(video.frames[0], PROMPT).track_id
    tracker.track_step(video.frames[1])
    before = tracker.memory_size(track)
    for bad in (np.zeros((0, 5, 3), np.uint8), np.zeros((8, 8, 2), np.uint8), video.frames[2].astype(np.float32)):
        with pytest.raises(ImageError):
            tracker.track_step(bad)
    assert tracker.memory_size(track) == before
    assert tracker.track_step(video.frames[2])[0].grounding_age == 2
    with pytest.raises(QueryError):
        tracker.track_start(video.frames[2], "   ")
    with pytest.raises(ImageError):
        tracker.track_start(np.zeros((4, 4, 5), np.uint8), OTHER)
    with pytest.raises(ValueError, match="already exists"):
        tracker.track_start(video.frames[2], OTHER, track_id=track)
    assert tracker.track_ids == [track]
    with pytest.raises(KeyError):
        tracker.stop("no such track")
    tracker.stop(track)
    assert tracker.track_step(video.frames[3]) == []


def test_named_tracks_and_config_checks(tiny_engine, video):
    tracker = _tracker(tiny_engine)
    assert tracker.track_start(video.frames[0], PROMPT, track_id="kitchen/hot").track_id == "kitchen/hot"
    assert tracker.track_start(video.frames[0], OTHER).track_id == 0
    assert [r.track_id for r in tracker.track_step(video.frames[1])] == ["kitchen/hot", 0]
    with pytest.raises(ValueError, match="reground_every"):
        TrackingConfig(reground_every=-1)
    with pytest.raises(ValueError, match="min_iou"):
        TrackingConfig(min_iou=1.5)
