"""Export a training checkpoint to the authors' release format (SAM2 .torch, plm .torch, LoRA directory),
which both the reference code and ``ConverSegEngine`` load."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

from converseg_ros.errors import DiskFullError
from converseg_ros.modeling.atomic import sweep_stale
from converseg_ros.modeling.checkpoints import release_names, write_release
from converseg_ros.training.checkpoint import CONFIG_FILE, load_trained, read_state, resolve_checkpoint
from converseg_ros.training.config import load_config
from converseg_ros.training.model import build_training_model


def export_release(
    checkpoint: str | Path, out_dir: str | Path, dtype: str = "fp32", name: str = "ConverSeg-Net"
) -> dict[str, Path]:
    """Rebuild the run's model on CPU, load the checkpoint's trained tensors and write a release.

    ``dtype`` applies to the language adapter file (``bf16`` halves it, like the authors' release);
    the SAM2 file is always fp32. A full disk raises DiskFullError naming ``out_dir`` and the files finished
    before it (each file is written atomically: a rerun after freeing space rewrites the release)."""
    if dtype not in ("fp32", "bf16"):
        raise ValueError(f"--dtype must be fp32 or bf16, not {dtype!r}")
    ckpt = resolve_checkpoint(checkpoint)
    cfg = load_config(ckpt / CONFIG_FILE)
    model_cfg = dataclasses.replace(cfg.model, device="cpu", autocast="none", init=None)
    net = build_training_model(model_cfg)
    load_trained(net, ckpt)
    if dtype == "bf16":
        net.adapter.to(torch.bfloat16)
    step = read_state(ckpt).step
    out_dir = Path(out_dir)
    sweep_stale(out_dir)  # temporaries of an export that was killed
    try:
        return write_release(net.sam, net.adapter, out_dir, step, name)
    except DiskFullError as exc:
        done = [n for n in release_names(step, name).values() if any(out_dir.glob(f"{n}*"))]
        kept = f"finished and kept: {', '.join(done)}" if done else "nothing of it was written"
        raise DiskFullError(out_dir, f" (export of {ckpt} stopped; {kept}): free space, then export again") from exc
