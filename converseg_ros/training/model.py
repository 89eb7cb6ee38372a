"""Build ConverSeg-Net for training: trainable parts in fp32 (master weights), frozen base weights in the
compute dtype, optional initialisation from a stage-1 checkpoint or a release directory."""

from __future__ import annotations

import dataclasses
import logging
from contextlib import nullcontext
from pathlib import Path

import torch
from torch import nn

from converseg_ros.errors import CheckpointError
from converseg_ros.modeling.build import ConverSegNet, build_model, resolve_device_precision
from converseg_ros.modeling.checkpoints import release_files
from converseg_ros.modeling.presets import ModelSpec, load_preset
from converseg_ros.training.checkpoint import load_trained, resolve_checkpoint
from converseg_ros.training.config import ModelConfig

log = logging.getLogger(__name__)

# Decoder parts that never receive a gradient from the output-0 loss. The reference leaves them in AdamW,
# whose weight decay then shrinks the multimask outputs 1-3 used at inference; they are frozen here.
UNSUPERVISED = (
    "output_hypernetworks_mlps.1.",
    "output_hypernetworks_mlps.2.",
    "output_hypernetworks_mlps.3.",
    "iou_prediction_head.",
    "pred_obj_score_head.",
    "conv_s0.",
    "conv_s1.",
)


def autocast_dtype(cfg: ModelConfig, device: torch.device) -> torch.dtype | None:
    """``auto``: bf16 on CUDA, none on CPU; ``bf16`` forces it (also on CPU); ``none`` disables it."""
    if cfg.autocast not in ("auto", "bf16", "none"):
        raise ValueError(f"model.autocast must be auto, bf16 or none, not {cfg.autocast!r}")
    if cfg.autocast == "none" or (cfg.autocast == "auto" and device.type != "cuda"):
        return None
    return torch.bfloat16


def autocast(device: torch.device, dtype: torch.dtype | None):
    """Autocast context for the forward pass (a no-op without a dtype)."""
    return torch.autocast(device.type, dtype=dtype) if dtype is not None else nullcontext()


def _training_checkpoint(init: str | None) -> Path | None:
    """The training checkpoint ``init`` names (a checkpoint or run directory), None for a release dir."""
    if not init:
        return None
    path = Path(init)
    if not path.exists():
        raise CheckpointError(f"model.init: {path} does not exist")
    try:
        return resolve_checkpoint(path)
    except CheckpointError:
        return None


def _spec(cfg: ModelConfig) -> ModelSpec:
    spec = load_preset(cfg.preset)
    lora = dataclasses.replace(
        spec.lora_settings, r=cfg.lora_r, alpha=cfg.lora_alpha, dropout=cfg.lora_dropout
    )
    spec = dataclasses.replace(spec, lora_settings=lora)
    if cfg.init and _training_checkpoint(cfg.init) is None:
        spec = spec.with_overrides(**release_files(cfg.init))  # SAM2 .torch, plm .torch, LoRA folder
    return spec


def set_lora_dropout(net: ConverSegNet, p: float) -> None:
    """Use dropout ``p`` in every LoRA layer (the LoRA weights' own config may name another value)."""
    if not 0.0 <= p < 1.0:
        raise ValueError(f"model.lora_dropout must be in [0, 1), got {p}")
    backbone = net.adapter.backbone
    for module in backbone.modules():
        layers = getattr(module, "lora_dropout", None)
        if isinstance(layers, nn.ModuleDict):
            for name in list(layers):
                layers[name] = nn.Dropout(p) if p > 0 else nn.Identity()
    for config in backbone.peft_config.values():
        config.lora_dropout = p


def build_training_model(cfg: ModelConfig) -> ConverSegNet:
    """Model with the mask decoder, adapter heads and LoRA trainable (``build_model`` keeps them in fp32)."""
    device, _ = resolve_device_precision(cfg.device, "fp32")
    compute = autocast_dtype(cfg, device)
    net = build_model(
        _spec(cfg),
        device=str(device),
        precision="bf16" if compute else "fp32",
        trainable=True,
        max_pixels=cfg.max_pixels,
    )
    if cfg.freeze_unsupervised:
        for name, param in net.sam.sam_mask_decoder.named_parameters():
            if name.startswith(UNSUPERVISED):
                param.requires_grad_(False)
    if cfg.gradient_checkpointing:  # non-reentrant: recomputation replays the same LoRA-dropout masks
        net.adapter.backbone.base_model.model.activation_checkpointing_enable(
            activation_checkpointing_kwargs={"use_reentrant": False}
        )
    lora = net.adapter.backbone.peft_config["default"]
    set_lora_dropout(net, cfg.lora_dropout)  # a training setting, not a property of the weights being loaded
    if (lora.r, lora.lora_alpha) != (cfg.lora_r, cfg.lora_alpha):
        log.warning(
            "LoRA r=%d alpha=%d come from the LoRA weights being fine-tuned (model.lora_r=%d, "
            "model.lora_alpha=%d ignored)",
            lora.r,
            lora.lora_alpha,
            cfg.lora_r,
            cfg.lora_alpha,
        )
    init = _training_checkpoint(cfg.init)
    if init is not None:
        load_trained(net, init)
    return net
