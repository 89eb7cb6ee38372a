"""Qwen2.5-VL configs in the hub's flat layout (what users download) and the nested one both load."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from transformers import AutoConfig

from converseg_ros.engine import ConverSegEngine
from converseg_ros.modeling.presets import tiny_root
from converseg_ros.modeling.qwen_config import qwen_config_value, ties_word_embeddings

# Top-level keys of Qwen/Qwen2.5-VL-3B-Instruct's config.json on the hub (flat: no text_config).
HUB_3B_KEYS = {
    "architectures", "attention_dropout", "bos_token_id", "eos_token_id", "vision_start_token_id",
    "vision_end_token_id", "vision_token_id", "image_token_id", "video_token_id", "hidden_act", "hidden_size",
    "initializer_range", "intermediate_size", "max_position_embeddings", "max_window_layers", "model_type",
    "num_attention_heads", "num_hidden_layers", "num_key_value_heads", "rms_norm_eps", "rope_theta",
    "sliding_window", "tie_word_embeddings", "torch_dtype", "transformers_version", "use_cache",
    "use_sliding_window", "vocab_size", "rope_scaling", "vision_config",
}
HUB_3B_VISION_KEYS = {
    "depth", "hidden_act", "hidden_size", "intermediate_size", "num_heads", "in_chans", "out_hidden_size",
    "patch_size", "spatial_merge_size", "spatial_patch_size", "window_size", "fullatt_block_indexes",
    "tokens_per_second", "temporal_patch_size",
}
PROMPT = ["the cup on the saucer"]


def test_tiny_preset_writes_the_hubs_flat_layout(tiny_engine):
    config = json.loads((tiny_root() / "qwen" / "config.json").read_text())
    assert set(config) == HUB_3B_KEYS
    assert set(config["vision_config"]) == HUB_3B_VISION_KEYS
    assert config["rope_scaling"]["type"] == "mrope" and len(config["rope_scaling"]["mrope_section"]) == 3
    assert config["tie_word_embeddings"] is True


def test_values_are_read_from_either_layout(tiny_engine, tmp_path):
    flat = AutoConfig.from_pretrained(tiny_root() / "qwen")
    # transformers >= 5 leaves tie_word_embeddings on the top level only: the bug this helper prevents.
    assert not hasattr(flat.get_text_config(), "tie_word_embeddings")
    flat.save_pretrained(tmp_path)  # transformers writes the nested layout
    assert "text_config" in json.loads((tmp_path / "config.json").read_text())
    nested = AutoConfig.from_pretrained(tmp_path)
    for config in (flat, nested):
        assert qwen_config_value(config, "hidden_size") == 64
        assert qwen_config_value(config, "image_token_id") == flat.image_token_id
        assert ties_word_embeddings(config)
    with pytest.raises(AttributeError, match="no 'no_such_field'"):
        qwen_config_value(flat, "no_such_field")
    assert qwen_config_value(flat, "no_such_field", 7) == 7


def test_untied_flat_config_like_the_7b_model(tiny_engine, tmp_path):
    config = json.loads((tiny_root() / "qwen" / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps(dict(config, tie_word_embeddings=False)))
    assert not ties_word_embeddings(AutoConfig.from_pretrained(tmp_path))


def test_nested_layout_gives_the_same_masks(tiny_engine, tmp_path, photos):
    qwen = tmp_path / "qwen"
    shutil.copytree(tiny_root() / "qwen", qwen)
    AutoConfig.from_pretrained(qwen).save_pretrained(qwen)
    assert "text_config" in json.loads((qwen / "config.json").read_text())
    nested = ConverSegEngine.from_preset("tiny", device="cpu", precision="fp32", overrides={"vlm": str(qwen)})
    want = tiny_engine.segment_image(photos["coffee"], PROMPT, return_logits=True)[0].logits
    got = nested.segment_image(photos["coffee"], PROMPT, return_logits=True)[0].logits
    np.testing.assert_array_equal(got, want)
    lm_head = nested.net.adapter.backbone.base_model.model.lm_head.weight
    assert lm_head is nested.net.adapter.qwen.language_model.embed_tokens.weight  # tied: one copy
