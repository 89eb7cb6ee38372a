"""Cost and pace before spending: --dry-run counts inputs, requests and cost without writing anything, and its
estimate (calibrated by a small pilot run) matches the requests a real run then makes on the scripted server
within 10 %; --max-cost stops cleanly and --resume with more budget finishes; --rpm spaces requests."""

from __future__ import annotations

import json
import os
from pathlib import Path

from dataengine_inputs import distinct_photos as _folder
from dataengine_inputs import run_args

from converseg_ros.dataengine.cli import main
from converseg_ros.dataengine.vlm import Pace

PRICES = ("--price-in", "0.30", "--price-out", "2.50")


def test_dry_run_estimate_matches_the_real_run(scripted, tmp_path, capsys):
    pilot = tmp_path / "pilot"
    assert main(run_args(pilot, scripted.openai_url, "--images", str(_folder(tmp_path / "p", 3, 10)),
                         "--families", "physics,entities", *PRICES)) == 0
    photos = _folder(tmp_path / "photos", 8)
    out = tmp_path / "run"
    capsys.readouterr()
    args = run_args(out, scripted.openai_url, "--images", str(photos), "--families", "physics,entities", *PRICES)
    assert main([*args, "--dry-run"]) == 0
    defaults = json.loads(capsys.readouterr().out)
    assert not out.exists()  # a dry run writes nothing
    assert defaults["inputs"] == 8 and defaults["estimate"]["rates_from"].startswith("defaults")
    assert main([*args, "--dry-run", "--estimate-from", str(pilot)]) == 0
    dry = json.loads(capsys.readouterr().out)
    assert dry["estimate"]["rates_from"] == str(pilot) and not out.exists()
    sent = len(scripted.requests)
    assert main(args) == 0
    real = json.loads(capsys.readouterr().out)
    real_requests = len(scripted.requests) - sent
    assert real["vlm"]["attempts"] == real_requests
    estimate = dry["estimate"]["requests"]
    assert abs(estimate - real_requests) <= 0.10 * real_requests, (estimate, real_requests)
    assert abs(dry["estimate"]["cost_usd"] - real["vlm"]["cost_usd"]) <= 0.15 * real["vlm"]["cost_usd"]
    report = os.environ.get("CONVERSEG_REPORT_DIR")
    if report:
        Path(report, "dry_run.json").write_text(json.dumps({
            "images": 8, "pilot_images": 3, "estimate_requests": estimate, "real_requests": real_requests,
            "estimate_cost_usd": dry["estimate"]["cost_usd"], "real_cost_usd": real["vlm"]["cost_usd"],
            "estimate_by_stage": dry["estimate"]["requests_by_stage"], "real_by_stage": real["vlm"]["calls_by_stage"],
            "uncalibrated_default_estimate": defaults["estimate"]["requests"]}, indent=1))


def test_max_cost_stops_cleanly_and_resume_finishes(scripted, tmp_path, capsys):
    photos = _folder(tmp_path / "photos", 4)
    out = tmp_path / "run"
    args = run_args(out, scripted.openai_url, "--images", str(photos), "--families", "physics", *PRICES,
                    "--workers", "1")
    assert main([*args, "--max-cost", "0.004"]) == 2
    assert "--max-cost reached" in capsys.readouterr().err
    assert main(["status", str(out)]) == 0
    mid = json.loads(capsys.readouterr().out)
    assert mid["pending"] > 0 and mid["vlm"]["cost_usd"] >= 0.004
    assert mid["vlm"]["cost_usd"] < 0.004 + 0.002  # at most the request in flight beyond the budget
    assert main(["run", "--out", str(out), "--resume", "--max-cost", "1", "--no-progress"]) == 0
    done = json.loads(capsys.readouterr().out)
    assert done["pending"] == 0 and done["done"] == 4


def test_pace_spaces_requests_with_an_injected_clock():
    now, slept = [100.0], []

    def sleep(s: float) -> None:
        slept.append(s)
        now[0] += s

    pace = Pace(30, clock=lambda: now[0], sleep=sleep)  # one request every 2 s
    waits = [pace.wait() for _ in range(3)]
    assert waits == [0.0, 2.0, 2.0] and slept == [2.0, 2.0]
    now[0] += 10  # idle for a while: the next one goes at once
    assert pace.wait() == 0.0
    assert Pace(None).wait() == 0.0
