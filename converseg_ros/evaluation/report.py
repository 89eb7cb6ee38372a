"""Evaluation reports: ``report.json`` (``giou``/``ciou`` per split and concept family) and ``report.md``,
with the paper's numbers beside ours when the model is the preset's release."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from converseg_ros.data.concepts import FAMILIES
from converseg_ros.evaluation.metrics import ALL, SplitMetrics
from converseg_ros.evaluation.runner import ItemResult
from converseg_ros.modeling.atomic import atomic_write_bytes


def build_report(splits: dict[str, SplitMetrics], model: dict, paper: dict | None) -> dict:
    """The JSON report: ``giou[split][group]``, ``ciou[split][group]`` (fractions), ``count``, ``failed``."""
    summaries = {name: m.summary() for name, m in splits.items()}
    report = {
        "model": model,
        "giou": {s: {g: v["giou"] for g, v in groups.items()} for s, groups in summaries.items()},
        "ciou": {s: {g: v["ciou"] for g, v in groups.items()} for s, groups in summaries.items()},
        "count": {s: {g: v["count"] for g, v in groups.items()} for s, groups in summaries.items()},
        "failed": {name: m.failed for name, m in splits.items()},
    }
    if paper:
        report["paper"] = {
            metric: {
                s: {g: v / 100 for g, v in paper[metric][s].items()}
                for s in splits
                if s in paper.get(metric, {})
            }
            for metric in ("giou", "ciou")
        }
    return report


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f}"


def render_markdown(report: dict) -> str:
    """Human-readable tables, one per split (percent)."""
    model = report["model"]
    lines = [
        "# ConverSeg evaluation",
        "",
        "| preset | weights | decode mode | preprocessing |",
        "|---|---|---|---|",
        f"| {model.get('preset')} | {model.get('weights', '')} | {model.get('decode_mode')} "
        f"| {model.get('preprocess', 'letterbox')} |",
        "",
    ]
    paper = report.get("paper", {})
    for split, groups in report["giou"].items():
        has_paper = split in paper.get("giou", {})
        lines += [f"## {split}", ""]
        header = "| group | items | gIoU | cIoU |" + (" paper gIoU | paper cIoU |" if has_paper else "")
        lines += [header, "|" + "---|" * (header.count("|") - 1)]
        for group in [ALL, *FAMILIES, *(g for g in groups if g not in (ALL, *FAMILIES))]:
            if group not in groups:
                continue
            row = (
                f"| {group} | {report['count'][split][group]} | {_pct(groups[group])} "
                f"| {_pct(report['ciou'][split][group])} |"
            )
            if has_paper:
                row += (
                    f" {_pct(paper['giou'][split].get(group))} "
                    f"| {_pct(paper['ciou'].get(split, {}).get(group))} |"
                )
            lines.append(row)
        failed = report["failed"].get(split, [])
        if failed:
            lines += ["", f"{len(failed)} item(s) failed and are not scored:", ""]
            lines += [f"- {reason}" for reason in failed[:20]]
            if len(failed) > 20:
                lines.append(f"- … and {len(failed) - 20} more (report.json)")
        lines.append("")
    lines += [
        "gIoU = mean per-item IoU (an empty prediction on an empty mask scores 1); "
        "cIoU = total intersection / total union.",
        "",
    ]
    return "\n".join(lines)


def write_report(out_dir: Path, report: dict, items: list[ItemResult]) -> dict[str, Path]:
    """Write report.json, report.md and items.jsonl (one line per item) to ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {
        "json": out_dir / "report.json",
        "markdown": out_dir / "report.md",
        "items": out_dir / "items.jsonl",
    }
    atomic_write_bytes(paths["json"], json.dumps(report, indent=2).encode())
    atomic_write_bytes(paths["markdown"], render_markdown(report).encode())
    atomic_write_bytes(
        paths["items"], "".join(json.dumps(dataclasses.asdict(i)) + "\n" for i in items).encode()
    )
    return paths
