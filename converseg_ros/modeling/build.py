"""Assemble ConverSeg-Net from a resolved ModelSpec: SAM2 + language adapter + Qwen inputs."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch
from torch import nn

from converseg_ros.errors import CheckpointError
from converseg_ros.modeling import checkpoints as ckpt
from converseg_ros.modeling.language_adapter import LanguageAdapter, LoraSettings
from converseg_ros.modeling.presets import ModelSpec, load_preset, resolve_files
from converseg_ros.modeling.qwen_config import ties_word_embeddings
from converseg_ros.modeling.qwen_inputs import QwenInputs
from converseg_ros.modeling.sam2_model import SamFeatures, build_sam2_model, decode_masks, encode_images
from converseg_ros.modeling.sam2_model import to_sam_pixels as _to_sam_pixels

log = logging.getLogger(__name__)

PRECISIONS = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
ATTENTION_IMPLEMENTATIONS = ("auto", "sdpa", "flash_attention_2", "eager")


def resolve_device_names(device: str, precision: str) -> tuple[str, str]:
    """``auto`` picks cuda + bf16 when a GPU is present, else cpu + fp32; refuses CUDA without a GPU."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"device {device!r} requested but CUDA is not available (use cpu or auto)")
    if precision == "auto":
        precision = "bf16" if device.startswith("cuda") else "fp32"
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; use one of {sorted(PRECISIONS)}")
    return device, precision


def resolve_attention(attention: str, device: torch.device, dtype: torch.dtype) -> str:
    """``auto``: FlashAttention-2 on CUDA in bf16/fp16 when the ``flash-attn`` package is installed, else
    PyTorch's SDPA (which picks its own flash / memory-efficient kernels on CUDA)."""
    if attention not in ATTENTION_IMPLEMENTATIONS:
        raise ValueError(f"unknown attention {attention!r}; use one of {ATTENTION_IMPLEMENTATIONS}")
    if attention != "auto":
        return attention
    from transformers.utils import is_flash_attn_2_available

    half = dtype in (torch.bfloat16, torch.float16)
    return "flash_attention_2" if device.type == "cuda" and half and is_flash_attn_2_available() else "sdpa"


def resolve_device_precision(device: str, precision: str) -> tuple[torch.device, torch.dtype]:
    """:func:`resolve_device_names` as torch objects."""
    device, precision = resolve_device_names(device, precision)
    return torch.device(device), PRECISIONS[precision]


class ConverSegNet(nn.Module):
    """SAM2 (fp32) + LanguageAdapter (Qwen2.5-VL with LoRA, in ``dtype``)."""

    def __init__(self, sam: nn.Module, adapter: LanguageAdapter, inputs: QwenInputs, spec: ModelSpec):
        super().__init__()
        self.sam = sam
        self.adapter = adapter
        self.inputs = inputs
        self.spec = spec

    @property
    def image_size(self) -> int:
        """Side of SAM2's square input (1024 for Hiera-L)."""
        return int(self.sam.image_size)

    def sam_transform(self, images: list[np.ndarray]) -> torch.Tensor:
        """uint8 RGB images (letterboxed squares, or any size to squash) -> normalised square pixels
        [B, 3, S, S] on the SAM2 device."""
        return _to_sam_pixels(images, self.image_size, next(self.sam.parameters()).device)

    def encode_images(self, pixels: torch.Tensor) -> SamFeatures:
        """SAM2 image features of a batch (prompt-independent)."""
        return encode_images(self.sam, pixels)

    def decode(
        self, features: SamFeatures, sparse: torch.Tensor, dense: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """All four decoder outputs: logits [B, 4, S/4, S/4] and predicted IoUs [B, 4]."""
        return decode_masks(self.sam, features, sparse.float(), dense.float())


def load_sam2(spec: ModelSpec) -> nn.Module:
    """SAM2 alone from a resolved spec: the fine-tuned file memory-mapped when it holds every key, else the
    base weights with the fine-tuned (partial) file on top."""
    from accelerate import init_empty_weights

    finetuned = spec.sam2_checkpoint
    if finetuned and _covers(finetuned, "model", build_sam2_model, spec.sam2_config):
        with init_empty_weights():  # parameters come memory-mapped from the file: no random init, no copy
            sam = build_sam2_model(spec.sam2_config)
        ckpt.load_sam2_weights(sam, finetuned)
        return sam
    sam = build_sam2_model(spec.sam2_config)
    if spec.sam2_base:
        ckpt.load_sam2_weights(sam, spec.sam2_base)
    if finetuned:  # a partial file (e.g. decoder only) on top of the base weights
        if not spec.sam2_base:
            raise CheckpointError(f"{finetuned}: holds only part of SAM2; also give the base SAM2 checkpoint")
        ckpt.load_sam2_weights(sam, finetuned, allow_missing=True)
    return sam


def _covers(path: str, wrapper: str, builder, config: str) -> bool:
    """Whether a SAM2 file holds every key of the model (so the base checkpoint is not needed)."""
    from accelerate import init_empty_weights

    with init_empty_weights():
        expected = set(builder(config).state_dict())
    return expected <= set(ckpt.read_state_dict(path, wrapper))


def _lora_settings(spec: ModelSpec) -> LoraSettings:
    if not spec.lora:
        return spec.lora_settings
    config = ckpt.read_lora_settings(spec.lora)
    return LoraSettings(
        r=config.get("r", spec.lora_settings.r), alpha=config.get("lora_alpha", spec.lora_settings.alpha),
        dropout=config.get("lora_dropout", spec.lora_settings.dropout),
        target_modules=sorted(config.get("target_modules") or spec.lora_settings.target_modules),
    )


def _load_adapter(
    spec: ModelSpec, transformer_dim: int, dtype: torch.dtype, attention: str
) -> tuple[LanguageAdapter, object]:
    from accelerate import init_empty_weights
    from transformers import AutoConfig, AutoProcessor, Qwen2_5_VLForConditionalGeneration

    vlm = Path(spec.vlm)
    try:
        processor = AutoProcessor.from_pretrained(vlm)
        config = AutoConfig.from_pretrained(vlm)
    except OSError as err:
        raise CheckpointError(f"{vlm}: cannot read the VLM's config/tokenizer/processor ({err})") from err
    config._attn_implementation = attention  # the vision tower and the text model alike
    lora = _lora_settings(spec)
    if spec.plm_checkpoint:  # the plm file holds every Qwen weight: build empty, map the file in
        with init_empty_weights():
            qwen = Qwen2_5_VLForConditionalGeneration(config)
            adapter = LanguageAdapter(qwen, processor.tokenizer, transformer_dim, lora)
        ckpt.load_plm_weights(adapter, spec.plm_checkpoint)
    else:  # base Qwen weights from the VLM directory, fresh heads and LoRA (training from scratch)
        qwen = Qwen2_5_VLForConditionalGeneration.from_pretrained(vlm, dtype=dtype, attn_implementation=attention)
        adapter = LanguageAdapter(qwen, processor.tokenizer, transformer_dim, lora)
    if spec.lora:
        ckpt.load_lora_weights(adapter, spec.lora)
    if ties_word_embeddings(config):  # keep one copy of the tied embedding
        adapter.backbone.base_model.model.lm_head.weight = adapter.qwen.language_model.embed_tokens.weight
    return adapter.to(dtype), processor


def build_model(
    spec: ModelSpec | str, device: str = "auto", precision: str = "auto", trainable: bool = False,
    allow_download: bool = False, max_pixels: int | None = None, attention: str = "auto",
) -> ConverSegNet:
    """Build ConverSeg-Net from a preset name or spec, loading every checkpoint it names.

    ``attention`` picks Qwen's attention kernels (:func:`resolve_attention`); all give the same results
    up to floating-point rounding.

    ``trainable`` leaves the decoder, adapter heads and LoRA with gradients (Qwen base weights and the
    SAM2 image encoder stay frozen) and the model in train mode; otherwise everything is frozen, eval.
    """
    if isinstance(spec, str):
        spec = load_preset(spec)
    spec = resolve_files(spec, allow_download)
    torch_device, dtype = resolve_device_precision(device, precision)
    sam = load_sam2(spec)
    attention = resolve_attention(attention, torch_device, dtype)
    adapter, processor = _load_adapter(spec, sam.sam_mask_decoder.transformer_dim, dtype, attention)
    log.info("Qwen attention: %s", attention)
    net = ConverSegNet(sam.float(), adapter, QwenInputs(processor, max_pixels), spec).to(torch_device)
    set_trainable(net, trainable)
    return net


def set_trainable(net: ConverSegNet, trainable: bool) -> None:
    """Freeze everything, then (if training) unfreeze the mask decoder, adapter heads and LoRA and keep
    them in fp32 (master weights; the frozen base weights stay in the compute dtype)."""
    net.requires_grad_(False)
    net.train(trainable)
    if not trainable:
        return
    net.sam.sam_mask_decoder.requires_grad_(True)
    for name, param in net.adapter.named_parameters():
        if not name.startswith("backbone.") or ".lora_" in name:
            param.requires_grad_(True)
    for param in net.parameters():
        if param.requires_grad and param.dtype != torch.float32:
            param.data = param.data.float()
    net.sam.image_encoder.eval()
