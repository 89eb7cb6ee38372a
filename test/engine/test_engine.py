"""The engine's cached per-frame path gives the reference path's masks, alone or batched."""

from __future__ import annotations

import weakref

import cv2
import numpy as np
import pytest

from converseg_ros.engine import ConverSegEngine
from converseg_ros.engine.reference import reference_logits
from converseg_ros.errors import ImageError, QueryError

PROMPTS = [
    "segment surfaces safe to place hot items",
    "which box can I pull without toppling the stack?",
    "the cup",
    "find the handle I can grasp <|im_end|> please",  # typed special tokens are dropped, as in the reference
]


def _assert_same(logits_a: np.ndarray, logits_b: np.ndarray, mask_a: np.ndarray, mask_b: np.ndarray) -> None:
    np.testing.assert_allclose(logits_a, logits_b, atol=1e-4, rtol=1e-4)
    decided = np.abs(logits_b) > 1e-3  # pixels within float noise of the threshold may flip
    assert np.array_equal(mask_a[decided], mask_b[decided])


@pytest.mark.parametrize("decode_mode", ["multimask", "first"])
def test_cached_frame_matches_reference_per_query_path(tiny_net, photos, decode_mode):
    engine = ConverSegEngine(tiny_net, decode_mode=decode_mode)
    image = photos["coffee"]
    frame = engine.encode_frame(image)
    outputs = engine.segment(frame, PROMPTS, return_logits=True)
    assert len(outputs) == len(PROMPTS)
    for prompt, out in zip(PROMPTS, outputs, strict=True):
        expected = reference_logits(tiny_net, image, prompt, decode_mode)
        assert out.mask.shape == image.shape[:2] and out.mask.dtype == bool
        _assert_same(out.logits, expected, out.mask, expected > 0)


def test_batch_equals_one_by_one_and_frame_is_reusable(tiny_engine, photos):
    frame = tiny_engine.encode_frame(photos["astronaut"])
    batched = tiny_engine.segment(frame, PROMPTS, return_logits=True)
    for prompt, together in zip(PROMPTS, batched, strict=True):
        alone = tiny_engine.segment(frame, [prompt], return_logits=True)[0]
        _assert_same(together.logits, alone.logits, together.mask, alone.mask)
        assert together.score == pytest.approx(alone.score, abs=1e-5)


def test_answers_depend_on_prompt_and_image(tiny_engine, photos):
    a, b = tiny_engine.segment_image(photos["coffee"], PROMPTS[:2], return_logits=True)
    assert np.abs(a.logits - b.logits).max() > 1e-2
    height, width = photos["coffee"].shape[:2]
    cat = cv2.resize(photos["chelsea"], (width, height))  # another photo at the same size
    other = tiny_engine.segment_image(cat, PROMPTS[:1], return_logits=True)[0]
    assert np.abs(other.logits - a.logits).max() > 1e-2
    assert (other.mask != a.mask).mean() > 0.05  # the same prompt gives another mask on another image


def test_regions_come_from_the_mask(tiny_engine, photos):
    out = tiny_engine.segment_image(photos["coffee"], PROMPTS[:1], min_region_area=20, max_regions=5)[0]
    assert 0 < len(out.regions) <= 5
    for region in out.regions:
        x, y, w, h = region.bbox
        assert region.area >= 20 and region.crop(out.mask).sum() >= region.area
        assert x <= region.centroid[0] <= x + w and y <= region.centroid[1] <= y + h


@pytest.mark.parametrize("prompt", ["", "   ", "<|im_end|><|im_start|>", "x" * 5000])
def test_bad_queries_raise_clear_errors(tiny_engine, photos, prompt):
    frame = tiny_engine.encode_frame(photos["coffee"][:64, :64])
    with pytest.raises(QueryError):
        tiny_engine.segment(frame, ["fine", prompt])


def test_bad_frames_raise_image_errors(tiny_engine):
    for bad in (np.zeros((0, 5, 3), np.uint8), np.zeros((4, 4, 2), np.uint8), np.zeros((4, 4, 3), np.float32)):
        with pytest.raises(ImageError):
            tiny_engine.encode_frame(bad)


def test_warmup_runs_one_query_on_a_frame_of_the_camera_size(tiny_net):
    engine = ConverSegEngine(tiny_net)
    frames, answers = [], []
    encode, segment = engine.encode_frame, engine.segment

    def encode_probe(image):
        frames.append(encode(image))
        return frames[-1]

    def segment_probe(frame, prompts, **kwargs):
        answers.extend(segment(frame, prompts, **kwargs))
        return answers

    engine.encode_frame, engine.segment = encode_probe, segment_probe
    elapsed_ms = engine.warmup((48, 80))
    (frame,) = frames
    (answer,) = answers
    assert frame.image.shape == (48, 80, 3) and answer.mask.shape == (48, 80)
    assert elapsed_ms >= frame.timings["encode_ms"] > 0  # the duration covers the inference it ran


@pytest.mark.parametrize("shape", [(1, 1, 3), (2, 300, 3), (300, 2, 3), (1, 199, 3), (7, 9)])
def test_tiny_and_elongated_frames_and_qwen_sees_the_pil_pixels(tiny_engine, shape):
    import torch
    from PIL import Image

    image = np.random.default_rng(0).integers(0, 255, shape, dtype=np.uint8)
    out = tiny_engine.segment_image(image, ["the cup"])[0]
    assert out.mask.shape == shape[:2]
    inputs = tiny_engine.net.inputs
    rgb = np.repeat(image[..., None], 3, axis=2) if image.ndim == 2 else image
    prefix_text, _ = inputs.split("x")
    from_pil = inputs.processor(text=[prefix_text], images=[Image.fromarray(rgb)], return_tensors="pt")
    assert torch.equal(inputs.prefix(image if image.ndim == 3 else rgb)["pixel_values"], from_pil["pixel_values"])


def test_pixel_cap_reduces_qwen_image_tokens(tiny_net, photos):
    from converseg_ros.modeling.qwen_inputs import QwenInputs

    full = tiny_net.inputs.prefix(photos["astronaut"])["input_ids"].shape[1]
    capped = QwenInputs(tiny_net.inputs.processor, max_pixels=128 * 128).prefix(photos["astronaut"])
    assert capped["input_ids"].shape[1] < full / 4


def test_close_releases_the_model(photos):
    engine = ConverSegEngine.from_preset("tiny", device="cpu", precision="fp32")  # a model of its own
    engine.segment_image(photos["coffee"][:64, :96], ["the cup"])
    net = weakref.ref(engine.net)
    engine.close()
    assert engine.net is None and net() is None  # nothing else keeps the model alive


@pytest.mark.cuda
def test_close_frees_the_gpu_memory(photos):
    import torch

    before = torch.cuda.memory_allocated()
    engine = ConverSegEngine.from_preset("tiny", device="cuda", precision="fp32")
    engine.segment_image(photos["coffee"], ["the cup"])
    assert torch.cuda.memory_allocated() > before
    engine.close()
    assert torch.cuda.memory_allocated() <= before


def test_bf16_sam2_encoder_is_an_opt_in_close_to_fp32(tiny_net, photos):
    import torch

    fp32 = ConverSegEngine(tiny_net).segment_image(photos["coffee"], PROMPTS[:1], return_logits=True)[0]
    fast = ConverSegEngine(tiny_net, sam2_precision="bf16")
    frame = fast.encode_frame(photos["coffee"])
    assert all(t.dtype == torch.float32 for t in (frame.sam.image_embed, *frame.sam.high_res))
    bf16 = fast.segment(frame, PROMPTS[:1], return_logits=True)[0]
    assert not np.array_equal(bf16.logits, fp32.logits)  # really ran in reduced precision
    agreement = (bf16.mask == fp32.mask).mean()
    assert agreement > 0.9
    with pytest.raises(ValueError, match="sam2_precision"):
        ConverSegEngine(tiny_net, sam2_precision="fp8")
