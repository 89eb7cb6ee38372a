"""``converseg-train``: fine-tune ConverSeg-Net, export checkpoints, build datasets from robot logs.

converseg-train --preset tiny --data dataset.jsonl --out runs/x --steps 100 [--resume]
converseg-train --config config/train/stage2.yaml --init runs/stage1 --data conv.jsonl --out runs/stage2
converseg-train export runs/x --to release/            (latest checkpoint, or a checkpoints/step_N dir)
converseg-train promote runs/x --baseline release/v1 --items heldout.json --to release/v2   (gated; exit 0/3)
converseg-train extract-frames episode_bag/ --image-topic /cam/image_raw --out frames/
converseg-train demo-data demo/                        (a few photos with masks, to try the pipeline)
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from pathlib import Path

from converseg_ros.data.masks import MaskError
from converseg_ros.data.readers import DatasetError
from converseg_ros.data.robot_logs import RobotLogError
from converseg_ros.errors import ConverSegError
from converseg_ros.training.config import ConfigError, TrainConfig, load_config

# flag, config key, type, help
TRAIN_FLAGS: list[tuple[str, str, type, str]] = [
    ("--preset", "model.preset", str, "model preset (models/<name>.yaml) or preset YAML path"),
    ("--init", "model.init", str, "start from a stage-1 run/checkpoint or a release directory"),
    ("--out", "out", str, "run directory (checkpoints, metrics.jsonl, tb/, panels/)"),
    ("--name", "name", str, "run name shown in logs"),
    ("--steps", "steps", int, "optimizer steps (paper: 35000 per stage)"),
    ("--batch-size", "batch_size", int, "images per step and process (paper: 6)"),
    ("--lr", "optim.lr", float, "peak learning rate (paper: 1e-4 stage 1, 1e-5 stage 2)"),
    ("--min-lr", "optim.min_lr", float, "final learning rate of the cosine"),
    ("--weight-decay", "optim.weight_decay", float, "AdamW weight decay (not on norms/scalars/biases)"),
    ("--warmup-fraction", "optim.warmup_fraction", float, "fraction of steps of linear warm-up"),
    ("--lora-r", "model.lora_r", int, "LoRA rank"),
    ("--lora-alpha", "model.lora_alpha", int, "LoRA alpha"),
    ("--device", "model.device", str, "auto, cpu, cuda, cuda:1 ..."),
    ("--autocast", "model.autocast", str, "auto (bf16 on CUDA), bf16 or none"),
    ("--workers", "data.workers", int, "DataLoader worker processes"),
    ("--num-samples", "data.num_samples", int, "use only the first N training samples"),
    ("--val-fraction", "data.val_fraction", float, "held-out fraction when no --val-data is given"),
    ("--max-dim", "data.max_dim", int, "letterbox side (must equal the model's SAM2 input size)"),
    ("--hflip", "data.augment.hflip", float, "horizontal flip probability (prompt left/right swapped)"),
    ("--scale-min", "data.augment.scale_min", float, "random crop: smallest kept fraction of each side"),
    ("--color", "data.augment.color", float, "colour jitter strength"),
    ("--seed", "seed", int, "seed of data order, augmentation and initialisation"),
    ("--log-every", "log_every", int, "TensorBoard logging interval (steps)"),
    ("--val-every", "val_every", int, "validation interval (steps)"),
    ("--save-every", "save_every", int, "checkpoint interval (steps)"),
    ("--keep-last", "keep_last", int, "checkpoints kept"),
]
USER_ERRORS = (
    ConverSegError,
    ConfigError,
    DatasetError,
    MaskError,
    RobotLogError,
    ValueError,
    FileNotFoundError,
    FileExistsError,
)


def _train_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="converseg-train", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--config", help="training YAML (default: the paper's stage-1 recipe)")
    p.add_argument(
        "--data", nargs="+", action="extend", help="training data: dataset.jsonl, items.json, dataset folders"
    )
    p.add_argument("--val-data", nargs="+", action="extend", help="validation data (else a held-out split)")
    for flag, key, kind, text in TRAIN_FLAGS:
        p.add_argument(flag, type=kind, help=f"{text} [{key}]")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="any config value, e.g. --set optim.betas=[0.9,0.95]",
    )
    p.add_argument(
        "--resume", action="store_true", help="continue the run in --out from its latest checkpoint"
    )
    return p


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """YAML (or the built-in recipe), then the dedicated flags, then ``--set`` overrides."""
    overrides = []
    for flag, key, _, _ in TRAIN_FLAGS:
        value = getattr(args, flag[2:].replace("-", "_"))
        if value is not None:
            overrides.append(f"{key}={value}")
    cfg = load_config(args.config, overrides + args.set)
    if args.data:
        cfg.data.train = list(args.data)
    if args.val_data:
        cfg.data.val = list(args.val_data)
    return cfg


def train_main(argv: list[str]) -> int:
    args = _train_parser().parse_args(argv)
    cfg = config_from_args(args)
    from converseg_ros.training.loop import Trainer

    final = Trainer(cfg, resume=args.resume).run()
    if final is not None:  # rank 0
        print(f"done: {final}")
    return 0


def export_main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(
        prog="converseg-train export",
        description="write a training checkpoint in the authors' release format",
    )
    p.add_argument("checkpoint", help="run directory (latest checkpoint) or checkpoints/step_N directory")
    p.add_argument("--to", required=True, help="release directory to write")
    p.add_argument("--dtype", default="fp32", choices=["fp32", "bf16"], help="language-adapter file dtype")
    p.add_argument("--name", default="ConverSeg-Net", help="file name prefix")
    args = p.parse_args(argv)
    from converseg_ros.training.export import export_release

    for kind, path in export_release(args.checkpoint, args.to, args.dtype, args.name).items():
        print(f"{kind}: {path}")
    return 0


def promote_main(argv: list[str]) -> int:
    from converseg_ros.training.promote import (
        EXIT_PROMOTED,
        EXIT_REFUSED,
        EvalSettings,
        Gate,
        promote,
        report_paths,
    )

    p = argparse.ArgumentParser(
        prog="converseg-train promote",
        description="write CANDIDATE as a release only if it beats the baseline on held-out items",
        epilog=f"exit status: {EXIT_PROMOTED} promoted (release in --to), {EXIT_REFUSED} refused (the report "
        "says why), 2 error; the report is written next to --to as <name>.promotion.json and .md",
    )
    p.add_argument("candidate", help="release folder, training run or checkpoints/step_N directory")
    p.add_argument("--baseline", required=True, help="the current release (or a run/checkpoint)")
    p.add_argument("--items", required=True, help="held-out items.json (with concept labels for families)")
    p.add_argument("--to", required=True, help="release folder to write when promoted (must not exist)")
    p.add_argument("--margin", type=float, default=0.01, help="overall gIoU gain required (0.01 = 1 point)")
    p.add_argument("--family-tolerance", type=float, default=0.02, help="largest gIoU drop allowed per family")
    p.add_argument("--preprocess", default="letterbox", choices=["letterbox", "squash"])
    p.add_argument("--decode-mode", default="multimask", choices=["multimask", "first"])
    p.add_argument("--threshold", type=float, default=0.5, help="mask probability threshold")
    p.add_argument("--preset", help="base preset of both (default: the candidate run's, else converseg-3b)")
    p.add_argument("--device", default="auto")
    p.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16", "fp16"])
    p.add_argument("--dtype", default="fp32", choices=["fp32", "bf16"], help="exported adapter file dtype")
    args = p.parse_args(argv)
    settings = EvalSettings(args.preset, args.device, args.precision, args.decode_mode, args.preprocess,
                            args.threshold, args.dtype)
    verdict, report = promote(args.candidate, args.baseline, args.items, args.to,
                              Gate(args.margin, args.family_tolerance), settings)
    giou = report["scores"]["giou"]
    print(f"baseline gIoU {100 * giou['baseline']['all']:.2f}, candidate {100 * giou['candidate']['all']:.2f}")
    for reason in verdict.reasons:
        print(f"refused: {reason}")
    written = report["release"] or "no release written"
    print(f"{report['verdict']}: {written} (report: {report_paths(Path(args.to))[1]})")
    return EXIT_PROMOTED if verdict.promoted else EXIT_REFUSED


def extract_main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(
        prog="converseg-train extract-frames",
        description="frames (+ masks, prompts) from a rosbag2 folder, .bag or .mcap",
    )
    p.add_argument("log", help="rosbag2 directory, ROS 1 .bag or .mcap file")
    p.add_argument("--out", required=True, help="dataset folder to write")
    p.add_argument("--image-topic", action="append", required=True, help="camera topic (repeatable)")
    p.add_argument("--mask-topic", help="mono8 label topic paired with the camera by time stamp")
    p.add_argument("--prompt", help="prompt for every labelled frame")
    p.add_argument("--prompt-topic", help="std_msgs/String topic with the current prompt")
    p.add_argument("--every", type=int, default=1, help="keep every N-th frame per topic")
    p.add_argument("--max-frames", type=int, help="stop after this many frames")
    p.add_argument("--tolerance-ms", type=float, default=50.0, help="mask/frame stamp tolerance")
    args = p.parse_args(argv)
    from converseg_ros.data.extract import ExtractOptions, extract_frames

    opts = ExtractOptions(
        args.image_topic,
        args.mask_topic,
        args.prompt,
        args.prompt_topic,
        args.every,
        args.max_frames,
        args.tolerance_ms,
    )
    summary = extract_frames(args.log, args.out, opts)
    print(f"{summary.frames} frames, {summary.labelled} labelled -> {args.out}")
    for reason, count in summary.skipped.items():
        print(f"skipped {count}: {reason}")
    return 0


def demo_main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(
        prog="converseg-train demo-data", description="write a small dataset from scikit-image's photos"
    )
    p.add_argument("out", help="folder to write (dataset.jsonl, items.json, images/, masks/)")
    p.add_argument("--max-side", type=int, help="shrink photos to this longer side")
    args = p.parse_args(argv)
    from converseg_ros.data.demo import write_demo_dataset

    print(write_demo_dataset(args.out, args.max_side) / "dataset.jsonl")
    return 0


COMMANDS = {"export": export_main, "promote": promote_main, "extract-frames": extract_main, "demo-data": demo_main}


def _terminate(signum, frame) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    """Console entry point."""
    argv = list(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    command = COMMANDS.get(argv[0]) if argv else None
    signal.signal(signal.SIGTERM, _terminate)  # cluster pre-emption: checkpoint like Ctrl-C
    try:
        return command(argv[1:]) if command else train_main(argv)
    except KeyboardInterrupt:
        print("converseg-train: interrupted", file=sys.stderr)
        return 130
    except USER_ERRORS as exc:
        print(f"converseg-train: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
