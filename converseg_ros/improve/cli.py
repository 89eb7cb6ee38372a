"""``converseg-improve``: the robot's recorded hard cases -> verified training data -> a fine-tune of the release
it runs -> a release that is written only when it beats that baseline on held-out data.

converseg-improve --recordings ~/.ros/converseg/records --baseline releases/v1 --out loops/2024-06-01 \\
    --vlm openai --base-url http://127.0.0.1:8000/v1 --model Qwen2.5-VL-7B-Instruct --steps 2000
converseg-improve --out loops/2024-06-01 --resume ...same arguments...      (after a crash or Ctrl-C)

Prints the promoted release (swap it in with ``converseg-query --swap DIR``) or why it was refused. Exit
status: 0 promoted, 3 refused, 1 a stage failed (its log says why; continue with --resume), 2 bad arguments.
Stages, state and resume: converseg_ros/improve/loop.py; the walk-through with timings: docs/improve.md.
"""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path

from converseg_ros.errors import ConverSegError


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="converseg-improve", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--recordings", required=True, help="folder of the node's recording sessions (record.dir)")
    p.add_argument("--baseline", required=True, help="the release the robot runs (fine-tuned from, compared with)")
    p.add_argument("--out", required=True, help="work folder of this loop (data, dataset, training run, logs)")
    p.add_argument("--to", help="release folder written when promoted (default <out>/release; must not exist)")
    p.add_argument("--resume", action="store_true", help="continue the loop in --out (same arguments)")
    p.add_argument("--preset", default="converseg-3b", help="model preset of the baseline (default %(default)s)")
    p.add_argument("--heldout", help="a fixed held-out items.json (default: hold out recording sessions)")
    p.add_argument("--eval-fraction", type=float, default=0.3, help="share of the sessions held out (default 0.3)")
    p.add_argument("--seed", type=int, default=0, help="seed of the session split")
    d = p.add_argument_group("data engine (converseg-data run)")
    d.add_argument("--vlm", required=True, choices=["openai", "gemini", "transformers"])
    d.add_argument("--model", help="VLM model name, or preset/folder for --vlm transformers")
    d.add_argument("--base-url", help="OpenAI-compatible base URL (…/v1) or Gemini endpoint")
    d.add_argument("--api-key-env", help="environment variable holding the key (keys never on the command line)")
    d.add_argument("--sam2", help="preset whose SAM2 makes the masks (default: --preset)")
    d.add_argument("--families", help="concept families, comma-separated (default: all)")
    d.add_argument("--max-images", type=int, help="process at most N recorded frames")
    d.add_argument("--data-arg", action="append", default=[], metavar="ARG",
                   help="any further converseg-data run argument (repeat; e.g. --data-arg=--max-cost=5)")
    t = p.add_argument_group("fine-tune (converseg-train)")
    t.add_argument("--steps", type=int, default=2000, help="optimizer steps (default %(default)s)")
    t.add_argument("--batch-size", type=int, help="images per step")
    t.add_argument("--lr", type=float, default=1e-5, help="peak learning rate (default 1e-5, the paper's stage 2)")
    t.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N (data engine, training, evaluation)")
    t.add_argument("--train-set", action="append", default=[], metavar="KEY=VALUE",
                   help="any training config value (repeat), e.g. --train-set optim.min_lr=1e-6")
    g = p.add_argument_group("gated promotion (converseg-train promote)")
    g.add_argument("--margin", type=float, default=0.01, help="overall gIoU gain required (0.01 = one point)")
    g.add_argument("--family-tolerance", type=float, default=0.02, help="largest gIoU drop allowed per family")
    g.add_argument("--preprocess", default="letterbox", choices=["letterbox", "squash"])
    g.add_argument("--decode-mode", default="multimask", choices=["multimask", "first"])
    return p.parse_args(argv)


def build_plan(args: argparse.Namespace):  # noqa: ANN201
    from converseg_ros.improve.loop import Plan
    from converseg_ros.modeling.checkpoints import release_files

    baseline = Path(args.baseline).expanduser().resolve()
    try:
        release_files(baseline)
    except ConverSegError as exc:
        raise ConverSegError(f"--baseline is not a release folder: {exc}") from exc
    work = Path(args.out).expanduser().resolve()
    data = ["--vlm", args.vlm, "--sam2", args.sam2 or args.preset, "--device", args.device]
    for flag, value in (("--model", args.model), ("--base-url", args.base_url), ("--api-key-env", args.api_key_env),
                        ("--families", args.families), ("--max-images", args.max_images)):
        if value is not None:
            data += [flag, str(value)]
    train = ["--steps", str(args.steps), "--lr", str(args.lr), "--device", args.device]
    if args.batch_size:
        train += ["--batch-size", str(args.batch_size)]
    for item in args.train_set:
        train += ["--set", item]
    promote = ["--margin", str(args.margin), "--family-tolerance", str(args.family_tolerance), "--preprocess",
               args.preprocess, "--decode-mode", args.decode_mode, "--device", args.device]
    heldout = str(Path(args.heldout).expanduser().resolve()) if args.heldout else None
    return Plan(str(Path(args.recordings).expanduser().resolve()), str(baseline), str(work),
                str(Path(args.to).expanduser().resolve()) if args.to else str(work / "release"), args.preset,
                data + list(args.data_arg), train, promote, heldout, args.eval_fraction, args.seed)


def main(argv: list[str] | None = None) -> int:
    from converseg_ros.improve.loop import EXIT_PROMOTED, EXIT_REFUSED, Loop, StageError
    from converseg_ros.improve.recordings import find_sessions

    args = parse_args(list(sys.argv[1:] if argv is None else argv))

    def stop(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, stop)
    try:
        plan = build_plan(args)
        sessions, skipped = find_sessions(plan.recordings)
        for folder in skipped:
            print(f"[improve] warning: {folder} holds folder-format records (record.format: folder); only MCAP "
                  "sessions are used", file=sys.stderr)
        if not sessions:
            raise ConverSegError(f"--recordings: no recording session (metadata.yaml with /record/ topics) below "
                                 f"{plan.recordings}")
        plan.sessions = [str(s.path) for s in sessions]
        print(f"[improve] {len(sessions)} session(s), {sum(s.frames for s in sessions)} recorded frame(s); "
              f"baseline {plan.baseline}", flush=True)
        state = Loop(plan, sessions, args.resume, lambda text: print(text, flush=True)).run()
    except KeyboardInterrupt:
        print("[improve] interrupted: finished stages are kept; continue with --resume", file=sys.stderr)
        return 130
    except StageError as exc:
        print(f"[improve] {exc}", file=sys.stderr)
        return 1
    except (ConverSegError, ValueError, OSError) as exc:
        print(f"converseg-improve: error: {exc}", file=sys.stderr)
        return 2
    promote = state["stages"]["promote"]
    times = ", ".join(f"{name} {stage['seconds']:.0f} s" for name, stage in state["stages"].items())
    print(f"[improve] times: {times}")
    if promote["promoted"]:
        print(f"promoted: {promote['release']}\n  swap it in: converseg-query --swap {promote['release']}")
        return EXIT_PROMOTED
    print(f"not promoted: {'; '.join(promote['reasons'])} (report: {promote['report']})")
    return EXIT_REFUSED


if __name__ == "__main__":
    sys.exit(main())
