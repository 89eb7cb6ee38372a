"""kill -9 in the middle of a run, then --resume: the same final manifest and samples as an uninterrupted run,
no finished stage redone, no duplicate sample id, no temporary file left."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import pytest
from dataengine_inputs import PHOTOS, photo, run_args, write_rosbag2

from converseg_ros.dataengine.cli import main

TOPIC = "/camera/color/image_raw"


@pytest.fixture
def inputs(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    for name in PHOTOS:
        cv2.imwrite(str(folder / f"{name}.png"), cv2.cvtColor(photo(name), cv2.COLOR_RGB2BGR))
    bag = write_rosbag2(tmp_path / "bag", [photo("coffee"), photo("chelsea")], TOPIC, period_s=1.0)
    return ["--images", str(folder), "--bag", str(bag), "--topic", TOPIC, "--every-s", "0.5"]


def _finished_files(run: Path) -> dict[str, tuple[int, int]]:
    """Every finished stage output and the masks they refer to: path -> (inode, mtime_ns). A mask written
    for a stage whose output the kill prevented is not finished (the stage runs again on resume)."""
    out = {}
    for item in (run / "items").iterdir():
        outputs = [p for p in item.glob("*.json") if not p.name.startswith(".")]
        referenced = "".join(p.read_text() for p in outputs if p.name.startswith("stage"))
        for path in item.rglob("*"):
            rel = str(path.relative_to(item))
            if path.is_file() and not path.name.startswith(".") and (path in outputs or f'"{rel}"' in referenced):
                st = path.stat()
                out[str(path.relative_to(run))] = (st.st_ino, st.st_mtime_ns)
    return out


def _samples(run: Path) -> list[tuple]:
    rows = []
    for stage5 in sorted((run / "items").glob("*/stage5_verify_prompts.json")):
        for s in json.loads(stage5.read_text())["samples"]:
            mask = (stage5.parent / s["mask"]).read_bytes()
            rows.append((s["id"], s["prompt"], s["verdict"], s["family"], mask))
    return rows


def test_kill_9_then_resume_matches_uninterrupted(scripted, inputs, tmp_path):
    reference = tmp_path / "reference"
    assert main(run_args(reference, scripted.openai_url, *inputs, "--workers", "2")) == 0
    expected = json.loads((reference / "manifest.json").read_text())
    assert expected["counts"]["pending"] == 0 and expected["samples"] > 0

    scripted.delay = 0.08  # a remote service's latency, so the kill lands mid-run
    killed = tmp_path / "killed"
    cmd = [sys.executable, "-m", "converseg_ros.dataengine.cli",
           *run_args(killed, scripted.openai_url, *inputs, "--workers", "2")]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=os.environ.copy())
    deadline = time.monotonic() + 240
    try:
        while time.monotonic() < deadline:
            done = len(list((killed / "items").glob("*/status.json"))) if (killed / "items").is_dir() else 0
            started = len(list((killed / "items").glob("*/stage1_captions.json"))) if done else 0
            if done >= 2 and started > done:
                break
            assert proc.poll() is None, proc.stderr.read().decode()
            time.sleep(0.05)
        else:
            pytest.fail("the run did not reach the middle in time")
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    before = _finished_files(killed)
    assert any("/masks/" in p for p in before) and any(p.endswith("status.json") for p in before)
    mid = json.loads(subprocess.run(
        [sys.executable, "-m", "converseg_ros.dataengine.cli", "status", str(killed)],
        capture_output=True, text=True, check=True).stdout)
    assert mid["pending"] > 0 and mid["done"] >= 2  # status works on a killed run (rebuilt from the items)

    scripted.delay = 0.0
    requests_before = len(scripted.requests)
    assert main(["run", "--out", str(killed), "--resume", "--no-progress"]) == 0
    resumed = json.loads((killed / "manifest.json").read_text())
    assert resumed["items"] == expected["items"] and resumed["counts"] == expected["counts"]
    assert resumed["samples"] == expected["samples"]

    after = _finished_files(killed)
    redone = [p for p, ident in before.items() if after.get(p) != ident]
    assert not redone, f"finished files rewritten on resume: {redone[:5]}"
    assert not list(killed.rglob(".*.part"))
    got, want = _samples(killed), _samples(reference)
    assert [s[0] for s in got] == [s[0] for s in want]
    assert len({s[0] for s in got}) == len(got)
    assert got == want  # same prompts, verdicts, families and mask bytes
    # the resumed session asked only for what was missing
    ref_calls = json.loads((reference / "summary.json").read_text())["total"]["attempts"]
    assert len(scripted.requests) - requests_before < ref_calls
