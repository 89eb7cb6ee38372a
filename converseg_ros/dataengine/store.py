"""The run folder: every file written atomically, so a ``kill -9`` leaves only finished files behind.

RUN_DIR/
  run.json                       the run's settings (no keys), package version, prompt-template hash
  inputs.json                    every input of this run (id, file, source), written once
  inputs_report.json             units read, duplicates left out
  frames/<id>.png                frames sampled from logs / videos / episodes
  items/<id>/stage<N>_<key>.json each finished stage's output (the marker that the stage is done)
  items/<id>/masks/, samples/    mask PNGs (0/255) those outputs refer to (written first)
  items/<id>/status.json         done, or failed with the stage and reason
  items/<id>/quarantine/         item files that could not be read (moved aside by ``run``)
  manifest.json                  counts and per-input status (rebuilt from the items at any time)
  summary.json                   VLM calls, retries, tokens and cost per session and in total
  review.json                    human Accept/Reject decisions from the review page

Every read goes through ``runfiles.read_run_file``; a full disk raises ``DiskFullError``.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from converseg_ros.dataengine import runfiles
from converseg_ros.dataengine.ids import check_id
from converseg_ros.dataengine.inputs import InputImage, from_json
from converseg_ros.dataengine.runfiles import RunFileError, disk_full, is_disk_full, read_run_file
from converseg_ros.dataengine.stages import STAGES
from converseg_ros.modeling.atomic import atomic_write_bytes, sweep_stale

log = logging.getLogger(__name__)

DONE, FAILED, PENDING = "done", "failed", "pending"


class RunStore:
    """Reads and writes one run folder."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    # generic JSON -----------------------------------------------------------------------------------
    def write_json(self, rel: str | Path, data) -> None:
        try:
            atomic_write_bytes(self.root / rel, (json.dumps(data, indent=1) + "\n").encode())
        except OSError as exc:
            if is_disk_full(exc):
                raise disk_full(exc, self.root / rel) from exc
            raise

    def read(self, rel: str | Path, shape: type = dict, check=None, max_bytes: int = runfiles.MAX_FILE_BYTES):
        """A run file's JSON (None when absent); RunFileError naming the file when it is unusable."""
        return read_run_file(self.root / rel, shape, check, max_bytes)

    def run_info(self) -> dict | None:
        return self.read("run.json", dict, runfiles.check_run)

    # inputs -----------------------------------------------------------------------------------------
    def inputs(self) -> list[InputImage] | None:
        rows = self.read("inputs.json", list, runfiles.check_inputs, runfiles.MAX_LIST_BYTES)
        if rows is None:
            return None
        try:
            return from_json(rows)
        except ValueError as exc:
            raise RunFileError(self.root / "inputs.json", str(exc)) from exc

    def image_path(self, item: InputImage) -> Path:
        path = Path(item.path)
        return path if path.is_absolute() else self.root / path

    # items ------------------------------------------------------------------------------------------
    def item_dir(self, item_id: str) -> Path:
        return self.root / "items" / check_id(item_id)

    @staticmethod
    def stage_file(n: int, key: str) -> str:
        return f"stage{n}_{key}.json"

    def read_stage(self, item_id: str, n: int, key: str) -> dict | None:
        return self.read(Path("items") / check_id(item_id) / self.stage_file(n, key), dict, runfiles.stage_check(key))

    def write_stage(self, item_id: str, n: int, key: str, data: dict) -> None:
        self.write_json(Path("items") / check_id(item_id) / self.stage_file(n, key), data)

    def status(self, item_id: str) -> dict | None:
        return self.read(Path("items") / check_id(item_id) / "status.json", dict, runfiles.check_status)

    def set_status(self, item_id: str, status: dict | None) -> None:
        path = self.item_dir(item_id) / "status.json"
        if status is None:
            path.unlink(missing_ok=True)
        else:
            self.write_json(path.relative_to(self.root), status)

    def quarantine(self, error: RunFileError) -> Path:
        """Move an unreadable item file into its item's ``quarantine/`` folder (kept for a person to look at)."""
        target = error.path.parent / "quarantine" / error.path.name
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(error.path, target)
        return target

    def stages_done(self, item_id: str) -> int:
        return sum((self.item_dir(item_id) / self.stage_file(n, key)).is_file() for n, (key, _) in
                   enumerate(STAGES, 1))

    def samples(self, item_id: str) -> list[dict]:
        last = len(STAGES)
        out = self.read_stage(item_id, last, STAGES[-1][0])
        return out["samples"] if out else []

    def remove_partial_files(self) -> int:
        """Delete temporary files killed writers left behind (``.<name>.*.part``); a live writer's (another
        shard of this run, on this host) are kept. Returns how many were removed."""
        folders = {path.parent for path in self.root.glob("**/.*.part")}
        return sum(len(sweep_stale(folder)) for folder in sorted(folders))

    # manifest ---------------------------------------------------------------------------------------
    def item_state(self, item_id: str) -> dict:
        """The item's status; an unreadable status file gives ``failed`` at stage ``read`` naming the file."""
        try:
            status = self.status(item_id) or {}
        except RunFileError as exc:
            return {"status": FAILED, "stage": "read", "reason": str(exc), "quarantined": True}
        return status

    def manifest(self) -> dict:
        """Every input with its status; counts; samples (rebuilt from the item files: always current)."""
        inputs = self.inputs() or []
        items, counts, samples = {}, {DONE: 0, FAILED: 0, PENDING: 0}, 0
        for item in inputs:
            status = self.item_state(item.id)
            state = status.get("status", PENDING)
            entry = {"status": state, "source": item.source}
            if state == FAILED:
                entry.update(stage=status.get("stage"), reason=status.get("reason"))
            elif state == DONE:
                entry["samples"] = status.get("samples", 0)
                samples += entry["samples"]
                if status.get("note"):
                    entry["note"] = status["note"]
            else:
                entry["stages_done"] = self.stages_done(item.id)
            counts[state] += 1
            items[item.id] = entry
        return {"total": len(inputs), "counts": counts, "samples": samples, "items": items}

    def write_manifest(self) -> dict:
        manifest = self.manifest()
        self.write_json("manifest.json", manifest)
        return manifest
