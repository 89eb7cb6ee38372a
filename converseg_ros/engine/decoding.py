"""Language prompts through SAM2's mask decoder, batched by token count (shared by segment and tracking)."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import torch

from converseg_ros.modeling.sam2_model import SamFeatures, decode_all, select_index


@dataclass
class DecodedPrompt:
    """One prompt's decoder result and the language conditioning that produced it."""

    sparse: torch.Tensor  # [1, N, C] language tokens (the adapter's projection)
    dense: torch.Tensor  # [1, C] language bias
    logits: torch.Tensor  # [S/4, S/4] low-res logits of the chosen output
    score: torch.Tensor  # [] its predicted IoU
    token: torch.Tensor  # [C] its mask-token output (SAM2 projects the object pointer from it)
    object_score: torch.Tensor  # [] object-score logit (SAM2 deems the object present above 0)


def decode_prompts(
    sam, features: SamFeatures, prompts: list[tuple[torch.Tensor, torch.Tensor]], mode: str
) -> list[DecodedPrompt]:
    """Decode each (sparse [1, N, C], dense [1, C]) prompt, one decoder pass per group of equal N.

    ``features.image_embed`` is [1, C, h, w] shared by every prompt (one frame) or [P, C, h, w], one per
    prompt (memory-conditioned features in tracking); ``mode`` picks the output (``select_index``).
    """
    groups: dict[int, list[int]] = defaultdict(list)
    for i, (sparse, _) in enumerate(prompts):
        groups[sparse.shape[1]].append(i)
    per_prompt = features.image_embed.shape[0] != 1
    decoded: list[DecodedPrompt | None] = [None] * len(prompts)
    for members in groups.values():
        sparse = torch.cat([prompts[i][0] for i in members]).float()
        dense = torch.cat([prompts[i][1] for i in members]).float()
        group = SamFeatures(features.image_embed[members], features.high_res) if per_prompt else features
        masks, iou, tokens, object_scores = decode_all(sam, group, sparse, dense)
        index = select_index(iou, mode)
        for row, i in enumerate(members):
            k = index[row]
            decoded[i] = DecodedPrompt(
                prompts[i][0], prompts[i][1], masks[row, k], iou[row, k], tokens[row, k], object_scores[row, 0]
            )
    return decoded
