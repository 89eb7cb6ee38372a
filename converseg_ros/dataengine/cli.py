"""``converseg-data``: robot logs in, verified (image, prompt, mask) training triplets out.

converseg-data run --out RUN --images DIR --vlm openai --base-url http://127.0.0.1:8000/v1 --model Qwen2.5-VL-7B
converseg-data run --out RUN --bag episode/ --topic /camera/image_raw --vlm gemini --model gemini-2.5-flash
converseg-data run --out RUN --droid droid_raw/ --vlm transformers --model converseg-3b --sam2 converseg-3b
converseg-data run --out RUN --resume                     (after a crash or kill: finished stages are kept)
converseg-data status RUN                                 (counts as JSON)
converseg-data review RUN [--port 8765]                   (Accept/Reject page on 127.0.0.1)
converseg-data export RUN --train data/dataset.jsonl --items data/items.json
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import signal
import sys
from pathlib import Path

from converseg_ros.data.concepts import FAMILIES
from converseg_ros.errors import ConverSegError

log = logging.getLogger("converseg-data")

# Settings that decide what a run produces: stored in run.json; --resume refuses different values.
RESULT_DEFAULTS: dict = {
    "images": [], "bag": [], "topic": [], "droid": [], "cameras": "ext1,ext2,wrist",
    "every_s": 1.0, "scene_threshold": None, "max_images": None, "shard": None,
    "vlm": None, "model": None, "base_url": None, "api_key_env": None, "max_tokens": 4096,
    "sam2": None, "sam2_weights": "release", "sam2_checkpoint": None, "device": "auto", "precision": "auto",
    "families": ",".join(FAMILIES), "hard_negatives": False, "max_regions": 8, "vlm_max_side": 1024,
    "temperature": 0.7,
}
# Settings of how to run (free to change on --resume).
RUN_DEFAULTS: dict = {
    "workers": 4, "concurrency": None, "timeout": 120.0, "retries": 4, "backoff": 1.0,
    "price_in": None, "price_out": None, "retry_failed": False, "progress": True, "allow_download": False,
    "ray": None, "ray_address": None,
}
DEFAULT_MODELS = {"gemini": "gemini-2.5-flash"}


def _run_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="converseg-data run", argument_default=argparse.SUPPRESS,
                                description="run the five-stage data engine over images, a robot log or DROID episodes")
    p.add_argument("--out", required=True, help="run folder (created; resumable)")
    p.add_argument("--resume", action="store_true", default=False, help="continue the run in --out")
    src = p.add_argument_group("inputs")
    src.add_argument("--images", action="append", help="folder of images (recursive; repeatable)")
    src.add_argument("--bag", action="append", help="rosbag2 folder, ROS 1 .bag or .mcap file (repeatable)")
    src.add_argument("--topic", action="append", help="image topic to read from the bags (repeatable)")
    src.add_argument("--droid", action="append", help="DROID raw episodes folder (repeatable)")
    src.add_argument("--cameras", help="DROID cameras, comma-separated (default ext1,ext2,wrist)")
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
    return p


def resolve_config(args: dict, stored: dict | None) -> dict:
    """Defaults <- stored run.json <- command line; on resume, result settings must not change."""
    given_result = {k: v for k, v in args.items() if k in RESULT_DEFAULTS}
    if stored is not None:
        changed = {k: (stored.get(k), v) for k, v in given_result.items() if stored.get(k) != v}
        if changed:
            text = ", ".join(f"{k}: run has {a!r}, given {b!r}" for k, (a, b) in changed.items())
            raise ConverSegError(f"--resume with different settings ({text}); start a new --out instead")
        result = {**RESULT_DEFAULTS, **stored}
    else:
        result = {**RESULT_DEFAULTS, **given_result}
    run = {**RUN_DEFAULTS, **{k: v for k, v in args.items() if k in RUN_DEFAULTS}}
    key_env = result["api_key_env"]
    if key_env is not None and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key_env):
        # never echo it: a key pasted here by mistake must not reach the terminal or run.json
        raise ConverSegError("--api-key-env takes the NAME of an environment variable (e.g. OPENAI_API_KEY), "
                             "not the key itself")
    if result["vlm"] is None:
        raise ConverSegError("--vlm is required (openai, gemini or transformers)")
    result["model"] = result["model"] or DEFAULT_MODELS.get(result["vlm"])
    if not result["model"]:
        raise ConverSegError(f"--model is required for --vlm {result['vlm']}")
    if result["sam2"] is None:
        from converseg_ros.dataengine.models import is_preset

        local_preset = result["vlm"] == "transformers" and is_preset(result["model"])
        result["sam2"] = result["model"] if local_preset else "converseg-3b"
    families = [f.strip() for f in result["families"].split(",") if f.strip()]
    unknown = [f for f in families if f not in FAMILIES]
    if unknown or not families:
        raise ConverSegError(f"--families: unknown {unknown}; choose from {','.join(FAMILIES)}")
    return {**result, **run}


def _settings(cfg: dict):
    from converseg_ros.dataengine.stages.context import StageSettings

    return StageSettings(
        families=tuple(f.strip() for f in cfg["families"].split(",") if f.strip()),
        hard_negatives=cfg["hard_negatives"], max_regions=cfg["max_regions"], temperature=cfg["temperature"],
        vlm_max_side=cfg["vlm_max_side"],
    )


def _input_spec(cfg: dict):
    from converseg_ros.dataengine.inputs import InputSpec, Sampling

    return InputSpec(
        images=cfg["images"], bags=cfg["bag"], topics=cfg["topic"], droid=cfg["droid"],
        cameras=[c.strip() for c in cfg["cameras"].split(",") if c.strip()],
        sampling=Sampling(cfg["every_s"], cfg["scene_threshold"]), max_images=cfg["max_images"], shard=cfg["shard"],
    )


def _client(cfg: dict):
    from converseg_ros.dataengine.vlm import Accounting, Prices, RetryPolicy, VLMClient, make_backend
    from converseg_ros.dataengine.vlm.gemini import DEFAULT_PRICES

    backend = make_backend(cfg["vlm"], cfg["model"], cfg["base_url"], cfg["api_key_env"], cfg["timeout"],
                           cfg["max_tokens"], cfg["device"], cfg["precision"], cfg["allow_download"])
    default_in, default_out = DEFAULT_PRICES if cfg["vlm"] == "gemini" else (0.0, 0.0)
    prices = Prices(cfg["price_in"] if cfg["price_in"] is not None else default_in,
                    cfg["price_out"] if cfg["price_out"] is not None else default_out)
    policy = RetryPolicy(attempts=max(1, cfg["retries"]), timeout=cfg["timeout"], backoff=cfg["backoff"])
    return VLMClient(backend, policy, cfg["concurrency"] or cfg["workers"], Accounting(prices))


def _segmenter(cfg: dict):
    from converseg_ros.dataengine.models import is_preset, load_box_sam2, load_net
    from converseg_ros.dataengine.segmenter import BoxSegmenter

    shares_net = (cfg["vlm"] == "transformers" and cfg["model"] == cfg["sam2"] and is_preset(cfg["sam2"])
                  and cfg["sam2_weights"] == "release" and not cfg["sam2_checkpoint"])
    if shares_net:  # the local VLM's preset: reuse its already-loaded SAM2
        return BoxSegmenter(load_net(cfg["sam2"], cfg["device"], cfg["precision"], cfg["allow_download"]).sam)
    return BoxSegmenter(load_box_sam2(cfg["sam2"], cfg["sam2_weights"], cfg["sam2_checkpoint"],
                                      cfg["allow_download"], cfg["device"]))


def run_main(argv: list[str]) -> int:
    from converseg_ros.dataengine.inputs import collect_inputs, to_json
    from converseg_ros.dataengine.pipeline import Pipeline
    from converseg_ros.dataengine.store import RunStore

    args = vars(_run_parser().parse_args(argv))
    out, resume = Path(args.pop("out")), args.pop("resume")
    store = RunStore(out)
    stored = store.read_json("run.json")
    if stored is not None and not resume:
        raise ConverSegError(f"{out} already holds a run; pass --resume to continue it")
    if stored is None and resume and not args.get("ray"):
        raise ConverSegError(f"--resume: {out} holds no run (no run.json)")
    cfg = resolve_config(args, (stored or {}).get("config") if stored else None)
    if cfg["ray"]:
        from converseg_ros.dataengine.ray_runner import run_on_ray

        result = run_on_ray(argv, out, cfg["ray"], cfg["ray_address"])
        print(json.dumps(result, indent=1))
        return 0 if all(s["counts"]["pending"] == 0 for s in result["shards"]) else 1
    if stored is not None and store.remove_partial_files():
        log.info("removed temporary files of an interrupted session")
    if stored is None:
        store.write_json("run.json", {"version": 1, "config": {k: cfg[k] for k in RESULT_DEFAULTS}})
    inputs = store.inputs()
    if inputs is None:  # first start, or killed while enumerating: frames already written are reused
        inputs = collect_inputs(_input_spec(cfg), out)
        store.write_json("inputs.json", to_json(inputs))
    log.info("%d inputs in %s", len(inputs), out)
    pipeline = Pipeline(store, _client(cfg), _segmenter(cfg), _settings(cfg), retry_failed=cfg["retry_failed"])
    manifest = pipeline.run(inputs, cfg["workers"], cfg["progress"])
    summary = store.read_json("summary.json") or {}
    print(json.dumps({"run": str(out), **manifest["counts"], "total": manifest["total"],
                      "samples": manifest["samples"], "vlm": summary.get("total", {})}, indent=1))
    return 0


def status_main(argv: list[str]) -> int:
    from converseg_ros.dataengine.samples import expand_runs

    p = argparse.ArgumentParser(prog="converseg-data status", description="counts of a run (or of its shards)")
    p.add_argument("run", nargs="+", help="run folder(s)")
    args = p.parse_args(argv)
    totals = {"total": 0, "done": 0, "failed": 0, "pending": 0, "samples": 0}
    failures: dict[str, int] = {}
    vlm = {"calls": 0, "retries": 0, "input_tokens": 0, "output_tokens": 0, "cost_usd": 0.0}
    for store in expand_runs(args.run):
        manifest = store.manifest()
        totals["total"] += manifest["total"]
        totals["samples"] += manifest["samples"]
        for k, v in manifest["counts"].items():
            totals[k] += v
        for entry in manifest["items"].values():
            if entry["status"] == "failed":
                failures[entry["stage"]] = failures.get(entry["stage"], 0) + 1
        summary = (store.read_json("summary.json") or {}).get("total", {})
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
    args = p.parse_args(argv)
    result = export_runs(args.run, args.train, args.items, args.assets, args.require_review, args.negatives,
                         args.name)
    print(json.dumps(result, indent=1))
    return 0


def review_main(argv: list[str]) -> int:
    from converseg_ros.dataengine.review import make_server

    p = argparse.ArgumentParser(prog="converseg-data review", description="Accept/Reject samples in a browser")
    p.add_argument("run", nargs="+", help="run folder(s)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: this machine only)")
    p.add_argument("--port", type=int, default=8765, help="port (0: any free one)")
    args = p.parse_args(argv)
    server = make_server(args.run, args.host, args.port)
    host, port = server.server_address[:2]
    print(f"review: http://{host}:{port}/  ({len(server.review_data.records)} samples; Ctrl-C to stop)", flush=True)
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

