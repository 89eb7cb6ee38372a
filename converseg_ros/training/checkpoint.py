"""Training checkpoints: only the trained tensors (safetensors) plus optimizer, scheduler, step and RNG state.

Layout: ``<run>/checkpoints/step_<N>/{trained.safetensors, state.pt, config.yaml}`` and a ``latest`` file
naming the newest one. Each checkpoint directory is written to a temporary name, fsynced and renamed into
place, then ``latest`` is replaced atomically, so a crash at any moment leaves the previous checkpoint
intact and never a half-written one under a final name.
"""

from __future__ import annotations

import random
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save
from torch import nn

from converseg_ros.errors import CheckpointError
from converseg_ros.modeling.atomic import atomic_dir, atomic_write_bytes, torch_save

CHECKPOINTS = "checkpoints"
TRAINED_FILE = "trained.safetensors"
STATE_FILE = "state.pt"
CONFIG_FILE = "config.yaml"
_STEP_DIR = re.compile(r"^step_(\d+)$")


def trained_tensors(net: nn.Module) -> dict[str, torch.Tensor]:
    """The parameters being trained (requires_grad), as contiguous CPU tensors keyed by module path."""
    return {
        name: p.detach().to("cpu", copy=True).contiguous()
        for name, p in net.named_parameters()
        if p.requires_grad
    }


def rng_state() -> dict:
    """Torch (CPU + CUDA), NumPy global and Python RNG states, in types ``weights_only`` loading accepts."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, gauss],
        "python": random.getstate(),
    }


def set_rng_state(state: dict) -> None:
    """Restore what ``rng_state`` captured."""
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    kind, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(internal), gauss_next))


def save_checkpoint(
    run_dir: Path,
    step: int,
    net: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    config_text: str,
    keep_last: int,
    rng: dict,
) -> Path:
    """Write ``step_<step>`` atomically, point ``latest`` at it, prune all but the last ``keep_last``.
    A full disk raises DiskFullError and leaves the previous checkpoints as they were.

    ``rng`` is the RNG state the next step must start from (``rng_state()`` between steps)."""
    root = Path(run_dir) / CHECKPOINTS
    final = root / f"step_{step:08d}"
    with atomic_dir(final) as tmp:
        # serialised here, written by Python: a full disk is an OSError (ENOSPC), not a library message
        (tmp / TRAINED_FILE).write_bytes(save(trained_tensors(net), metadata={"step": str(step)}))
        state = {"step": step, "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "rng": rng}
        torch_save(state, tmp / STATE_FILE)
        (tmp / CONFIG_FILE).write_text(config_text, encoding="utf-8")
    atomic_write_bytes(root / "latest", final.name.encode())
    steps = sorted(p for p in root.iterdir() if p.is_dir() and _STEP_DIR.match(p.name))
    for old in steps[:-keep_last] if keep_last > 0 else []:
        shutil.rmtree(old, ignore_errors=True)
    return final


def latest_checkpoint(run_dir: Path) -> Path | None:
    """The checkpoint named by ``<run>/checkpoints/latest`` (or the highest complete step), None if none."""
    root = Path(run_dir) / CHECKPOINTS
    pointer = root / "latest"
    if pointer.is_file():
        named = root / pointer.read_text().strip()
        if (named / STATE_FILE).is_file():
            return named
    steps = sorted(p for p in root.glob("step_*") if _STEP_DIR.match(p.name) and (p / STATE_FILE).is_file())
    return steps[-1] if steps else None


def resolve_checkpoint(path: str | Path) -> Path:
    """Accept a checkpoint directory, a run directory (its latest checkpoint) or a ``checkpoints/`` folder."""
    path = Path(path)
    if (path / TRAINED_FILE).is_file():
        return path
    run = path.parent if path.name == CHECKPOINTS else path
    found = latest_checkpoint(run) if (run / CHECKPOINTS).is_dir() else None
    if found is not None:
        return found
    raise CheckpointError(f"{path}: no training checkpoint ({TRAINED_FILE}) here or under {CHECKPOINTS}/")


def load_trained(net: nn.Module, ckpt: Path) -> None:
    """Copy the trained tensors of ``ckpt`` into ``net``; every name and shape must match."""
    file = Path(ckpt) / TRAINED_FILE
    try:
        tensors = load_file(str(file))
    except (SafetensorError, OSError) as exc:
        raise CheckpointError(f"{file}: unreadable ({exc})") from exc
    params = dict(net.named_parameters())
    unknown = sorted(set(tensors) - set(params))
    if unknown:
        raise CheckpointError(
            f"{file}: tensors not in the model: {unknown[:5]} (different preset or LoRA rank?)"
        )
    for name, value in tensors.items():
        if params[name].shape != value.shape:
            raise CheckpointError(
                f"{file}: {name} has shape {tuple(value.shape)}, "
                f"the model expects {tuple(params[name].shape)}"
            )
    with torch.no_grad():
        for name, value in tensors.items():
            params[name].copy_(value.to(params[name].dtype))


@dataclass
class TrainingState:
    """What ``state.pt`` holds besides the weights."""

    step: int
    optimizer: dict
    scheduler: dict
    rng: dict


def read_state(ckpt: Path) -> TrainingState:
    """Load ``state.pt`` with ``weights_only=True``."""
    file = Path(ckpt) / STATE_FILE
    try:
        raw = torch.load(file, map_location="cpu", weights_only=True)
        return TrainingState(int(raw["step"]), raw["optimizer"], raw["scheduler"], raw["rng"])
    except (OSError, RuntimeError, KeyError, EOFError) as exc:
        raise CheckpointError(f"{file}: unreadable training state ({exc})") from exc
