"""converseg-data review as a process, with a plain HTTP client: binds 127.0.0.1, prints a URL with a per-run
token, serves the page, pictures and samples only with the token, refuses foreign Host / Origin / content
types, sends the anti-framing and no-sniff headers, and refuses a non-loopback --host without --allow-remote."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from urllib.parse import urlsplit

import httpx
import pytest
from dataengine_inputs import run_args

from converseg_ros.dataengine.cli import main
from converseg_ros.dataengine.review import make_server
from converseg_ros.errors import ConverSegError


def test_review_cli_serves_and_saves(scripted, photo_dir, tmp_path):
    run = tmp_path / "run"
    assert main(run_args(run, scripted.openai_url, "--images", str(photo_dir), "--families", "relations")) == 0
    proc = subprocess.Popen([sys.executable, "-m", "converseg_ros.dataengine.cli", "review", str(run), "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=os.environ.copy())
    try:
        line = proc.stdout.readline()
        assert line.startswith("review: http://127.0.0.1:") and "/?token=" in line, line + proc.stderr.read()
        page_url = line.split()[1]
        parts = urlsplit(page_url)
        base, token = f"{parts.scheme}://{parts.netloc}/", parts.query.split("=", 1)[1]
        auth = {"X-Review-Token": token}
        page = httpx.get(page_url, timeout=10)
        assert page.status_code == 200 and "Accept" in page.text and "/review.js" in page.text
        assert page.headers["x-frame-options"] == "DENY" and page.headers["x-content-type-options"] == "nosniff"
        assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
        assert "script-src 'self'" in page.headers["content-security-policy"]
        assert "keydown" in httpx.get(base + "review.js", timeout=10).text
        assert httpx.get(base, timeout=10).status_code == 401  # the page without the token
        assert httpx.get(base + "api/samples", timeout=10).status_code == 401
        samples = httpx.get(base + "api/samples", headers=auth, timeout=10).json()["samples"]
        assert samples and all(s["family"] == "relations" and s["decision"] is None for s in samples)
        sid = samples[0]["id"]
        assert httpx.get(f"{base}img/{sid}/overlay", timeout=10).status_code == 401
        overlay = httpx.get(f"{base}img/{sid}/overlay", headers=auth, timeout=10)
        assert overlay.status_code == 200 and overlay.content[:2] == b"\xff\xd8"  # JPEG
        decide = base + "api/decision"
        body = {"id": sid, "decision": "reject"}
        saved = httpx.post(decide, json=body, headers=auth, timeout=10)
        assert saved.json() == {"id": sid, "decision": "reject"}
        assert json.loads((run / "review.json").read_text())["decisions"][sid]["decision"] == "reject"
        refused = {
            "no token": httpx.post(decide, json={"id": sid, "decision": "accept"}, timeout=10),
            "wrong token": httpx.post(decide, json={"id": sid, "decision": "accept"},
                                      headers={"X-Review-Token": "x" * 43}, timeout=10),
            "text/plain": httpx.post(decide, content=json.dumps({"id": sid, "decision": "accept"}),
                                     headers={**auth, "Content-Type": "text/plain"}, timeout=10),
            "form": httpx.post(decide, data={"id": sid, "decision": "accept"}, headers=auth, timeout=10),
            "foreign Origin": httpx.post(decide, json={"id": sid, "decision": "accept"},
                                         headers={**auth, "Origin": "http://evil.example"}, timeout=10),
            "null Origin": httpx.post(decide, json={"id": sid, "decision": "accept"},
                                      headers={**auth, "Origin": "null"}, timeout=10),
            "rebound Host": httpx.post(decide, json={"id": sid, "decision": "accept"},
                                       headers={**auth, "Host": f"evil.example:{parts.port}"}, timeout=10),
            "cross-site fetch": httpx.post(decide, json={"id": sid, "decision": "accept"},
                                           headers={**auth, "Sec-Fetch-Site": "cross-site"}, timeout=10),
        }
        codes = {k: r.status_code for k, r in refused.items()}
        assert codes == {"no token": 401, "wrong token": 401, "text/plain": 415, "form": 415, "foreign Origin": 403,
                         "null Origin": 403, "rebound Host": 403, "cross-site fetch": 403}, codes
        assert httpx.get(base + "api/samples", headers={**auth, "Host": "attacker.test"}, timeout=10).status_code == 403
        assert json.loads((run / "review.json").read_text())["decisions"][sid]["decision"] == "reject"  # unchanged
        same_origin = httpx.post(decide, json={"id": sid, "decision": "accept"},
                                 headers={**auth, "Origin": base.rstrip("/")}, timeout=10)
        assert same_origin.status_code == 200  # the page's own origin is fine
        unknown = httpx.post(decide, json={"id": "nope", "decision": "accept"}, headers=auth, timeout=10)
        assert unknown.status_code == 400
        assert httpx.post(decide, json={"id": sid, "decision": "maybe"}, headers=auth, timeout=10).status_code == 400
        assert httpx.post(decide, content=b"x" * 10000, headers={**auth, "Content-Type": "application/json"},
                          timeout=10).status_code == 413
        assert httpx.get(base + "img/../../etc/passwd", headers=auth, timeout=10).status_code == 404
        assert httpx.get(f"{base}img/{sid}/mask.png", headers=auth, timeout=10).status_code == 404
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_remote_binding_needs_the_flag(scripted, photo_dir, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(run_args(run, scripted.openai_url, "--images", str(photo_dir), "--families", "physics")) == 0
    with pytest.raises(ConverSegError, match="--allow-remote"):
        make_server([run], "0.0.0.0", 0)
    assert main(["review", str(run), "--host", "0.0.0.0", "--port", "0"]) == 2
    assert "--allow-remote" in capsys.readouterr().err
