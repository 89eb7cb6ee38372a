"""--ray N on a local Ray instance (127.0.0.1): N shard tasks split the inputs without overlap, and the
folder of shards works with status and export like one run."""

from __future__ import annotations

import json

import pytest
from dataengine_inputs import run_args

from converseg_ros.dataengine.cli import main
from converseg_ros.dataengine.ray_runner import shard_argv

ray = pytest.importorskip("ray", reason="ray is not installed (pip install ray)")


def test_two_shards_on_local_ray(scripted, photo_dir, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")  # a throw-away local instance
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    out = tmp_path / "run"
    assert main(run_args(out, scripted.openai_url, "--images", str(photo_dir), "--families", "physics",
                         "--ray", "2")) == 0
    result = json.loads(capsys.readouterr().out)
    shards = sorted(s["shard"] for s in result["shards"])
    assert [p.rsplit("/", 1)[-1] for p in shards] == ["shard-0-of-2", "shard-1-of-2"]
    ids = [set(json.loads((out / name / "manifest.json").read_text())["items"]) for name in
           ("shard-0-of-2", "shard-1-of-2")]
    assert ids[0].isdisjoint(ids[1])
    assert ids[0] | ids[1] == {"img_coffee", "img_chelsea", "img_astronaut", "img_corrupt"}
    assert main(["status", str(out)]) == 0
    status = json.loads(capsys.readouterr().out)
    assert (status["total"], status["done"], status["failed"], status["pending"]) == (4, 3, 1, 0), status
    assert main(["export", str(out), "--items", str(tmp_path / "data" / "items.json")]) == 0
    assert json.loads(capsys.readouterr().out)["images"] == 3


def test_shard_command_lines(tmp_path):
    argv = ["--images", "photos", "--vlm", "openai", "--ray", "3", "--out", "x", "--ray-address=auto", "--resume"]
    cmd = shard_argv(argv, tmp_path, 1, 3)
    assert cmd[:2] == ["run", "--images"] and cmd[2].startswith("/")  # relative paths made absolute
    assert "--ray" not in cmd and "--ray-address=auto" not in cmd and "--resume" not in cmd
    assert cmd[-5:] == ["--out", str(tmp_path / "shard-1-of-3"), "--shard", "1/3", "--no-progress"]
