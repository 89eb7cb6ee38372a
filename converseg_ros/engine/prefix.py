"""The Qwen image prefix, computed once per frame, and cached suffix passes for any number of prompts."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers import DynamicCache


@dataclass
class QwenPrefix:
    """Prompt-independent part of the Qwen pass: KV cache and final hidden states of the prefix."""

    input_ids: torch.Tensor  # [1, P]
    hidden: torch.Tensor  # [1, P, D] final (post-norm) hidden states
    keys_values: list[tuple[torch.Tensor, torch.Tensor]]  # per layer, [1, kv_heads, P, head_dim]
    next_position: int  # rope position of the first suffix token

    @property
    def length(self) -> int:
        return int(self.input_ids.shape[1])


def encode_prefix(qwen, inputs: dict[str, torch.Tensor]) -> QwenPrefix:
    """Run the image prefix through the inner Qwen2.5-VL model once, keeping its KV cache."""
    position_ids, _ = qwen.get_rope_index(
        inputs["input_ids"], mm_token_type_ids=inputs["mm_token_type_ids"],
        image_grid_thw=inputs["image_grid_thw"], attention_mask=inputs["attention_mask"],
    )
    out = qwen(
        input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"], position_ids=position_ids,
        pixel_values=inputs["pixel_values"], image_grid_thw=inputs["image_grid_thw"], use_cache=True,
    )
    keys_values = [(layer.keys, layer.values) for layer in out.cache.layers]
    return QwenPrefix(inputs["input_ids"], out.last_hidden_state, keys_values, int(position_ids.max()) + 1)


def run_suffixes(
    qwen, prefix: QwenPrefix, suffix_ids: torch.Tensor, suffix_mask: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Run B right-padded prompt suffixes on top of the cached prefix.

    Returns the whole sequences' (input_ids [B, P+L], attention_mask [B, P+L], hidden [B, P+L, D]), the
    same tensors a full uncached pass would give for these prompts.
    """
    batch, length = suffix_ids.shape
    seeded = [(k.expand(batch, -1, -1, -1), v.expand(batch, -1, -1, -1)) for k, v in prefix.keys_values]
    cache = DynamicCache(ddp_cache_data=seeded)
    prefix_mask = torch.ones(batch, prefix.length, dtype=suffix_mask.dtype, device=suffix_mask.device)
    attention_mask = torch.cat([prefix_mask, suffix_mask], dim=1)
    positions = torch.arange(length, device=suffix_ids.device) + prefix.next_position
    position_ids = positions.view(1, 1, -1).expand(3, batch, -1)
    out = qwen(
        input_ids=suffix_ids, attention_mask=attention_mask, position_ids=position_ids, cache=cache,
        use_cache=True,
    )
    input_ids = torch.cat([prefix.input_ids.expand(batch, -1), suffix_ids], dim=1)
    hidden = torch.cat([prefix.hidden.expand(batch, -1, -1), out.last_hidden_state], dim=1)
    return input_ids, attention_mask, hidden
