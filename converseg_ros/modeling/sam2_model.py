"""SAM2 from the ``sam2`` package: build it, embed images, decode language prompts."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torchvision.transforms.functional import InterpolationMode, resize

from converseg_ros.modeling.sam2_config import instantiate_model, load_config

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# What the reference's build_sam2(..., apply_postprocessing=True) sets on the decoder. It only acts for
# single-mask decoding through MaskDecoder.forward, which ConverSeg inference does not use; kept so a
# model built here has the same configuration as the authors'.
POSTPROCESSING_OVERRIDES = {
    "dynamic_multimask_via_stability": True,
    "dynamic_multimask_stability_delta": 0.05,
    "dynamic_multimask_stability_thresh": 0.98,
}


@dataclass
class SamFeatures:
    """Prompt-independent SAM2 features of a batch of images (computed once per frame)."""

    image_embed: torch.Tensor  # [B, C, S/16, S/16], no_mem_embed already added
    high_res: list[torch.Tensor]  # [[B, C/8, S/4, S/4], [B, C/4, S/8, S/8]] after conv_s0 / conv_s1


def build_sam2_model(config: str):
    """Instantiate SAM2Base from a bundled config name (``sam2_hiera_l.yaml``) or a YAML file path; the
    config is refused unless every target in it is a SAM2 model class (:mod:`.sam2_config`)."""
    cfg = load_config(config)
    cfg["model"]["sam_mask_decoder_extra_args"] = dict(POSTPROCESSING_OVERRIDES)
    model = instantiate_model(cfg)
    return model.eval()


def to_sam_pixels(
    images: list[np.ndarray] | torch.Tensor, size: int, device: torch.device | str = "cpu"
) -> torch.Tensor:
    """uint8 RGB images (a list, or a uint8 tensor [B, H, W, 3]) -> ImageNet-normalised float32 batch
    [B, 3, size, size], as SAM2's transform: scale to [0, 1], resize to the square in float (bilinear,
    antialiased; letterboxed squares already are), normalise. Any other image is squashed, as the authors'
    eval.py feeds it."""
    batch = torch.stack([_unit_square(image, size, device) for image in images])
    mean = torch.tensor(IMAGENET_MEAN, device=batch.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=batch.device).view(1, 3, 1, 1)
    return (batch - mean) / std


def _unit_square(image: np.ndarray | torch.Tensor, size: int, device: torch.device | str) -> torch.Tensor:
    if not isinstance(image, torch.Tensor):
        image = torch.from_numpy(np.ascontiguousarray(image))
    pixels = image.to(device).permute(2, 0, 1).float() / 255.0
    if pixels.shape[-2:] == (size, size):
        return pixels
    return resize(pixels, [size, size], interpolation=InterpolationMode.BILINEAR, antialias=True)


def encode_images(sam, pixels: torch.Tensor) -> SamFeatures:
    """Run the image encoder as SAM2ImagePredictor.set_image does (no_mem_embed added at stride 16)."""
    backbone_out = sam.forward_image(pixels)
    _, vision_feats, _, feat_sizes = sam._prepare_backbone_features(backbone_out)
    if sam.directly_add_no_mem_embed:
        vision_feats[-1] = vision_feats[-1] + sam.no_mem_embed
    batch = pixels.shape[0]
    maps = [  # [HW, B, C] -> [B, C, H, W]
        feat.permute(1, 2, 0).reshape(batch, -1, *size) for feat, size in zip(vision_feats, feat_sizes, strict=True)
    ]
    return SamFeatures(image_embed=maps[-1], high_res=maps[:-1])


def decode_masks(
    sam, features: SamFeatures, sparse: torch.Tensor, dense: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """All four decoder outputs for language prompts.

    sparse: [B, N, C] tokens; dense: [B, C] bias broadcast over the embedding grid. ``features`` holds
    either B images or one image shared by all B prompts. Returns low-res logits [B, 4, S/4, S/4] and
    predicted IoUs [B, 4]; output 0 is the single-mask token, 1..3 the multimask outputs.
    """
    masks, iou, _, _ = decode_all(sam, features, sparse, dense)
    return masks, iou


def decode_all(
    sam, features: SamFeatures, sparse: torch.Tensor, dense: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """:func:`decode_masks` plus what SAM2's video tracking reads from the decoder: the four mask-token
    outputs [B, 4, C] (an object pointer is projected from the chosen one) and the object-score logit [B, 1]."""
    decoder = sam.sam_mask_decoder
    embed = features.image_embed.to(sparse.dtype)
    height, width = embed.shape[-2:]
    dense_map = dense[:, :, None, None].expand(-1, -1, height, width)
    shared = embed.shape[0] == 1 and sparse.shape[0] > 1
    return decoder.predict_masks(
        image_embeddings=embed,
        image_pe=sam.sam_prompt_encoder.get_dense_pe(),
        sparse_prompt_embeddings=sparse,
        dense_prompt_embeddings=dense_map,
        repeat_image=shared,
        high_res_features=[f.to(sparse.dtype) for f in features.high_res],
    )


def select_output(masks: torch.Tensor, iou: torch.Tensor, mode: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Pick one mask per prompt: ``multimask`` = argmax predicted IoU over outputs 1..3 (the authors'
    demo/eval), ``first`` = output 0 (what training supervises). Returns logits [B, h, w], scores [B]."""
    index = select_index(iou, mode)
    rows = torch.arange(masks.shape[0], device=masks.device)
    return masks[rows, index], iou[rows, index]


def select_index(iou: torch.Tensor, mode: str) -> torch.Tensor:
    """Which decoder output :func:`select_output` picks for each prompt: [B] long."""
    if mode == "first":
        return torch.zeros(iou.shape[0], dtype=torch.long, device=iou.device)
    if mode == "multimask":
        return iou[:, 1:].argmax(dim=1) + 1
    raise ValueError(f"unknown decode mode {mode!r} (use 'multimask' or 'first')")
