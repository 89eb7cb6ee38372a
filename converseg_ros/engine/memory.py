"""SAM2's video memory around language-grounded masks: memory encoder, bounded memory bank, memory attention.

The model work is sam2 1.1.0's own ``SAM2Base`` code (``_encode_new_memory``,
``_prepare_memory_conditioned_features``) with the bank laid out as its video predictor's ``output_dict``:
``cond_frame_outputs`` (the grounded frame, temporal slot 0) and ``non_cond_frame_outputs`` (recent frames).
Only the mask decoder call differs: ConverSeg decodes with language tokens instead of SAM2's point prompts
(engine/decoding.py), so the object pointer is projected here from the chosen mask token as
``SAM2Base._forward_sam_heads`` does.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from sam2.modeling.sam2_base import NO_OBJ_SCORE

from converseg_ros.modeling.sam2_model import SamFeatures

# A live stream has no known length: SAM2 then behaves as on a long video (``num_frames`` only caps the
# object-pointer window, at ``max_obj_ptrs_in_encoder``).
STREAM_LENGTH = 2**31


@dataclass
class FrameTokens:
    """A frame's top-level SAM2 features as tracking reads them (no ``no_mem_embed``), flattened."""

    tokens: torch.Tensor  # [HW, 1, C]
    pos: torch.Tensor  # [HW, 1, C] sine position encoding of the image encoder's neck
    size: tuple[int, int]  # (H, W) of the feature grid


@dataclass
class MemoryEntry:
    """What one frame leaves in a query's memory."""

    features: torch.Tensor | None  # [1, Cm, H, W] memory-encoder output; None once out of the spatial window
    obj_ptr: torch.Tensor  # [1, C] object pointer


def frame_tokens(sam, features: SamFeatures) -> FrameTokens:
    """Undo the ``no_mem_embed`` the image path adds (SAM2 adds it only to unconditioned frames) and attach
    the position encoding the neck gives that level (it depends on the grid size only)."""
    embed = features.image_embed  # [1, C, H, W]
    if sam.directly_add_no_mem_embed:
        embed = embed - sam.no_mem_embed.view(1, -1, 1, 1)
    pos = sam.image_encoder.neck.position_encoding(embed).to(embed.dtype)
    flat = embed.flatten(2).permute(2, 0, 1)
    return FrameTokens(flat, pos.flatten(2).permute(2, 0, 1), (embed.shape[-2], embed.shape[-1]))


class MemoryBank:
    """One tracked query's memory: its conditioning (grounded) frame and a bounded run of recent frames.

    SAM2 reads spatial memories of the last ``(num_maskmem - 1) * stride`` frames and object pointers of the
    last ``max_obj_ptrs_in_encoder - 1``; older entries are dropped, and spatial features are released as
    soon as they leave their window, so a bank never holds more than those two windows.
    """

    def __init__(self, sam):
        self.spatial_window = (sam.num_maskmem - 1) * sam.memory_temporal_stride_for_eval
        self.pointer_window = sam.max_obj_ptrs_in_encoder - 1 if sam.use_obj_ptrs_in_encoder else 0
        self.cond: dict[int, MemoryEntry] = {}
        self.recent: dict[int, MemoryEntry] = {}

    def reset(self, frame_index: int, entry: MemoryEntry) -> None:
        """A (re-)grounded frame becomes the only conditioning frame; recent memories are dropped."""
        self.cond = {frame_index: entry}
        self.recent = {}

    def add(self, frame_index: int, entry: MemoryEntry) -> None:
        """Remember a tracked frame and forget what SAM2 would no longer read."""
        self.recent[frame_index] = entry
        keep = max(self.spatial_window, self.pointer_window)
        self.recent = {t: e for t, e in self.recent.items() if frame_index - t < keep}
        for t, e in self.recent.items():
            if frame_index - t >= self.spatial_window:
                e.features = None

    def layout(self, frame_index: int) -> tuple:
        """Offsets of every memory from ``frame_index``: banks with equal layouts batch together."""
        cond = tuple(sorted(frame_index - t for t in self.cond))
        recent = tuple(sorted((frame_index - t, e.features is not None) for t, e in self.recent.items()))
        return cond, recent

    def spatial_count(self) -> int:
        """Frames whose spatial memory is held (conditioning included)."""
        return sum(e.features is not None for e in (*self.cond.values(), *self.recent.values()))

    def __len__(self) -> int:
        return len(self.cond) + len(self.recent)


def _merged_outputs(banks: list[MemoryBank], frame_indices: list[int], pos: torch.Tensor) -> dict:
    """Banks of one layout -> SAM2's ``output_dict`` with batched entries, keyed as the first bank's."""
    def merge(entries: list[MemoryEntry]) -> dict:
        out = {"obj_ptr": torch.cat([e.obj_ptr for e in entries])}
        if entries[0].features is not None:
            out["maskmem_features"] = torch.cat([e.features for e in entries])
            out["maskmem_pos_enc"] = [pos.expand(len(entries), -1, -1, -1)]
        return out

    shifts = [t - frame_indices[0] for t in frame_indices]
    result = {}
    for kind, attr in (("cond_frame_outputs", "cond"), ("non_cond_frame_outputs", "recent")):
        result[kind] = {
            key: merge([getattr(bank, attr)[key + shift] for bank, shift in zip(banks, shifts, strict=True)])
            for key in getattr(banks[0], attr)
        }
    return result


def condition_on_memory(
    sam, frame: FrameTokens, banks: list[MemoryBank], frame_indices: list[int], pos: torch.Tensor
) -> torch.Tensor:
    """Memory attention of the frame over each bank (all of one layout): features [B, C, H, W].

    ``pos`` is the memory encoder's position encoding [1, Cm, H, W] (equal for every frame).
    """
    batch = len(banks)
    return sam._prepare_memory_conditioned_features(
        frame_idx=frame_indices[0],
        is_init_cond_frame=False,
        current_vision_feats=[frame.tokens.expand(-1, batch, -1)],
        current_vision_pos_embeds=[frame.pos.expand(-1, batch, -1)],
        feat_sizes=[frame.size],
        output_dict=_merged_outputs(banks, frame_indices, pos),
        num_frames=STREAM_LENGTH,
    )


def encode_memory(
    sam, frame: FrameTokens, logits: torch.Tensor, object_scores: torch.Tensor, from_prompt: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """SAM2's memory encoder on low-res mask logits [B, h, w] of one frame.

    Where ``object_scores`` [B] (logits) say the object is absent the mask becomes SAM2's no-object score,
    as SAM2 does for spatial memories. Returns features [B, Cm, H, W] and their position encoding [1, ...].
    """
    masks = masked_logits(logits.float(), object_scores)[:, None]
    high_res = F.interpolate(masks, size=(sam.image_size, sam.image_size), mode="bilinear", align_corners=False)
    batch = logits.shape[0]
    features, pos = sam._encode_new_memory(
        current_vision_feats=[frame.tokens.expand(-1, batch, -1)],
        feat_sizes=[frame.size],
        pred_masks_high_res=high_res,
        object_score_logits=object_scores[:, None].float(),
        is_mask_from_pts=from_prompt,
    )
    return features, pos[-1][:1]


def object_pointers(sam, tokens: torch.Tensor, object_scores: torch.Tensor) -> torch.Tensor:
    """Object pointers [B, C] from chosen mask tokens [B, C], with SAM2's no-object handling."""
    pointers = sam.obj_ptr_proj(tokens)
    if sam.pred_obj_scores:
        scores = object_scores[:, None].float()
        present = scores.sigmoid() if sam.soft_no_obj_ptr else (scores > 0).float()
        if sam.fixed_no_obj_ptr:
            pointers = present * pointers
        pointers = pointers + (1 - present) * sam.no_obj_ptr
    return pointers


def masked_logits(logits: torch.Tensor, object_scores: torch.Tensor) -> torch.Tensor:
    """Low-res logits [B, h, w] with absent objects set to SAM2's no-object score (what it outputs)."""
    return torch.where((object_scores > 0)[:, None, None], logits, NO_OBJ_SCORE)
