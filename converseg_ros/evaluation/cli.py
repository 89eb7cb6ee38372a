"""``converseg-eval``: gIoU / cIoU of a model on the ConverSeg benchmark, items.json or ReasonSeg data.

converseg-eval --preset converseg-3b --hf --out reports/3b          (hub benchmark, both splits)
converseg-eval --preset tiny --items items.json --save-preds preds/ --out reports/tiny
converseg-eval --preset converseg-3b --release runs/x/release --items robot/items.json --out reports/x
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from converseg_ros.cli.model_args import add_model_arguments, engine_from_args, model_overrides
from converseg_ros.data.hub import HUB_DATASET, HUB_SPLITS, load_hub_split
from converseg_ros.data.readers import read_items_json, read_reasonseg
from converseg_ros.data.samples import ReadResult
from converseg_ros.errors import ConverSegError
from converseg_ros.modeling.atomic import sweep_stale

log = logging.getLogger("converseg-eval")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="converseg-eval", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_model_arguments(p.add_argument_group("model"), allow_download=False)
    data = p.add_argument_group("data (any combination; each source is reported as its own split)")
    data.add_argument("--hf", action="store_true", help=f"the ConverSeg benchmark ({HUB_DATASET})")
    data.add_argument("--hf-dataset", default=HUB_DATASET, help="hub id or local copy of the benchmark")
    data.add_argument("--splits", default=",".join(HUB_SPLITS), help="comma-separated benchmark splits")
    data.add_argument("--hf-cache", help="datasets cache directory")
    data.add_argument("--items", action="append", default=[], help="items.json file (repeatable)")
    data.add_argument("--reasonseg", action="append", default=[], help="ReasonSeg-style folder (repeatable)")
    data.add_argument("--limit", type=int, help="evaluate at most N items per split")
    out = p.add_argument_group("output")
    out.add_argument("--out", required=True, help="report directory (report.json, report.md, items.jsonl)")
    out.add_argument("--save-preds", help="write <id>_pred.png (0/255) and <id>_panel.png per item here")
    return p


def _split_name(path: str, taken: dict) -> str:
    stem = Path(path).stem if Path(path).is_file() else Path(path).name
    name = Path(path).parent.name if stem == "items" and Path(path).parent.name else stem
    base, k = name, 2
    while name in taken:
        name, k = f"{base}_{k}", k + 1
    return name


def load_splits(args: argparse.Namespace) -> dict[str, ReadResult]:
    """Every requested data source, keyed by split name."""
    splits: dict[str, ReadResult] = {}
    if args.hf:
        for split in [s.strip() for s in args.splits.split(",") if s.strip()]:
            splits[split] = load_hub_split(split, args.hf_dataset, args.hf_cache, args.limit)
    for path in args.items:
        splits[_split_name(path, splits)] = read_items_json(path)
    for path in args.reasonseg:
        splits[_split_name(path, splits)] = read_reasonseg(path)
    if not splits:
        raise ConverSegError("no data: pass --hf, --items FILE or --reasonseg DIR")
    for result in splits.values():
        if args.limit is not None:
            result.samples = result.samples[: args.limit]
    return splits


def _engine(args: argparse.Namespace):
    return engine_from_args(args), model_overrides(args)


def run(args: argparse.Namespace) -> dict:
    """Evaluate and write the report; returns the report dict."""
    from converseg_ros.evaluation.report import build_report, write_report
    from converseg_ros.evaluation.runner import evaluate_split

    splits = load_splits(args)
    engine, overrides = _engine(args)
    spec = engine.spec
    is_release = bool(spec.trained and spec.paper and not overrides)
    if is_release:
        weights = "the preset's release"
    elif overrides:
        weights = args.release or ", ".join(f"{k}={v}" for k, v in overrides.items())
    else:
        weights = "the preset's" + ("" if spec.trained else " (UNTRAINED)")
    model = {"preset": spec.name, "weights": weights, "decode_mode": args.decode_mode,
             "preprocess": args.preprocess}
    metrics, items = {}, []
    sweep_stale(Path(args.out))  # temporaries of a run that was killed (a live one's are left alone)
    for name, data in splits.items():
        for problem in data.problems:
            log.warning("%s: skipped %s", name, problem)
        save = (
            Path(args.save_preds) / name
            if args.save_preds and len(splits) > 1
            else (Path(args.save_preds) if args.save_preds else None)
        )
        if save is not None:
            sweep_stale(save)
        metrics[name], results = evaluate_split(engine, data.samples, name, save)
        metrics[name].failed = [f"{p} (not loaded)" for p in data.problems] + metrics[name].failed
        items += results
    report = build_report(metrics, model, spec.paper if is_release else None)
    paths = write_report(Path(args.out), report, items)
    for name in splits:
        log.info(
            "%s: gIoU %s  cIoU %s  (%d items)",
            name,
            _fmt(report["giou"][name]["all"]),
            _fmt(report["ciou"][name]["all"]),
            report["count"][name]["all"],
        )
    log.info("report: %s", paths["markdown"])
    return report


def _fmt(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f}"


def main(argv: list[str] | None = None) -> int:
    """Console entry point."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = _parser().parse_args(argv)
    try:
        run(args)
    except (ConverSegError, ValueError, OSError) as exc:
        print(f"converseg-eval: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
