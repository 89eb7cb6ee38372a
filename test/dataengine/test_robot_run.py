"""A whole run over DROID as released — an RLDS folder and a raw DROID tree written by the tests — against the
scripted VLM: every episode read, the robot's task words in the stage-4 prompts and in every sample and
exported row, and an export split by episode with no episode on both sides and a warning for a thin family."""

from __future__ import annotations

import json
import os
from pathlib import Path

from dataengine_inputs import run_args
from robot_datasets import write_droid_raw, write_droid_rlds

from converseg_ros.dataengine.cli import main

RLDS_TASKS = [("put the marker in the pot", "marker into the pot", ""), ("open the drawer", "", ""),
              ("wipe the table", "clean the table", "")]
RAW_TASKS = {"AUTOLab": "stack the red cup on the blue cup", "ILIAD": "fold the towel"}


def test_run_over_rlds_and_raw_droid(scripted, tmp_path, capsys):
    tfds = tmp_path / "tfds"
    write_droid_rlds(tfds, [(2, t) for t in RLDS_TASKS], shards=2)
    raw, stamp = tmp_path / "droid_raw", "Fri_Jul__7_09:42:23_2023"
    write_droid_raw(raw, "AUTOLab", "success", stamp, "AUTOLab+5d05c5aa+2023-07-07-09h-42m-23s", RAW_TASKS["AUTOLab"],
                    3, step_frames=[2, 0, 1])
    write_droid_raw(raw, "ILIAD", "failure", stamp, "ILIAD+8b1c2d3e+2023-07-07-09h-42m-23s", RAW_TASKS["ILIAD"], 3,
                    photo_offset=1, scene_id=7)
    out = tmp_path / "run"
    assert main(run_args(out, scripted.openai_url, "--rlds", str(tfds), "--droid", str(raw), "--cameras", "ext1",
                         "--every-s", "0", "--families", "physics", "--workers", "2")) == 0
    result = json.loads(capsys.readouterr().out)
    manifest = json.loads((out / "manifest.json").read_text())
    kinds = {}
    for entry in manifest["items"].values():
        kinds[entry["source"]["kind"]] = kinds.get(entry["source"]["kind"], 0) + 1
    assert kinds == {"rlds": 3 * 2, "droid": 2 * 3} and result["pending"] == 0 and result["done"] == 12

    asked = [r for r in scripted.requests if r["stage"] == "concept_prompts"]
    texts = [c["text"] for r in asked for c in r["body"]["messages"][-1]["content"] if c["type"] == "text"]
    assert texts and all("recorded by a robot while it worked on this task" in t for t in texts)
    seen = sorted({t.split("this task: ", 1)[1].split("\n", 1)[0] for t in texts})
    expected = {'"put the marker in the pot" / "marker into the pot"', '"open the drawer"',
                '"wipe the table" / "clean the table"', *(f'"{t}"' for t in RAW_TASKS.values())}
    assert set(seen) == expected
    samples = [s for p in (out / "items").glob("*/stage5_verify_prompts.json")
               for s in json.loads(p.read_text())["samples"]]
    assert samples and all(s["instructions"] for s in samples)

    data = tmp_path / "export"
    assert main(["export", str(out), "--train", str(data / "dataset.jsonl"), "--items", str(data / "eval" /
                 "items.json"), "--eval-fraction", "0.4", "--split-by", "episode", "--seed", "3"]) == 0
    captured = capsys.readouterr()
    exported = json.loads(captured.out)
    rows = [json.loads(line) for line in (data / "dataset.jsonl").read_text().splitlines()]
    items = json.loads((data / "eval" / "items.json").read_text())["items"]
    train_groups, eval_groups = {r["group"] for r in rows}, {i["group"] for i in items}
    assert train_groups and eval_groups and train_groups.isdisjoint(eval_groups), exported["skipped"]
    assert exported["split"]["groups"] == {"train": 3, "eval": 2}  # 5 episodes, 40 % held out
    assert all(r["instructions"] for r in rows + items)
    assert any("physics: only" in w for w in exported["warnings"]) and "warning: family physics" in captured.err
    by_scene = tmp_path / "scene"
    assert main(["export", str(out), "--train", str(by_scene / "d.jsonl"), "--items", str(by_scene / "i.json"),
                 "--split-by", "scene"]) == 0
    scene_split = json.loads(capsys.readouterr().out)["split"]
    assert scene_split["split_by"] == "scene"
    report = os.environ.get("CONVERSEG_REPORT_DIR")
    if report:
        Path(report, "robot_run.json").write_text(json.dumps({
            "inputs": kinds, "counts": {k: result[k] for k in ("done", "failed", "pending", "samples")},
            "instructions_seen_in_stage4_prompts": seen, "stage4_requests": len(asked),
            "export_by_episode": {"exported": exported["exported"], "groups": exported["split"]["groups"],
                                  "warnings": exported["warnings"], "families": exported["families"]},
            "export_by_scene": scene_split}, indent=1))
