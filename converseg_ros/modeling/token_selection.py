"""Which Qwen positions become sparse prompt tokens, and where the dense bias is read (reference §1.3)."""

from __future__ import annotations

import torch

_VISUAL_WORDS = ("image", "vision", "<img", "picture", "video")


def non_text_token_ids(tokenizer) -> list[int]:
    """Special tokens plus added tokens that name a visual placeholder; never sparse tokens."""
    ids = set(tokenizer.all_special_ids)
    for token_id, added in tokenizer.added_tokens_decoder.items():
        content = added.content.lower()
        if added.special or any(word in content for word in _VISUAL_WORDS):
            ids.add(token_id)
    return sorted(ids)


def select_text_positions(
    input_ids: torch.Tensor, attention_mask: torch.Tensor, eos_id: int, non_text_ids: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Return (text mask [B, T] bool, eos position [B]).

    The eos position is the last attended ``eos_id`` (the ``<|im_end|>`` closing the user turn), or the
    last attended position when there is none. Text positions are attended, not special, not visual
    placeholders and not the eos position.
    """
    attended = attention_mask.bool()
    positions = torch.arange(input_ids.shape[1], device=input_ids.device).expand_as(input_ids)
    is_eos = (input_ids == eos_id) & attended
    last_eos = torch.where(is_eos, positions, torch.full_like(positions, -1)).max(dim=1).values
    fallback = attended.sum(dim=1) - 1
    eos_pos = torch.where(last_eos >= 0, last_eos, fallback)
    text = attended & ~torch.isin(input_ids, non_text_ids.to(input_ids.device))
    text &= positions != eos_pos[:, None]
    return text, eos_pos
