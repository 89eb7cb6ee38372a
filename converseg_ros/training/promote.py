"""Gated promotion: a fine-tuned model becomes a release only if it beats the current one on held-out items.

``converseg-train promote CANDIDATE --baseline CURRENT --items heldout.json --to OUT`` evaluates both models
on the same items with the same settings (converseg_ros/evaluation/: gIoU / cIoU overall and per concept
family) and writes the release to ``OUT`` only when

* the overall gIoU of the candidate exceeds the baseline's by at least ``margin`` (and by more than 0), and
* no concept family's gIoU drops by more than ``family_tolerance``, and
* the candidate answers every item the baseline answers (an item it fails on refuses it).

Items that neither model can score (a corrupt file) are left out of both scores and listed. CANDIDATE and
CURRENT may each be a release folder or a training run / checkpoint (exported first, as ``export`` does).
The candidate is written to a staging folder beside ``OUT`` and evaluated there, so the promoted files are
the evaluated bytes; promotion renames it to ``OUT``, refusal deletes it. The report (both scores, per
family, the verdict and its reasons) is written next to ``OUT`` as ``OUT.promotion.json`` and ``.md``
either way. Exit status: 0 promoted, 3 refused, 2 an error (bad input, an existing ``OUT``; no release and
no report are written).
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from converseg_ros.data.concepts import FAMILIES, OTHER
from converseg_ros.data.readers import read_items_json
from converseg_ros.errors import CheckpointError
from converseg_ros.evaluation.metrics import ALL, ItemScore, SplitMetrics
from converseg_ros.evaluation.runner import ItemResult
from converseg_ros.modeling.atomic import atomic_write_bytes
from converseg_ros.modeling.checkpoints import release_files
from converseg_ros.training import checkpoint as ck

EXIT_PROMOTED, EXIT_REFUSED = 0, 3


@dataclass(frozen=True)
class Gate:
    """What the candidate must achieve (gIoU as fractions: 0.01 = one point)."""

    margin: float = 0.01
    family_tolerance: float = 0.02

    def __post_init__(self) -> None:
        if self.margin < 0 or self.family_tolerance < 0:
            raise ValueError(f"margin and family tolerance must be >= 0, got {self.margin}, {self.family_tolerance}")


@dataclass(frozen=True)
class EvalSettings:
    """How both models are run (the same for both)."""

    preset: str | None = None  # None: the candidate's (or baseline's) training preset, else converseg-3b
    device: str = "auto"
    precision: str = "auto"
    decode_mode: str = "multimask"
    preprocess: str = "letterbox"
    threshold: float = 0.5
    dtype: str = "fp32"  # of an exported candidate's language-adapter file


@dataclass
class Verdict:
    promoted: bool
    reasons: list[str] = field(default_factory=list)


def _checkpoint(path: Path) -> Path | None:
    """The training checkpoint ``path`` names, or None when it is a release folder (CheckpointError if it
    is neither)."""
    try:
        return ck.resolve_checkpoint(path)
    except CheckpointError:
        release_files(path)  # raises with the reason when this is no release either
        return None


def resolve_preset(settings: EvalSettings, *sources: Path) -> str:
    if settings.preset:
        return settings.preset
    for source in sources:
        checkpoint = _checkpoint(source)
        if checkpoint is not None:
            from converseg_ros.training.config import load_config

            return load_config(checkpoint / ck.CONFIG_FILE).model.preset
    return "converseg-3b"


def materialize(source: Path, folder: Path, dtype: str) -> Path:
    """The release files of ``source`` (a release, or a checkpoint exported) in ``folder`` (created)."""
    checkpoint = _checkpoint(source)
    folder.mkdir(parents=True)
    if checkpoint is not None:
        from converseg_ros.training.export import export_release

        export_release(checkpoint, folder, dtype)
    else:
        for path in map(Path, release_files(source).values()):
            (shutil.copytree if path.is_dir() else shutil.copy2)(path, folder / path.name)
    return folder


def evaluate_release(release: Path, preset: str, samples: list, settings: EvalSettings) -> list[ItemResult]:
    """Every item's result for the release (the engine is freed afterwards)."""
    from converseg_ros.engine import ConverSegEngine
    from converseg_ros.evaluation.runner import evaluate_split

    engine = ConverSegEngine.from_preset(
        preset, device=settings.device, precision=settings.precision, overrides=release_files(release),
        allow_download=False, decode_mode=settings.decode_mode, mask_threshold=settings.threshold,
        preprocess=settings.preprocess,
    )
    try:
        return evaluate_split(engine, samples, "heldout")[1]
    finally:
        engine.close()


def compare(baseline: list[ItemResult], candidate: list[ItemResult]) -> dict:
    """Both models' scores over the items both answered, and the items only one or neither answered."""
    cand = {item.id: item for item in candidate}
    metrics = {"baseline": SplitMetrics(), "candidate": SplitMetrics()}
    per_item, only_baseline, neither = [], [], []
    for base in baseline:
        other = cand[base.id]
        if base.error is None and other.error is None:
            for name, item in (("baseline", base), ("candidate", other)):
                metrics[name].add(ItemScore(item.id, item.family, item.intersection, item.union))
            per_item.append({"id": base.id, "family": base.family, "baseline": base.iou, "candidate": other.iou})
        elif base.error is None:
            only_baseline.append(f"{base.id}: {other.error}")
        elif other.error is not None:
            neither.append(f"{base.id}: {base.error}")
    summaries = {name: m.summary() for name, m in metrics.items()}
    return {
        "giou": {name: {g: v["giou"] for g, v in s.items()} for name, s in summaries.items()},
        "ciou": {name: {g: v["ciou"] for g, v in s.items()} for name, s in summaries.items()},
        "count": {g: v["count"] for g, v in summaries["baseline"].items()},
        "candidate_failed": only_baseline, "failed_both": neither, "items": per_item,
    }


def judge(scores: dict, gate: Gate) -> Verdict:
    """Apply the gate to ``compare``'s scores."""
    base, cand, counts = scores["giou"]["baseline"], scores["giou"]["candidate"], scores["count"]
    if not counts.get(ALL):
        raise ValueError("no held-out item could be scored by both models")
    reasons = []
    gain = cand[ALL] - base[ALL]
    if gain <= 0 or gain < gate.margin:
        reasons.append(f"overall gIoU {100 * cand[ALL]:.2f} vs {100 * base[ALL]:.2f} ({100 * gain:+.2f} points): "
                       f"needs +{100 * gate.margin:.2f} or more")
    for family in (*FAMILIES, OTHER):
        if counts.get(family):
            drop = base[family] - cand[family]
            if drop > gate.family_tolerance:
                reasons.append(f"family {family} ({counts[family]} items): gIoU {100 * cand[family]:.2f} vs "
                               f"{100 * base[family]:.2f} ({-100 * drop:+.2f} points), more than the tolerance "
                               f"of {100 * gate.family_tolerance:.2f}")
    if scores["candidate_failed"]:
        reasons.append(f"the candidate failed {len(scores['candidate_failed'])} item(s) the baseline answered")
    return Verdict(not reasons, reasons)


def report_paths(out: Path) -> tuple[Path, Path]:
    return out.parent / f"{out.name}.promotion.json", out.parent / f"{out.name}.promotion.md"


def render_markdown(report: dict) -> str:
    scores = report["scores"]
    base, cand = scores["giou"]["baseline"], scores["giou"]["candidate"]
    lines = [f"# Promotion: {report['verdict'].upper()}", "",
             f"candidate `{report['candidate']}` vs baseline `{report['baseline']}` on `{report['items']}` "
             f"({report['settings']['preprocess']}, {report['settings']['decode_mode']}); gate: overall gIoU "
             f"+{100 * report['gate']['margin']:.2f} points, no family below "
             f"-{100 * report['gate']['family_tolerance']:.2f}", "",
             "| group | items | baseline gIoU | candidate gIoU | change |", "|---|---|---|---|---|"]
    for group, count in scores["count"].items():
        if count:
            lines.append(f"| {group} | {count} | {100 * base[group]:.2f} | {100 * cand[group]:.2f} "
                         f"| {100 * (cand[group] - base[group]):+.2f} |")
    lines += ["", *(f"- {reason}" for reason in report["reasons"])]
    if report["release"]:
        lines.append(f"\nRelease written: `{report['release']}`")
    if scores["failed_both"]:
        lines.append(f"\n{len(scores['failed_both'])} item(s) neither model could score (left out): "
                     + "; ".join(scores["failed_both"][:10]))
    return "\n".join(lines) + "\n"


def promote(candidate: Path, baseline: Path, items: Path, out: Path, gate: Gate,
            settings: EvalSettings) -> tuple[Verdict, dict]:
    """Evaluate, judge, write the report and (if promoted) the release; see the module docstring."""
    candidate, baseline, out = Path(candidate), Path(baseline), Path(out)
    if out.exists():
        raise FileExistsError(f"{out} exists: promote to a new folder")
    data = read_items_json(items)
    if not data.samples:
        raise ValueError(f"{items}: no usable item ({'; '.join(data.problems[:3])})")
    preset = resolve_preset(settings, candidate, baseline)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging, scratch = out.parent / f".{out.name}.staging", out.parent / f".{out.name}.baseline"
    for folder in (staging, scratch):
        shutil.rmtree(folder, ignore_errors=True)  # left by an interrupted promotion
    try:
        base_release = baseline if _checkpoint(baseline) is None else materialize(baseline, scratch, "fp32")
        cand_release = materialize(candidate, staging, settings.dtype)
        scores = compare(evaluate_release(base_release, preset, data.samples, settings),
                         evaluate_release(cand_release, preset, data.samples, settings))
        verdict = judge(scores, gate)
        report = {
            "verdict": "promoted" if verdict.promoted else "refused", "reasons": verdict.reasons,
            "candidate": str(candidate), "baseline": str(baseline), "items": str(items),
            "release": str(out) if verdict.promoted else None, "preset": preset, "gate": asdict(gate),
            "settings": asdict(settings), "scores": scores, "problems": data.problems,
            "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        }
        json_path, md_path = report_paths(out)
        atomic_write_bytes(json_path, json.dumps(report, indent=2).encode())
        atomic_write_bytes(md_path, render_markdown(report).encode())
        if verdict.promoted:  # last: a release is never without its report
            staging.rename(out)
        return verdict, report
    finally:
        for folder in (staging, scratch):
            shutil.rmtree(folder, ignore_errors=True)
