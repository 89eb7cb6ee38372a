"""One run of the data engine, from a resolved configuration: what ``converseg-data run`` and every Ray shard
task call (the CLI parses, ``ray_runner`` fans out, this module runs; neither imports the other back).

A first start writes ``run.json`` marked ``starting``, lists the inputs, builds the VLM client and SAM2, and
only then marks the run ``ready``: a start that fails on bad inputs or settings removes what it wrote (a
corrected command starts afresh); a run killed while starting counts as no run yet. A full disk keeps what
is done (``--resume`` continues). Temporary ``.part`` files of a killed session are swept on every start.
"""

from __future__ import annotations

import logging
import shutil
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from converseg_ros.dataengine import config as conf
from converseg_ros.dataengine.estimate import estimate, paths_to_stores
from converseg_ros.dataengine.inputs import InputSpec, Sampling, collect_inputs, to_json
from converseg_ros.dataengine.runfiles import DiskFullError, RunFileError
from converseg_ros.dataengine.store import DONE, FAILED, RunStore
from converseg_ros.errors import ConverSegError

log = logging.getLogger("converseg-data")
RUN_FORMAT = 2


def prepare(args: dict, out: Path, resume: bool) -> dict:
    """The resolved configuration: stored settings (run.json of the run, or of its first shard) + arguments."""
    stored = None
    for candidate in [out, *sorted(Path(out).glob("shard-*"))] if resume else [out]:
        info = RunStore(candidate).run_info()
        if info is not None:
            stored = info["config"]
            break
    if stored is None and resume and not args.get("ray"):
        raise ConverSegError(f"--resume: {out} holds no run (no run.json)")
    return conf.resolve_config(args, stored)


def input_spec(cfg: dict) -> InputSpec:
    return InputSpec(
        images=cfg["images"], bags=cfg["bag"], topics=cfg["topic"], droid=cfg["droid"], rlds=cfg["rlds"],
        cameras=[c for c in cfg["cameras"].split(",") if c], sampling=Sampling(cfg["every_s"], cfg["scene_threshold"]),
        max_images=cfg["max_images"], shard=cfg["shard"], instruction_topic=cfg["instruction_topic"], fps=cfg["fps"],
    )


def settings(cfg: dict):
    from converseg_ros.dataengine.stages.context import StageSettings

    return StageSettings(families=tuple(cfg["families"].split(",")), hard_negatives=cfg["hard_negatives"],
                         max_regions=cfg["max_regions"], temperature=cfg["temperature"],
                         vlm_max_side=cfg["vlm_max_side"])


def prices(cfg: dict) -> tuple[float, float]:
    from converseg_ros.dataengine.vlm.gemini import DEFAULT_PRICES

    default_in, default_out = DEFAULT_PRICES if cfg["vlm"] == "gemini" else (0.0, 0.0)
    return (cfg["price_in"] if cfg["price_in"] is not None else default_in,
            cfg["price_out"] if cfg["price_out"] is not None else default_out)


def make_client(cfg: dict, spent_before: float = 0.0, on_attempt: Callable[[dict], None] | None = None):
    from converseg_ros.dataengine.vlm import (
        Accounting,
        Budget,
        Pace,
        Prices,
        RetryPolicy,
        VLMClient,
        make_backend,
    )

    backend = make_backend(cfg["vlm"], cfg["model"], cfg["base_url"], cfg["api_key_env"], cfg["timeout"],
                           cfg["max_tokens"], cfg["device"], cfg["precision"], cfg["allow_download"])
    policy = RetryPolicy(attempts=max(1, cfg["retries"]), timeout=cfg["timeout"], backoff=cfg["backoff"])
    return VLMClient(backend, policy, cfg["concurrency"] or cfg["workers"], Accounting(Prices(*prices(cfg))),
                     budget=Budget(cfg["max_cost"], spent_before), pace=Pace(cfg["rpm"]), on_attempt=on_attempt)


def make_segmenter(cfg: dict):
    from converseg_ros.dataengine.models import is_preset, load_box_sam2, load_net
    from converseg_ros.dataengine.segmenter import BoxSegmenter

    shares_net = (cfg["vlm"] == "transformers" and cfg["model"] == cfg["sam2"] and is_preset(cfg["sam2"])
                  and cfg["sam2_weights"] == "release" and not cfg["sam2_checkpoint"])
    if shares_net:  # the local VLM's preset: reuse its already-loaded SAM2
        return BoxSegmenter(load_net(cfg["sam2"], cfg["device"], cfg["precision"], cfg["allow_download"]).sam)
    return BoxSegmenter(load_box_sam2(cfg["sam2"], cfg["sam2_weights"], cfg["sam2_checkpoint"],
                                      cfg["allow_download"], cfg["device"]))


def _spent(store: RunStore) -> float:
    try:
        return float(((store.read("summary.json") or {}).get("total") or {}).get("cost_usd", 0.0))
    except (RunFileError, TypeError, ValueError):
        return 0.0


def _run_record(cfg: dict, state: str) -> dict:
    return {"version": RUN_FORMAT, "state": state, "package_version": conf.package_version(),
            "prompt_templates": conf.template_hash(), "config": conf.stored_settings(cfg)}


def _remove_start(out: Path, created: bool) -> None:
    """Undo a failed first start: the folder if this start made it, else only the files it wrote."""
    if created:
        shutil.rmtree(out, ignore_errors=True)
        return
    for name in ("run.json", "inputs.json", "inputs_report.json", "manifest.json", "summary.json"):
        (out / name).unlink(missing_ok=True)
    shutil.rmtree(out / "frames", ignore_errors=True)
    shutil.rmtree(out / "items", ignore_errors=True)


def dry_run(cfg: dict, out: Path, resume: bool) -> dict:
    """Inputs, requests, tokens and cost of what a run would do; writes nothing."""
    store = RunStore(out)
    stores = paths_to_stores(cfg["estimate_from"])
    inputs = store.inputs() if resume else None
    duplicates = 0
    if inputs is None:
        inputs, report = collect_inputs(input_spec(cfg), None, cfg["progress"])
        duplicates = len(report.duplicates)
    else:
        stores = [store, *stores]
        inputs = [i for i in inputs if store.item_state(i.id).get("status") not in (DONE, FAILED)]
    families = len(cfg["families"].split(","))
    result = estimate(len(inputs), families, prices(cfg), cfg["vlm_max_side"], stores)
    return {"dry_run": True, "run": str(out), "inputs": len(inputs), "duplicates_left_out": duplicates,
            "inputs_by_kind": dict(Counter(i.source.get("kind", "?") for i in inputs)),
            "with_instructions": sum(bool(i.instructions) for i in inputs), "estimate": result}


def run_local(cfg: dict, out: Path, resume: bool, on_attempt: Callable[[dict], None] | None = None) -> dict:
    """Start or continue the run in ``out`` on this machine; returns its counts and cost."""
    from converseg_ros.dataengine.pipeline import Pipeline
    from converseg_ros.dataengine.vlm import BudgetExceeded, FatalVLMError

    out = Path(out)
    store = RunStore(out)
    info = store.run_info()
    starting = info is not None and info.get("state") == "starting"
    if info is not None and not starting and not resume:
        raise ConverSegError(f"{out} already holds a run; pass --resume to continue it")
    if info is None and resume:
        raise ConverSegError(f"--resume: {out} holds no run (no run.json)")
    warnings = [w for w in [conf.url_warning(cfg)] if w]
    if out.is_dir() and (swept := store.remove_partial_files()):
        log.info("removed %d temporary files of an interrupted session", swept)
    if info is not None and not starting:
        if info.get("prompt_templates") != conf.template_hash():
            warnings.append(f"the prompt templates changed since this run started ({info.get('prompt_templates')} "
                            f"-> {conf.template_hash()}): finished stages keep their old prompts")
        if info.get("package_version") != conf.package_version():
            warnings.append(f"this run was started by converseg_ros {info.get('package_version')}, "
                            f"now {conf.package_version()}")
    for text in warnings:
        log.warning("%s", text)
    first = info is None or starting
    created = not out.exists()
    try:
        if first:
            store.write_json("run.json", _run_record(cfg, "starting"))
        inputs = store.inputs()
        if inputs is None:  # first start, or killed while listing: frames already written are reused
            inputs, report = collect_inputs(input_spec(cfg), out, cfg["progress"])
            store.write_json("inputs.json", to_json(inputs))
            store.write_json("inputs_report.json", report.to_json())
        client = make_client(cfg, _spent(store), on_attempt)
        segmenter = make_segmenter(cfg)
        if first:
            store.write_json("run.json", _run_record(cfg, "ready"))
    except (DiskFullError, KeyboardInterrupt):
        raise  # kept: --resume continues
    except BaseException:
        if first:
            _remove_start(out, created)
        raise
    log.info("%d inputs in %s", len(inputs), out)
    pipeline = Pipeline(store, client, segmenter, settings(cfg), retry_failed=cfg["retry_failed"])
    try:
        manifest = pipeline.run(inputs, cfg["workers"], cfg["progress"])
    except FatalVLMError as exc:
        if first and not isinstance(exc, BudgetExceeded) and not any(out.glob("items/*/stage*.json")):
            _remove_start(out, created)  # nothing was made: the corrected command starts afresh
        raise
    summary = (store.read("summary.json") or {}).get("total", {})
    report = store.read("inputs_report.json") or {}
    return {"run": str(out), **manifest["counts"], "total": manifest["total"], "samples": manifest["samples"],
            "duplicates_left_out": report.get("duplicates", 0), "vlm": summary, "warnings": warnings}
