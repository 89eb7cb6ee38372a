"""AdamW parameter groups and the warm-up + cosine learning-rate schedule."""

from __future__ import annotations

import math

import torch
from torch import nn

from converseg_ros.training.config import OptimConfig

_NO_DECAY_MODULES = (nn.LayerNorm, nn.GroupNorm, nn.BatchNorm2d, nn.Embedding)


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Trainable parameters split into a decayed group (weight matrices, conv kernels) and an undecayed one
    (biases, scalars such as ``scale``/``temp``, norm weights, token embeddings). Order is deterministic,
    so optimizer state saved by one run loads into the next."""
    no_decay_names = set()
    for module_name, module in model.named_modules():
        if isinstance(module, _NO_DECAY_MODULES) or type(module).__name__.endswith(("Norm", "Norm2d")):
            no_decay_names.update(
                f"{module_name}.{n}" if module_name else n for n, _ in module.named_parameters(recurse=False)
            )
    decay, plain = [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        (plain if param.ndim < 2 or name in no_decay_names else decay).append(param)
    return [
        {"params": decay, "weight_decay": weight_decay, "name": "decay"},
        {"params": plain, "weight_decay": 0.0, "name": "no_decay"},
    ]


def build_optimizer(model: nn.Module, cfg: OptimConfig) -> torch.optim.AdamW:
    """AdamW over the trainable parameters (kept in fp32: autocast only changes the compute dtype)."""
    groups = param_groups(model, cfg.weight_decay)
    if not any(g["params"] for g in groups):
        raise ValueError("the model has no trainable parameters")
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=tuple(cfg.betas), eps=cfg.eps)


def lr_at(step: int, total: int, cfg: OptimConfig) -> float:
    """Learning rate for optimizer update ``step`` (0-based): linear warm-up from 0 to ``lr`` over
    ``ceil(warmup_fraction·total)`` updates, then cosine from ``lr`` to ``min_lr`` at the last update."""
    warmup = math.ceil(cfg.warmup_fraction * total)
    if step < warmup:
        return cfg.lr * (step + 1) / warmup
    span = max(total - warmup - 1, 1)
    progress = min((step - warmup) / span, 1.0)
    return cfg.min_lr + 0.5 * (cfg.lr - cfg.min_lr) * (1 + math.cos(math.pi * progress))


def build_scheduler(
    optimizer: torch.optim.Optimizer, total: int, cfg: OptimConfig
) -> torch.optim.lr_scheduler.LambdaLR:
    """LambdaLR wrapper of ``lr_at``; its state (last_epoch) is saved in checkpoints."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_at(step, total, cfg) / cfg.lr)
