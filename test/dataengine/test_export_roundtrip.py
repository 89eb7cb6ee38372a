"""Export -> converseg-train --steps 2 -> converseg-eval, with the concept family kept per sample and the
review decisions honoured."""

from __future__ import annotations

import json

import numpy as np
import pytest
from dataengine_inputs import run_args

from converseg_ros.data.readers import read_dataset
from converseg_ros.dataengine.cli import main
from converseg_ros.dataengine.samples import Decisions, collect_samples, expand_runs
from converseg_ros.evaluation.cli import main as eval_main
from converseg_ros.imaging import decode_image
from converseg_ros.training.cli import main as train_main


@pytest.fixture
def finished_run(scripted, photo_dir, tmp_path):
    out = tmp_path / "run"
    assert main(run_args(out, scripted.openai_url, "--images", str(photo_dir), "--families",
                         "entities,spatial,affordances", "--workers", "2")) == 0
    return out


def test_export_train_eval_round_trip(finished_run, tmp_path, capsys):
    records, _, _ = collect_samples(expand_runs([finished_run]))
    verified = [r for r in records if r.data["verdict"] == "accept"]
    refused = [r for r in records if r.data["verdict"] == "reject"]
    assert verified and refused
    decisions = Decisions(expand_runs([finished_run]))
    decisions.set(verified[0], "reject")  # a person overrules the verifier both ways
    decisions.set(refused[0], "accept")

    data = tmp_path / "export"
    capsys.readouterr()
    assert main(["export", str(finished_run), "--train", str(data / "dataset.jsonl"),
                 "--items", str(data / "eval" / "items.json")]) == 0
    captured = capsys.readouterr()
    result = json.loads(captured.out)
    exported = result["exported"]
    assert exported["train"] + exported["eval"] == len(verified)  # -1 rejected by the person, +1 accepted
    assert exported["eval"] > 0 and exported["train"] > 0
    assert result["skipped"] == {"rejected in review": 1, "rejected by the verifier": len(refused) - 1}
    assert result["split"]["split_by"] == "image" and result["split"]["groups"] == {"train": 2, "eval": 1}
    assert "family" in captured.err and "entities" in captured.err  # the per-family table

    train = read_dataset(data / "dataset.jsonl")
    items = read_dataset(data / "eval" / "items.json")
    assert not train.problems and not items.problems
    ids = [s.id for s in items.samples]
    rows = [json.loads(line) for line in (data / "dataset.jsonl").read_text().splitlines()]
    both = ids + [r["id"] for r in rows]
    assert len(both) == len(set(both)) and verified[0].id not in both and refused[0].id in both
    assert {s.image for s in train.samples}.isdisjoint({s.image for s in items.samples})  # no image on both sides
    assert {r["concept"] for r in rows} | {s.concept for s in items.samples} == {"entities", "spatial", "affordances"}
    recorded = json.loads((data / "eval" / "split.json").read_text())
    assert recorded["eval_groups"] == sorted({r["group"] for r in json.loads((data / "eval" / "items.json").read_text())
                                           ["items"]})
    for sample in items.samples:  # images and masks match in size (the reference's exporter did not)
        target, _ = sample.load_target(decode_image(sample.image).shape[:2])
        assert target.any()

    run = tmp_path / "train"
    assert train_main(["--preset", "tiny", "--data", str(data / "dataset.jsonl"), "--out", str(run), "--steps", "2",
                       "--batch-size", "2", "--val-fraction", "0", "--workers", "0", "--save-every", "2",
                       "--val-every", "100", "--device", "cpu"]) == 0
    assert train_main(["export", str(run), "--to", str(tmp_path / "release")]) == 0
    report_dir = tmp_path / "report"
    assert eval_main(["--preset", "tiny", "--release", str(tmp_path / "release"), "--items",
                      str(data / "eval" / "items.json"), "--out", str(report_dir), "--device", "cpu",
                      "--precision", "fp32"]) == 0
    report = json.loads((report_dir / "report.json").read_text())
    (split,) = report["count"]
    assert report["count"][split]["all"] == len(ids)
    for family in {s.concept for s in items.samples}:
        assert report["count"][split][family] == sum(s.concept == family for s in items.samples)
        assert 0.0 <= report["giou"][split][family] <= 1.0


def test_require_review_and_no_negatives(scripted, photo_dir, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(run_args(out, scripted.openai_url, "--images", str(photo_dir), "--families", "physics",
                         "--hard-negatives")) == 0
    records, _, _ = collect_samples(expand_runs([out]))
    decisions = Decisions(expand_runs([out]))
    decisions.set(records[0], "accept")
    capsys.readouterr()
    assert main(["export", str(out), "--items", str(tmp_path / "a" / "items.json"), "--require-review"]) == 0
    assert json.loads(capsys.readouterr().out)["exported"] == {"eval": 1}
    assert main(["export", str(out), "--items", str(tmp_path / "b" / "items.json")]) == 0
    with_neg = json.loads(capsys.readouterr().out)["exported"]["eval"]
    assert main(["export", str(out), "--items", str(tmp_path / "c" / "items.json"), "--no-negatives"]) == 0
    without = json.loads(capsys.readouterr().out)
    negatives = [r for r in records if r.data["negative"] and decisions.keep(r, require_review=False)]
    assert negatives
    assert without["exported"]["eval"] == with_neg - len(negatives)
    empty = [s for s in read_dataset(tmp_path / "b" / "items.json").samples
             if not s.load_target(decode_image(s.image).shape[:2])[0].any()]
    assert len(empty) == len(negatives)
    assert np.all([s.concept == "physics" for s in read_dataset(tmp_path / "b" / "items.json").samples])
