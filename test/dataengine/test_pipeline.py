"""converseg-data run on photos + a rosbag2 + an MCAP file against the scripted server: every input accounted
for, faults retried, one bad image and one hopeless reply isolated, cost summed, the key nowhere on disk."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
from dataengine_inputs import photo, run_args, write_mcap, write_rosbag2

from converseg_ros.data.concepts import FAMILIES, concept_family
from converseg_ros.data.masks import read_mask
from converseg_ros.dataengine.cli import main

SECRET = "sk-pipeline-secret-42"
TOPIC = "/camera/color/image_raw"


@pytest.fixture
def logs(tmp_path):
    frames = [photo("coffee")] * 2 + [photo("rocket")] * 2
    bag = write_rosbag2(tmp_path / "aisle_bag", frames, TOPIC, storage="sqlite3", period_s=1.0)
    mcap = write_mcap(tmp_path / "wrist.mcap", frames[::-1], TOPIC, period_s=1.0)
    return bag, mcap


def test_run_images_and_logs(scripted, photo_dir, logs, tmp_path, monkeypatch, capsys, caplog):
    caplog.set_level(logging.INFO)
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    bag, mcap = logs
    scripted.faults = {  # workers=1: the faults hit images in order
        "region_captions": ["wrongschema"] * 4 + ["429:1", "nonjson", "outside"],
        "mask_check": ["500"],
        "prompt_check": ["503:0.1", "slow:2"],
    }
    out = tmp_path / "run"
    args = run_args(out, scripted.openai_url, "--images", str(photo_dir), "--bag", str(bag), "--bag", str(mcap),
                    "--topic", TOPIC, "--every-s", "2", "--workers", "1", "--timeout", "1",
                    "--price-in", "0.30", "--price-out", "2.50")
    assert main(args) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    bag_ids = [k for k in manifest["items"] if k.startswith("bag_")]
    assert manifest["total"] == 4 + 4 and len(bag_ids) == 4  # 3 photos + 1 corrupt; 2 frames per log
    assert manifest["counts"] == {"done": 6, "failed": 2, "pending": 0}
    failed = {k: v for k, v in manifest["items"].items() if v["status"] == "failed"}
    (corrupt,) = [k for k in failed if k.startswith("img_corrupt_")]
    assert failed[corrupt]["stage"] == "load" and "cannot decode" in failed[corrupt]["reason"]
    (hopeless,) = [v for k, v in failed.items() if k != corrupt]
    assert hopeless["stage"] == "1 (captions)" and "gave up after 4 attempts" in hopeless["reason"]
    assert "does not match the schema" in hopeless["reason"]

    summary = json.loads((out / "summary.json").read_text())["total"]
    assert summary["errors"] == {"wrong_schema": 4, "http_429": 1, "not_json": 1, "box_outside": 1, "http_5xx": 2,
                                 "timeout": 1}
    assert summary["retries"] == 3 + 6 and summary["failed_calls"] == 1
    assert summary["attempts"] == len(scripted.requests)
    assert summary["cost_usd"] == pytest.approx(
        (summary["input_tokens"] * 0.30 + summary["output_tokens"] * 2.50) / 1e6, abs=1e-6)
    assert summary["cost_usd"] > 0

    # samples: unique ids, a family each, masks at the image's own size
    samples = []
    for item_id, entry in manifest["items"].items():
        if entry["status"] != "done":
            continue
        stage5 = json.loads((out / "items" / item_id / "stage5_verify_prompts.json").read_text())
        assert len(stage5["samples"]) == entry["samples"]
        for s in stage5["samples"]:
            assert s["family"] in FAMILIES and concept_family(s["subtype"]) == s["family"]
            mask = read_mask(out / "items" / item_id / s["mask"])
            samples.append((s["id"], mask.shape))
    ids = [sid for sid, _ in samples]
    assert len(ids) == len(set(ids)) == manifest["samples"] > 0
    coffee_frame = next(k for k in bag_ids if manifest["items"][k]["status"] == "done")
    s5 = json.loads((out / "items" / coffee_frame / "stage5_verify_prompts.json").read_text())
    assert read_mask(out / "items" / coffee_frame / s5["samples"][0]["mask"]).shape == photo("coffee").shape[:2]

    # the VLM saw the images; the key went only into the header and is in no file, log or output
    assert {r["auth"] for r in scripted.requests} == {f"Bearer {SECRET}"}
    for path in out.rglob("*"):
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), path
    captured = capsys.readouterr()
    assert SECRET not in captured.out + captured.err + caplog.text

    # status prints the counts as JSON
    assert main(["status", str(out)]) == 0
    status = json.loads(capsys.readouterr().out)
    assert (status["total"], status["done"], status["failed"], status["pending"]) == (8, 6, 2, 0)
    assert status["failed_by_stage"] == {"load": 1, "1 (captions)": 1}
    assert status["vlm"]["cost_usd"] == pytest.approx(summary["cost_usd"])


def test_resume_keeps_settings_and_retries_failed(scripted, photo_dir, tmp_path, capsys):
    out = tmp_path / "run"
    scripted.faults = {"region_captions": ["wrongschema"] * 2}
    assert main(run_args(out, scripted.openai_url, "--images", str(photo_dir), "--workers", "1",
                         "--retries", "2")) == 0
    before = json.loads((out / "manifest.json").read_text())
    assert before["counts"] == {"done": 2, "failed": 2, "pending": 0}
    assert main(run_args(out, scripted.openai_url, "--images", str(photo_dir))) == 2
    assert "already holds a run" in capsys.readouterr().err
    assert main(["run", "--out", str(out), "--resume", "--model", "other"]) == 2
    assert "different settings" in capsys.readouterr().err
    calls = len(scripted.requests)
    assert main(["run", "--out", str(out), "--resume", "--base-url", scripted.openai_url, "--no-progress"]) == 0
    assert len(scripted.requests) == calls  # nothing to do: done and failed images are final
    assert main(["run", "--out", str(out), "--resume", "--retry-failed", "--no-progress"]) == 0
    after = json.loads((out / "manifest.json").read_text())
    assert after["counts"] == {"done": 3, "failed": 1, "pending": 0}  # the corrupt file stays failed
    sessions = json.loads((out / "summary.json").read_text())["sessions"]
    assert len(sessions) == 3 and all(s["finished"] for s in sessions)


def test_hard_negatives_family_choice_and_progress_bar(scripted, tmp_path, capsys):
    folder = tmp_path / "one"
    folder.mkdir()
    import cv2

    cv2.imwrite(str(folder / "coffee.png"), cv2.cvtColor(photo("coffee"), cv2.COLOR_RGB2BGR))
    out = tmp_path / "run"
    args = [a for a in run_args(out, scripted.openai_url) if a != "--no-progress"]
    assert main([*args, "--images", str(folder), "--families", "spatial,physics", "--hard-negatives"]) == 0
    assert "converseg-data: 100%" in capsys.readouterr().err  # the progress bar ran to the end
    (item,) = (out / "items").glob("img_coffee_*")
    stage4 = json.loads((item / "stage4_prompts.json").read_text())
    assert set(stage4["families"]) == {"spatial", "physics"}
    stage5 = json.loads((item / "stage5_verify_prompts.json").read_text())
    assert {s["family"] for s in stage5["samples"]} == {"spatial", "physics"}
    negatives = [s for s in stage5["samples"] if s["negative"]]
    assert len(negatives) == 2 and all(s["satisfying"] == [] for s in negatives)  # one per family
    for s in stage5["samples"]:  # a hard negative's target is empty, every other one is not
        assert np.any(read_mask(item / s["mask"])) != s["negative"]
