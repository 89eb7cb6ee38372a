"""converseg-data review as a process: binds 127.0.0.1, serves the page, pictures and samples, saves decisions,
refuses bad requests (no browser needed)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import httpx
from dataengine_inputs import run_args

from converseg_ros.dataengine.cli import main


def test_review_cli_serves_and_saves(scripted, photo_dir, tmp_path):
    run = tmp_path / "run"
    assert main(run_args(run, scripted.openai_url, "--images", str(photo_dir), "--families", "relations")) == 0
    proc = subprocess.Popen([sys.executable, "-m", "converseg_ros.dataengine.cli", "review", str(run), "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=os.environ.copy())
    try:
        line = proc.stdout.readline()
        assert line.startswith("review: http://127.0.0.1:"), line + proc.stderr.read()
        url = line.split()[1]
        page = httpx.get(url, timeout=10)
        assert page.status_code == 200 and "Accept" in page.text and "keydown" in page.text
        samples = httpx.get(url + "api/samples", timeout=10).json()["samples"]
        assert samples and all(s["family"] == "relations" and s["decision"] is None for s in samples)
        sid = samples[0]["id"]
        overlay = httpx.get(f"{url}img/{sid}/overlay", timeout=10)
        assert overlay.status_code == 200 and overlay.content[:2] == b"\xff\xd8"  # JPEG
        saved = httpx.post(url + "api/decision", json={"id": sid, "decision": "reject"}, timeout=10)
        assert saved.json() == {"id": sid, "decision": "reject"}
        assert json.loads((run / "review.json").read_text())["decisions"][sid]["decision"] == "reject"
        decide = url + "api/decision"
        assert httpx.post(decide, json={"id": "nope", "decision": "accept"}, timeout=10).status_code == 400
        assert httpx.post(decide, json={"id": sid, "decision": "maybe"}, timeout=10).status_code == 400
        assert httpx.post(decide, content=b"x" * 10000, timeout=10).status_code == 413
        assert httpx.get(url + "img/../../etc/passwd", timeout=10).status_code == 404
        assert httpx.get(f"{url}img/{sid}/mask.png", timeout=10).status_code == 404
    finally:
        proc.terminate()
        proc.wait(timeout=10)
