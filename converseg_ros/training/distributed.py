"""Training on several processes (torchrun): what keeps the ranks in step and equal to one process.

* Every step starts with the count of usable items on each rank (one small collective). When a rank has
  none (a whole local batch unreadable), every rank skips the step together, as one process skips an empty
  batch; without this the other ranks would wait for that rank's gradients forever.
* Each rank's loss is scaled by ``local * world / total`` before DDP averages the gradients, so the update
  is the mean over the step's global batch even when the ranks hold different numbers of usable items (the
  gradient one process computes on the same global batch).
* The logged loss, Dice, BCE and IoU are the global batch's (weighted by items), not rank 0's half.
* Random draws (LoRA dropout) are seeded per (seed, rank, step): a resumed run, on any rank and after any
  interruption, draws what the uninterrupted run drew, and the ranks draw independent masks.

With one process every function here is a no-op or local arithmetic.
"""

from __future__ import annotations

import os

import numpy as np
import torch
import torch.distributed as dist


def rank_and_world() -> tuple[int, int]:
    """(RANK, WORLD_SIZE) as torchrun sets them; (0, 1) for one process."""
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


def init(world: int) -> torch.device | None:
    """Join the process group (NCCL with CUDA, else gloo) unless already joined; the rank's CUDA device."""
    if world <= 1 or dist.is_initialized():
        return None
    dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    if torch.cuda.is_available():
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        torch.cuda.set_device(device)
        return device
    return None


def _on(device: torch.device, values: list[float], dtype: torch.dtype) -> torch.Tensor:
    backend_device = device if dist.get_backend() == "nccl" else torch.device("cpu")
    return torch.tensor(values, dtype=dtype, device=backend_device)


def step_counts(local: int, world: int, device: torch.device) -> tuple[int, int]:
    """(usable items of this step over all ranks, the fewest any rank holds)."""
    if world <= 1:
        return local, local
    counts = [_on(device, [0], torch.int64) for _ in range(world)]
    dist.all_gather(counts, _on(device, [local], torch.int64))
    values = [int(c.item()) for c in counts]
    return sum(values), min(values)


def loss_scale(local: int, total: int, world: int) -> float:
    """Factor on a rank's mean loss so that DDP's average of gradients is the global batch mean."""
    return local * world / total


def global_means(record: dict, keys: tuple[str, ...], local: int, total: int, world: int,
                 device: torch.device) -> dict:
    """``record``'s ``keys`` averaged over the global batch (weighted by each rank's items)."""
    if world <= 1:
        return record
    sums = _on(device, [record[k] * local for k in keys], torch.float64)
    dist.all_reduce(sums)
    return {**record, **{k: float(v) / total for k, v in zip(keys, sums.tolist(), strict=True)}, "batch": total}


def seed_step(seed: int, rank: int, step: int) -> None:
    """Seed torch's generators (CPU and CUDA) for one step of one rank."""
    torch.manual_seed(int(np.random.SeedSequence([seed, rank, step]).generate_state(1)[0]))


def finish() -> None:
    """Leave the process group (if any)."""
    if dist.is_initialized():
        dist.destroy_process_group()
