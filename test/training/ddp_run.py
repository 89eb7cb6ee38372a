"""One rank of a test training run under torchrun: the real Trainer, then this rank's trained tensors written
to ``<out>/rank<R>.safetensors`` (so the test can compare the ranks), and optionally this rank killed with
SIGKILL right after a given step (a crashed or pre-empted rank).

    python -m torch.distributed.run --standalone --nproc_per_node 2 test/training/ddp_run.py \
        --out RUN --data dataset.jsonl --steps 6 --batch-size 2 [--set key=value ...] [--kill-rank 1 --kill-after 3]
"""

from __future__ import annotations

import argparse
import os
import signal
from pathlib import Path

from safetensors.torch import save_file

from converseg_ros.training.checkpoint import trained_tensors
from converseg_ros.training.config import load_config
from converseg_ros.training.loop import Trainer


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--out", required=True)
    p.add_argument("--data", required=True)
    p.add_argument("--steps", type=int, required=True)
    p.add_argument("--batch-size", type=int, required=True)
    p.add_argument("--set", action="append", default=[])
    p.add_argument("--kill-rank", type=int, default=-1)
    p.add_argument("--kill-after", type=int, default=0)
    args = p.parse_args()
    cfg = load_config(None, ["model.preset=tiny", f"out={args.out}", f"steps={args.steps}",
                             f"batch_size={args.batch_size}", *args.set])
    cfg.data.train = [args.data]
    rank = int(os.environ.get("RANK", 0))

    def kill(record: dict) -> None:
        if rank == args.kill_rank and record["step"] == args.kill_after:
            os.kill(os.getpid(), signal.SIGKILL)

    trainer = Trainer(cfg, hooks=[kill])
    trainer.run()
    save_file(trained_tensors(trainer.net), str(Path(args.out) / f"rank{rank}.safetensors"))


if __name__ == "__main__":
    main()
