"""Read Qwen2.5-VL config values whatever the ``config.json`` layout.

The hub's ``Qwen/Qwen2.5-VL-{3,7}B-Instruct`` configs are *flat*: text fields such as ``hidden_size`` and
``tie_word_embeddings`` sit at the top level next to a nested ``vision_config``. transformers >= 5 moves
most of them into a generated ``text_config`` but leaves some (``tie_word_embeddings``) only on the top
level; a *nested* config (``text_config`` written out) may carry a value on either level. Every read goes
through :func:`qwen_config_value` so no code depends on where a value happens to live.
"""

from __future__ import annotations

from typing import Any

_MISSING = object()


def qwen_config_value(config: Any, name: str, default: Any = _MISSING) -> Any:
    """``name`` from the text sub-config, else from the top level, else ``default`` (or a clear error)."""
    levels = []
    get_text_config = getattr(config, "get_text_config", None)
    if callable(get_text_config):
        levels.append(get_text_config())
    levels.append(config)
    for level in levels:
        value = getattr(level, name, _MISSING)
        if value is not _MISSING and value is not None:
            return value
    if default is not _MISSING:
        return default
    raise AttributeError(
        f"Qwen2.5-VL config has no {name!r} on its text config nor at the top level "
        f"({type(config).__name__}); is this a Qwen2.5-VL config.json?"
    )


def ties_word_embeddings(config: Any) -> bool:
    """Whether the LM head shares the input embedding (true for the 3B model, false for 7B).

    The flag ties when set on either level, the rule transformers itself applies to older nested saves.
    """
    text = config.get_text_config() if callable(getattr(config, "get_text_config", None)) else config
    return bool(getattr(config, "tie_word_embeddings", False) or getattr(text, "tie_word_embeddings", False))


# Sizes of the released Qwen2.5-VL-3B-Instruct (its hub config.json); benchmarks build it with random weights.
QWEN25_VL_3B_TEXT = {"hidden_size": 2048, "intermediate_size": 11008, "num_attention_heads": 16,
                     "num_hidden_layers": 36, "num_key_value_heads": 2, "mrope_section": [16, 24, 24]}
QWEN25_VL_3B_VISION = {"depth": 32, "hidden_size": 1280, "intermediate_size": 3420, "num_heads": 16,
                       "out_hidden_size": 2048, "window_size": 112, "fullatt_block_indexes": [7, 15, 23, 31]}


def hub_flat_config(text: dict, vision: dict, vocab_size: int, token_ids: dict[str, int]) -> dict:
    """A ``config.json`` in exactly the hub's flat layout and key set (``Qwen2.5-VL-3B-Instruct``'s: text
    fields and ``tie_word_embeddings`` at the top level, ``vision_config`` nested, no ``text_config``), with
    the given sizes and the special-token ids read from the tokenizer."""
    from transformers import __version__ as transformers_version

    text = dict(text)
    mrope_section = text.pop("mrope_section")
    return {
        "architectures": ["Qwen2_5_VLForConditionalGeneration"],
        "attention_dropout": 0.0,
        "bos_token_id": token_ids["<|endoftext|>"],
        "eos_token_id": token_ids["<|im_end|>"],
        "vision_start_token_id": token_ids["<|vision_start|>"],
        "vision_end_token_id": token_ids["<|vision_end|>"],
        "vision_token_id": token_ids["<|vision_pad|>"],
        "image_token_id": token_ids["<|image_pad|>"],
        "video_token_id": token_ids["<|video_pad|>"],
        "hidden_act": "silu",
        "initializer_range": 0.02,
        **text,
        "max_position_embeddings": 128000,
        "max_window_layers": 70,
        "model_type": "qwen2_5_vl",
        "rms_norm_eps": 1e-06,
        "rope_theta": 1000000.0,
        "sliding_window": 32768,
        "tie_word_embeddings": True,
        "torch_dtype": "bfloat16",
        "transformers_version": transformers_version,
        "use_cache": True,
        "use_sliding_window": False,
        "vision_config": {
            "hidden_act": "silu", "in_chans": 3, "patch_size": 14, "spatial_merge_size": 2,
            "spatial_patch_size": 14, "tokens_per_second": 2, "temporal_patch_size": 2, **vision,
        },
        "rope_scaling": {"type": "mrope", "mrope_section": mrope_section},
        "vocab_size": vocab_size,
    }
