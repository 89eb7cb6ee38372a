"""Qwen's attention kernels are a speed choice: every implementation gives the same masks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from converseg_ros.engine import ConverSegEngine
from converseg_ros.modeling.build import resolve_attention


def test_auto_picks_sdpa_without_flash_attn_or_gpu():
    assert resolve_attention("auto", torch.device("cpu"), torch.bfloat16) == "sdpa"
    assert resolve_attention("eager", torch.device("cpu"), torch.float32) == "eager"
    with pytest.raises(ValueError, match="unknown attention"):
        resolve_attention("fastest", torch.device("cpu"), torch.float32)


def test_eager_and_sdpa_agree(tiny_engine, photos):
    eager = ConverSegEngine.from_preset("tiny", device="cpu", precision="fp32", attention="eager")
    qwen = eager.net.adapter.qwen
    assert qwen.config._attn_implementation == "eager"
    assert qwen.visual.config._attn_implementation == "eager"
    assert tiny_engine.net.adapter.qwen.config._attn_implementation == "sdpa"
    prompts = ["the cup on the saucer"]
    want = tiny_engine.segment_image(photos["coffee"], prompts, return_logits=True)[0]
    got = eager.segment_image(photos["coffee"], prompts, return_logits=True)[0]
    np.testing.assert_allclose(got.logits, want.logits, atol=1e-3)
    assert (got.mask != want.mask).mean() < 1e-3
