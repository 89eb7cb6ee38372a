"""The overlapped encode path (SAM2 on a side thread/stream) computes exactly what the sequential one does."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

from converseg_ros.engine import ConverSegEngine
from converseg_ros.engine.overlap import EncoderOverlap

PROMPTS = ["the cup on the saucer", "segment surfaces safe to place hot items"]


@pytest.fixture(scope="module")
def overlapped(tiny_engine) -> ConverSegEngine:
    return ConverSegEngine(tiny_engine.net, overlap="on")


def test_auto_overlaps_only_on_cuda(tiny_engine):
    assert not EncoderOverlap(torch.device("cpu"), "auto").enabled
    assert EncoderOverlap(torch.device("cpu"), "on").enabled
    with pytest.raises(ValueError, match="overlap must be one of"):
        EncoderOverlap(torch.device("cpu"), "sometimes")


def test_overlapped_encoding_is_identical(tiny_engine, overlapped, photos):
    sequential = tiny_engine.encode_frame(photos["coffee"])
    concurrent = overlapped.encode_frame(photos["coffee"])
    torch.testing.assert_close(concurrent.sam.image_embed, sequential.sam.image_embed, rtol=0, atol=0)
    for got, want in zip(concurrent.sam.high_res, sequential.sam.high_res, strict=True):
        torch.testing.assert_close(got, want, rtol=0, atol=0)
    torch.testing.assert_close(concurrent.prefix.hidden, sequential.prefix.hidden, rtol=0, atol=0)
    got = overlapped.segment(concurrent, PROMPTS, return_logits=True)
    want = tiny_engine.segment(sequential, PROMPTS, return_logits=True)
    for a, b in zip(got, want, strict=True):
        np.testing.assert_array_equal(a.logits, b.logits)
        np.testing.assert_array_equal(a.mask, b.mask)
        assert a.score == b.score


def test_sam2_runs_on_another_thread_while_qwen_runs(tiny_engine, photos):
    seen: dict[str, int] = {}
    net = tiny_engine.net

    def recorder(name: str):
        def hook(*_) -> None:
            seen.setdefault(name, threading.get_ident())
        return hook

    hooks = [net.sam.image_encoder.register_forward_hook(recorder("sam")),
             net.adapter.qwen.register_forward_hook(recorder("qwen"))]
    try:
        ConverSegEngine(net, overlap="on").encode_frame(photos["chelsea"])
    finally:
        for hook in hooks:
            hook.remove()
    assert seen["qwen"] == threading.get_ident() and seen["sam"] != seen["qwen"]


def test_a_failing_encoder_leaves_nothing_running():
    overlap = EncoderOverlap(torch.device("cpu"), "on")
    done = threading.Event()

    def side():
        done.wait(0.2)
        done.set()
        return "side"

    def main():
        raise RuntimeError("qwen failed")

    with pytest.raises(RuntimeError, match="qwen failed"):
        overlap.run(side, main)
    assert done.is_set()  # run() waited for the side job before raising
    assert overlap.run(lambda: 1, lambda: 2) == (1, 2)
    overlap.close()


def test_masks_thresholded_on_the_device_match_the_logits(tiny_engine, photos):
    frame = tiny_engine.encode_frame(photos["astronaut"])
    out = tiny_engine.segment(frame, PROMPTS, return_logits=True)
    for result in out:
        assert result.mask.dtype == bool and result.mask.shape == photos["astronaut"].shape[:2]
        np.testing.assert_array_equal(result.mask, result.logits > tiny_engine.logit_threshold)


@pytest.mark.cuda
def test_cuda_streams_overlap_matches_sequential(photos):
    seq = ConverSegEngine.from_preset("tiny", device="cuda", precision="fp32", overlap="off")
    par = ConverSegEngine(seq.net, overlap="auto")
    assert par._overlap.enabled
    want = seq.segment_image(photos["coffee"], PROMPTS, return_logits=True)
    got = par.segment_image(photos["coffee"], PROMPTS, return_logits=True)
    for a, b in zip(got, want, strict=True):
        np.testing.assert_allclose(a.logits, b.logits, atol=1e-5)
