"""Gated promotion (``converseg-train promote``) on the tiny preset and real photos: a fine-tuned candidate is
promoted over the untrained baseline, a candidate made worse on purpose is refused, a family that drops more
than the tolerance refuses an overall better candidate; the gate's rules on constructed scores."""

from __future__ import annotations

import json
import shutil

import cv2
import numpy as np
import pytest
import torch

from converseg_ros.data.readers import read_items_json
from converseg_ros.engine import ConverSegEngine
from converseg_ros.evaluation.runner import evaluate_split
from converseg_ros.imaging import decode_image
from converseg_ros.modeling.checkpoints import release_files, write_release
from converseg_ros.training.cli import main
from converseg_ros.training.config import load_config
from converseg_ros.training.export import export_release
from converseg_ros.training.loop import Trainer
from converseg_ros.training.model import build_training_model
from converseg_ros.training.promote import Gate, judge

FIRST = ["--decode-mode", "first"]  # fine-tuning trains decoder output 0


@pytest.fixture(scope="module")
def models(photo_data, tmp_path_factory):
    """``base``: the untrained tiny model as a release; ``run``: 30 steps of fine-tuning on the held-out
    photos themselves (so it must score higher on them); ``good``: that run exported."""
    root = tmp_path_factory.mktemp("promote")
    net = build_training_model(load_config(None, ["model.preset=tiny"]).model)
    write_release(net.sam, net.adapter, root / "base", 0)
    cfg = load_config(None, [
        "model.preset=tiny", f"out={root / 'run'}", "steps=30", "batch_size=4", "optim.lr=3e-3", "optim.min_lr=3e-3",
        "optim.warmup_fraction=0.05", "loss.bce=0.2", "loss.dice=1.0", "data.val_fraction=0", "data.workers=0",
        "val_every=1000", "save_every=1000",
    ])
    cfg.data.train = [str(photo_data / "dataset.jsonl")]
    Trainer(cfg).run()
    export_release(root / "run", root / "good")
    return root


def _report(out) -> dict:
    return json.loads(out.with_name(out.name + ".promotion.json").read_text())


def _left_over(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_fine_tuned_candidate_is_promoted(models, photo_data, tmp_path):
    out = tmp_path / "releases" / "v2"
    code = main(["promote", str(models / "run"), "--baseline", str(models / "base"), "--items",
                 str(photo_data / "items.json"), "--to", str(out), *FIRST])
    assert code == 0
    report = _report(out)
    giou = report["scores"]["giou"]
    assert report["verdict"] == "promoted" and report["reasons"] == [] and report["release"] == str(out)
    assert giou["candidate"]["all"] >= giou["baseline"]["all"] + 0.01
    assert report["scores"]["count"] == {"all": 4, "entities": 2, "spatial": 0, "relations": 1, "affordances": 1,
                                         "physics": 0}
    assert report["settings"]["decode_mode"] == "first" and report["preset"] == "tiny"
    markdown = out.with_name("v2.promotion.md").read_text()
    assert "# Promotion: PROMOTED" in markdown and "| affordances | 1 |" in markdown
    assert _left_over(out.parent) == []  # no staging folder left
    # the promoted release is what was evaluated: it reproduces the candidate's per-item IoUs
    engine = ConverSegEngine.from_preset("tiny", device="cpu", precision="fp32", overrides=release_files(out),
                                         decode_mode="first")
    _, items = evaluate_split(engine, read_items_json(photo_data / "items.json").samples, "again")
    assert [i.iou for i in items] == [row["candidate"] for row in report["scores"]["items"]]


def test_candidate_made_worse_is_refused(models, photo_data, tmp_path):
    worse = tmp_path / "worse"
    shutil.copytree(models / "good", worse)
    sam2 = release_files(worse)["sam2_checkpoint"]
    state = torch.load(sam2, map_location="cpu", weights_only=True)
    generator = torch.Generator().manual_seed(0)
    for name, value in state["model"].items():
        if name.startswith("sam_mask_decoder.") and value.is_floating_point() and value.numel() > 1:
            value += torch.randn(value.shape, generator=generator) * value.std()  # noise as large as the weights
    torch.save(state, sam2)
    out = tmp_path / "v3"
    # the baseline as the training run (exported on the fly; its preset is the one both are built on)
    code = main(["promote", str(worse), "--baseline", str(models / "run"), "--items", str(photo_data / "items.json"),
                 "--to", str(out), "--preprocess", "squash", *FIRST])
    assert code == 3
    assert not out.exists() and _left_over(tmp_path) == []
    report = _report(out)
    giou = report["scores"]["giou"]
    assert report["verdict"] == "refused" and report["release"] is None
    assert report["settings"]["preprocess"] == "squash" and report["preset"] == "tiny"
    assert giou["candidate"]["all"] < giou["baseline"]["all"]
    assert report["reasons"][0].startswith("overall gIoU")
    assert "# Promotion: REFUSED" in out.with_name("v3.promotion.md").read_text()


def test_a_family_dropping_beyond_the_tolerance_refuses_a_better_candidate(models, photo_data, tmp_path):
    """Constructed held-out set: the affordances photo three times (the candidate gains there) and the
    saucer (relations) with the baseline's own answer as its ground truth (the baseline scores 1 there, so
    any change of the candidate's answer is a drop)."""
    items = json.loads((photo_data / "items.json").read_text())["items"]
    helmet = next(i for i in items if i["concept"] == "affordances")
    saucer = next(i for i in items if i["concept"] == "relations")
    baseline = ConverSegEngine.from_preset("tiny", device="cpu", precision="fp32",
                                           overrides=release_files(models / "base"), decode_mode="first")
    rgb = decode_image(photo_data / saucer["image"])
    answer = baseline.segment_image(rgb, [saucer["prompt"]])[0].mask
    cv2.imwrite(str(tmp_path / "saucer_answer.png"), answer.astype(np.uint8) * 255)
    rows = [{**helmet, "id": f"helmet_{k}", "image": str(photo_data / helmet["image"]),
             "mask": str(photo_data / helmet["mask"])} for k in range(3)]
    rows.append({**saucer, "image": str(photo_data / saucer["image"]), "mask": str(tmp_path / "saucer_answer.png")})
    heldout = tmp_path / "heldout.json"
    heldout.write_text(json.dumps({"dataset": "constructed", "count": len(rows), "items": rows}))

    def promote(out: str, *extra: str) -> tuple[int, dict]:
        code = main(["promote", str(models / "run"), "--baseline", str(models / "base"), "--items", str(heldout),
                     "--to", str(tmp_path / out), *FIRST, *extra])
        return code, _report(tmp_path / out)

    code, report = promote("tolerant", "--family-tolerance", "1.0")
    giou = report["scores"]["giou"]
    assert giou["baseline"]["relations"] == 1.0
    drop = giou["baseline"]["relations"] - giou["candidate"]["relations"]
    assert drop > 0.02 and giou["candidate"]["all"] > giou["baseline"]["all"] + 0.01  # the construction holds
    assert code == 0 and (tmp_path / "tolerant").is_dir()
    code, report = promote("strict")  # default tolerance: 2 points
    assert code == 3 and not (tmp_path / "strict").exists()
    assert report["verdict"] == "refused" and len(report["reasons"]) == 1
    assert report["reasons"][0].startswith("family relations (1 items)")


def _scores(base: dict, cand: dict, failed: list[str] | None = None) -> dict:
    counts = {group: 4 if group == "all" else 2 for group in base}
    return {"giou": {"baseline": base, "candidate": cand}, "count": counts, "candidate_failed": failed or []}


def test_gate_rules():
    base = {"all": 0.50, "spatial": 0.60, "physics": 0.40}
    better = {"all": 0.55, "spatial": 0.59, "physics": 0.51}
    assert judge(_scores(base, better), Gate()).promoted  # spatial -1 point: within 2
    assert not judge(_scores(base, better), Gate(margin=0.06)).promoted  # +5 points < 6
    drop = judge(_scores(base, {**better, "spatial": 0.55}), Gate())  # spatial -5 points
    assert not drop.promoted and drop.reasons == [
        "family spatial (2 items): gIoU 55.00 vs 60.00 (-5.00 points), more than the tolerance of 2.00"]
    assert judge(_scores(base, {**better, "spatial": 0.55}), Gate(family_tolerance=0.05)).promoted
    assert not judge(_scores(base, base), Gate(margin=0.0)).promoted  # equal is no improvement
    failed = judge(_scores(base, better, ["x: bad image"]), Gate())
    assert not failed.promoted and "failed 1 item(s)" in failed.reasons[0]
    with pytest.raises(ValueError, match="margin"):
        Gate(margin=-0.1)


def test_bad_requests_are_errors_and_write_nothing(models, photo_data, tmp_path, capsys):
    (tmp_path / "taken").mkdir()
    args = ["promote", str(models / "run"), "--baseline", str(models / "base"), "--items"]
    assert main([*args, str(photo_data / "items.json"), "--to", str(tmp_path / "taken")]) == 2
    assert "exists" in capsys.readouterr().err
    assert main([*args, str(tmp_path / "missing.json"), "--to", str(tmp_path / "new")]) == 2
    assert main(["promote", str(tmp_path / "taken"), "--baseline", str(models / "base"), "--items",
                 str(photo_data / "items.json"), "--to", str(tmp_path / "new")]) == 2  # neither release nor run
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken"]
