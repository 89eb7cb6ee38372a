"""--ray N on a local Ray instance bound to 127.0.0.1: N shard tasks (each the ordinary run, called with the
driver's resolved configuration) split the inputs without overlap, report every VLM request to the driver's
progress, and the folder of shards works with status and export like one run."""

from __future__ import annotations

import importlib.util
import json

import pytest
from dataengine_inputs import run_args

from converseg_ros.dataengine.cli import main
from converseg_ros.dataengine.ray_runner import shard_config

pytestmark = pytest.mark.skipif(importlib.util.find_spec("ray") is None,
                                reason="ray is not installed (pip install ray)")


def test_two_shards_on_local_ray(scripted, photo_dir, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")  # a throw-away local instance
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    out = tmp_path / "run"
    assert main(run_args(out, scripted.openai_url, "--images", str(photo_dir), "--families", "physics",
                         "--ray", "2")) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["ray_node_ip"] == "127.0.0.1"
    shards = sorted(s["shard"] for s in result["shards"])
    assert [p.rsplit("/", 1)[-1] for p in shards] == ["shard-0-of-2", "shard-1-of-2"]
    ids = [set(json.loads((out / name / "manifest.json").read_text())["items"]) for name in
           ("shard-0-of-2", "shard-1-of-2")]
    assert ids[0].isdisjoint(ids[1]) and len(ids[0] | ids[1]) == 4
    attempts = sum(json.loads((out / n / "summary.json").read_text())["total"]["attempts"]
                   for n in ("shard-0-of-2", "shard-1-of-2"))
    assert result["vlm_requests_seen"]["attempts"] == attempts == len(scripted.requests)  # per-request progress
    assert main(["status", str(out)]) == 0
    status = json.loads(capsys.readouterr().out)
    assert (status["total"], status["done"], status["failed"], status["pending"]) == (4, 3, 1, 0), status
    assert main(["export", str(out), "--items", str(tmp_path / "data" / "items.json")]) == 0
    assert json.loads(capsys.readouterr().out)["images"] == 3
    # the same command again resumes every shard: nothing left to do
    before = len(scripted.requests)
    assert main(run_args(out, scripted.openai_url, "--images", str(photo_dir), "--families", "physics",
                         "--ray", "2", "--resume")) == 0
    assert len(scripted.requests) == before


def test_shard_configs():
    cfg = {"max_cost": 1.0, "ray": 4, "ray_address": "auto", "progress": True, "shard": None, "images": ["/abs"]}
    one = shard_config(cfg, 1, 4)
    assert (one["shard"], one["ray"], one["progress"], one["max_cost"], one["images"]) == ("1/4", None, False, 0.25,
                                                                                           ["/abs"])
