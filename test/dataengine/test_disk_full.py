"""A full disk (a small tmpfs under the run folder): the run stops with "no space left on <dir>", keeps what is
done and marks no image failed for it; stale .part files are swept on the next start; after more space a plain
--resume finishes with exactly the uninterrupted result."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from dataengine_inputs import distinct_photos as _folder
from dataengine_inputs import run_args

from converseg_ros.dataengine.cli import main


def _mount(path: Path, size_kb: int) -> str | None:
    path.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_kb}k", "tmpfs", str(path)],
                          capture_output=True, text=True)
    return None if proc.returncode == 0 else (proc.stderr.strip() or f"mount exited {proc.returncode}")


def _samples(run: Path) -> list[tuple]:
    rows = []
    for stage5 in sorted((run / "items").glob("*/stage5_verify_prompts.json")):
        for s in json.loads(stage5.read_text())["samples"]:
            rows.append((s["id"], s["prompt"], s["verdict"], (stage5.parent / s["mask"]).read_bytes()))
    return rows


def test_full_disk_then_resume(scripted, tmp_path, capsys):
    photos = _folder(tmp_path / "photos", 6)
    reference = tmp_path / "reference"
    args = ("--images", str(photos), "--families", "physics,entities", "--workers", "1")
    assert main(run_args(reference, scripted.openai_url, *args)) == 0
    expected = json.loads((reference / "manifest.json").read_text())
    used_kb = int(subprocess.run(["du", "-sk", str(reference)], capture_output=True, text=True).stdout.split()[0])

    disk = tmp_path / "small_disk"
    why = _mount(disk, max(64, used_kb // 2))
    if why:
        pytest.skip(f"cannot mount a tmpfs here ({why}); the full-disk test needs root and mount rights")
    try:
        out = disk / "run"
        capsys.readouterr()
        assert main(run_args(out, scripted.openai_url, *args)) == 2
        err = capsys.readouterr().err
        assert "no space left on " + str(disk) in err and "--resume" in err
        assert main(["status", str(out)]) == 0  # counts still come, even where manifest.json cannot be rewritten
        mid = json.loads(capsys.readouterr().out)
        assert mid["pending"] > 0 and mid["failed"] == 0
        failed = [k for k in (out / "items").glob("*/status.json") if '"failed"' in k.read_text()]
        assert not failed  # a full disk fails no image
        done_before = len(list((out / "items").glob("*/stage5_verify_prompts.json")))
        assert 0 < done_before < expected["total"]
        capsys.readouterr()
        subprocess.run(["mount", "-o", "remount,size=65536k", str(disk)], check=True)
        stale = out / "items" / ".stale.json.123.part"
        stale.write_bytes(b"left by a kill")
        assert main(["run", "--out", str(out), "--resume", "--no-progress"]) == 0
        resumed = json.loads((out / "manifest.json").read_text())
        assert resumed["counts"] == expected["counts"] and resumed["samples"] == expected["samples"]
        assert resumed["items"] == expected["items"] or {k: v["status"] for k, v in resumed["items"].items()} == {
            k: v["status"] for k, v in expected["items"].items()}
        assert [s[:3] for s in _samples(out)] == [s[:3] for s in _samples(reference)]
        assert not stale.exists() and not list(out.rglob(".*.part"))
        report = os.environ.get("CONVERSEG_REPORT_DIR")
        if report:
            Path(report, "disk_full.json").write_text(json.dumps({
                "tmpfs_kb": max(64, used_kb // 2), "reference_run_kb": used_kb, "message": err.strip().splitlines()[-1],
                "finished_before_resume": done_before, "total": expected["total"],
                "status_when_full": {k: mid[k] for k in ("done", "failed", "pending")},
                "after_resume": resumed["counts"],
                "samples": [resumed["samples"], expected["samples"]]}, indent=1))
    finally:
        subprocess.run(["umount", str(disk)], capture_output=True)
