"""``converseg-data``: robot logs in, verified (image, prompt, mask) training triplets out.

converseg-data run --out RUN --images DIR --vlm openai --base-url http://127.0.0.1:8000/v1 --model Qwen2.5-VL-7B
converseg-data run --out RUN --bag episode/ --topic /camera/image_raw --vlm gemini --model gemini-2.5-flash
converseg-data run --out RUN --droid droid_raw/ --vlm transformers --model converseg-3b --sam2 converseg-3b
converseg-data run --out RUN --rlds droid_100/1.0.0 --max-images 200 --dry-run   (inputs, requests, cost)
converseg-data run --out RUN --resume                     (after a crash, kill or full disk: finished stages kept)
converseg-data status RUN                                 (counts as JSON; rewrites manifest.json)
converseg-data review RUN [--port 8765]                   (Accept/Reject page on 127.0.0.1, token in the URL)
converseg-data export RUN --train data/dataset.jsonl --items data/eval/items.json --eval-fraction 0.2
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
from pathlib import Path

from converseg_ros.data.concepts import FAMILIES
from converseg_ros.errors import ConverSegError

log = logging.getLogger("converseg-data")

def _run_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="converseg-data run", argument_default=argparse.SUPPRESS,
                                description="run the five-stage data engine over images, a robot log or DROID episodes")
    p.add_argument("--out", required=True, help="run folder (created; resumable)")
    p.add_argument("--resume", action="store_true", default=False, help="continue the run in --out")
    src = p.add_argument_group("inputs")
    src.add_argument("--images", action="append", help="folder of images (recursive; repeatable)")
    src.add_argument("--bag", action="append", help="rosbag2 folder, ROS 1 .bag or .mcap file (repeatable)")
    src.add_argument("--topic", action="append", help="image topic to read from the bags (repeatable)")
    src.add_argument("--droid", action="append", help="DROID raw episodes folder, or the RLDS release (repeatable)")
    src.add_argument("--rlds", action="append", help="RLDS/TFDS dataset folder (<name>/<version>/ with "
                     "features.json and *.tfrecord-* shards; repeatable)")
    src.add_argument("--cameras", help="cameras, comma-separated: ext1,ext2,wrist (default) or RLDS feature names")
    src.add_argument("--instruction-topic", help="std_msgs/String topic of the bags with the robot's task words")
    src.add_argument("--fps", type=float, help="steps per second of RLDS episodes (default 15, DROID's rate)")
    src.add_argument("--every-s", type=float, help="keep a frame at most every S seconds per camera (default 1)")
    src.add_argument("--scene-threshold", type=float,
                     help="also require this much change since the last kept frame (0..1, e.g. 0.08)")
    src.add_argument("--max-images", type=int, help="process at most N inputs")
    src.add_argument("--shard", help="i/n: only this shard of the inputs (split a log across machines)")
    vlm = p.add_argument_group("VLM")
    vlm.add_argument("--vlm", choices=["openai", "gemini", "transformers"], help="backend")
    vlm.add_argument("--model", help="model name (openai/gemini) or preset / folder / hub id (transformers)")
    vlm.add_argument("--base-url", help="OpenAI-compatible base URL (…/v1), or a Gemini API endpoint")
    vlm.add_argument("--api-key-env", help="environment variable holding the key (default OPENAI_API_KEY; "
                     "Gemini: GEMINI_API_KEY or GOOGLE_API_KEY). Keys are never taken on the command line.")
    vlm.add_argument("--max-tokens", type=int, help="reply token limit (default 4096)")
    vlm.add_argument("--temperature", type=float, help="sampling temperature (paper: 0.7)")
    vlm.add_argument("--vlm-max-side", type=int, help="the VLM sees images downscaled to this side (default 1024)")
    vlm.add_argument("--timeout", type=float, help="seconds per request (default 120)")
    vlm.add_argument("--retries", type=int, help="attempts per call (default 4)")
    vlm.add_argument("--backoff", type=float, help="first retry wait in seconds, doubling (default 1)")
    vlm.add_argument("--concurrency", type=int, help="requests in flight at most (default = --workers)")
    vlm.add_argument("--price-in", type=float, help="USD per 1M input tokens for the cost summary")
    vlm.add_argument("--price-out", type=float, help="USD per 1M output tokens")
    vlm.add_argument("--max-cost", type=float, help="stop (resumable) before spending more than this many USD")
    vlm.add_argument("--rpm", type=float, help="at most this many VLM requests per minute")
    seg = p.add_argument_group("SAM2 and stages")
    seg.add_argument("--sam2", help="preset whose SAM2 turns boxes into masks (default: the --model preset for "
                     "transformers, else converseg-3b)")
    seg.add_argument("--sam2-weights", choices=["release", "base"], help="the preset's fine-tuned SAM2 "
                     "(release, default) or the base SAM2 it was fine-tuned from")
    seg.add_argument("--sam2-checkpoint", help="explicit SAM2 checkpoint file")
    seg.add_argument("--device", help="auto, cpu, cuda, cuda:N")
    seg.add_argument("--precision", choices=["auto", "fp32", "bf16", "fp16"], help="local VLM precision")
    seg.add_argument("--families", help=f"concept families, comma-separated (default {','.join(FAMILIES)})")
    seg.add_argument("--hard-negatives", action="store_true", help="also author prompts with an empty target")
    seg.add_argument("--max-regions", type=int, help="regions kept from stage 1 (default 8)")
    ops = p.add_argument_group("running")
    ops.add_argument("--workers", type=int, help="images processed at once (default 4)")
    ops.add_argument("--retry-failed", action="store_true", help="with --resume: retry failed images")
    ops.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    ops.add_argument("--allow-download", action="store_true", help="fetch missing model files from the hub")
    ops.add_argument("--ray", type=int, help="run N shards as Ray tasks (RUN/shard-i-of-N); see docs/dataengine.md")
    ops.add_argument("--ray-address", help="Ray cluster address (default: RAY_ADDRESS or a local instance)")
    ops.add_argument("--dry-run", action="store_true", help="print inputs, requests and estimated cost; write nothing")
    ops.add_argument("--estimate-from", action="append", help="finished run(s) whose rates calibrate --dry-run")
    return p


def run_main(argv: list[str]) -> int:
    from converseg_ros.dataengine import runner

    args = vars(_run_parser().parse_args(argv))
    out, resume = Path(args.pop("out")).resolve(), args.pop("resume")
    cfg = runner.prepare(args, out, resume)
    if cfg["dry_run"]:
        print(json.dumps(runner.dry_run(cfg, out, resume), indent=1))
        return 0
    if cfg["ray"]:
        from converseg_ros.dataengine.ray_runner import run_on_ray

        result = run_on_ray(cfg, out, cfg["ray"], cfg["ray_address"], cfg["progress"])
        print(json.dumps(result, indent=1))
        return 0 if all(s["exit_code"] == 0 and s["counts"]["pending"] == 0 for s in result["shards"]) else 1
    result = runner.run_local(cfg, out, resume)
    for warning in result["warnings"]:
        print(f"converseg-data: warning: {warning}", file=sys.stderr)
    print(json.dumps(result, indent=1))
    return 0


def status_main(argv: list[str]) -> int:
    from converseg_ros.dataengine.runfiles import DiskFullError
    from converseg_ros.dataengine.samples import expand_runs

    p = argparse.ArgumentParser(prog="converseg-data status", description="counts of a run (or of its shards)")
    p.add_argument("run", nargs="+", help="run folder(s)")
    args = p.parse_args(argv)
    totals = {"total": 0, "done": 0, "failed": 0, "pending": 0, "samples": 0}
    failures: dict[str, int] = {}
    vlm = {"calls": 0, "retries": 0, "input_tokens": 0, "output_tokens": 0, "cost_usd": 0.0}
    for store in expand_runs(args.run):
        try:
            manifest = store.write_manifest()  # the file is rebuilt from the items, as documented
        except DiskFullError as exc:
            print(f"converseg-data: warning: manifest.json not rewritten: {exc}", file=sys.stderr)
            manifest = store.manifest()
        totals["total"] += manifest["total"]
        totals["samples"] += manifest["samples"]
        for k, v in manifest["counts"].items():
            totals[k] += v
        for entry in manifest["items"].values():
            if entry["status"] == "failed":
                failures[entry["stage"]] = failures.get(entry["stage"], 0) + 1
        summary = (store.read("summary.json") or {}).get("total", {})
        for k in vlm:
            vlm[k] += summary.get(k, 0)
    print(json.dumps({**totals, "failed_by_stage": failures, "vlm": vlm}, indent=1))
    return 0


def export_main(argv: list[str]) -> int:
    from converseg_ros.dataengine.export import export_runs

    p = argparse.ArgumentParser(prog="converseg-data export",
                                description="write dataset.jsonl (converseg-train) and/or items.json (converseg-eval)")
    p.add_argument("run", nargs="+", help="run folder(s); shards of a --ray run are found automatically")
    p.add_argument("--train", help="dataset.jsonl to write (converseg-train --data)")
    p.add_argument("--items", help="items.json to write (converseg-eval --items)")
    p.add_argument("--assets", help="folder for images/ and masks/ (default: next to the first file)")
    p.add_argument("--require-review", action="store_true", help="only samples a person accepted")
    p.add_argument("--no-negatives", dest="negatives", action="store_false", help="leave out hard negatives")
    p.add_argument("--name", help="dataset name in items.json (default: its folder's name)")
    p.add_argument("--eval-fraction", type=float, help="share of the split groups that go to --items "
                   "(default 0.2 when --train and --items are both given, else 0)")
    p.add_argument("--split-by", choices=["episode", "image", "scene"],
                   help="split groups (default: episode where the inputs have one, else image)")
    p.add_argument("--val", help="dataset.jsonl of a validation part for converseg-train --val-data")
    p.add_argument("--val-fraction", type=float, default=0.0, help="share of the groups that go to --val")
    p.add_argument("--seed", type=int, default=0, help="seed of the split (default 0)")
    args = p.parse_args(argv)
    result = export_runs(args.run, args.train, args.items, args.assets, args.require_review, args.negatives,
                         args.name, args.eval_fraction, args.split_by, args.seed, args.val, args.val_fraction)
    from converseg_ros.dataengine.export import format_table

    parts = list(result["exported"])
    print(format_table(result["families"], parts), file=sys.stderr)
    for warning in result["warnings"]:
        print(f"converseg-data: warning: {warning}", file=sys.stderr)
    print(json.dumps(result, indent=1))
    return 0


def review_main(argv: list[str]) -> int:
    from converseg_ros.dataengine.review import make_server

    p = argparse.ArgumentParser(prog="converseg-data review", description="Accept/Reject samples in a browser")
    p.add_argument("run", nargs="+", help="run folder(s)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: this machine only)")
    p.add_argument("--allow-remote", action="store_true", help="allow a --host other machines can reach")
    p.add_argument("--port", type=int, default=8765, help="port (0: any free one)")
    args = p.parse_args(argv)
    server = make_server(args.run, args.host, args.port, args.allow_remote)
    if args.allow_remote:
        print(f"converseg-data: warning: the review page listens on {args.host}, reachable from other machines; "
              "anyone with the URL below can change decisions", file=sys.stderr)
    print(f"review: {server.url}  ({len(server.review_data.records)} samples; Ctrl-C to stop)", flush=True)
    try:
        server.serve_forever()
    finally:
        server.server_close()
    return 0


COMMANDS = {"run": run_main, "status": status_main, "export": export_main, "review": review_main}


def _terminate(signum, frame) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    """Console entry point."""
    argv = list(sys.argv[1:] if argv is None else argv)
    verbose = "-v" in argv
    argv = [a for a in argv if a != "-v"]
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    if not argv or argv[0] not in COMMANDS:
        print(__doc__, file=sys.stderr)
        print(f"commands: {', '.join(COMMANDS)} (add -v for progress logs)", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, _terminate)
    try:
        return COMMANDS[argv[0]](argv[1:])
    except KeyboardInterrupt:
        print("converseg-data: interrupted (finished work is kept; continue with --resume)", file=sys.stderr)
        return 130
    except (ConverSegError, ValueError, OSError) as exc:
        print(f"converseg-data: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

