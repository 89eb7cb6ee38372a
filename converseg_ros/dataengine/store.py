"""The run folder: every file written atomically, so a ``kill -9`` leaves only finished files behind.

RUN_DIR/
  run.json                       the run's settings (no keys)
  inputs.json                    every input of this run (id, file, source), written once
  frames/<id>.png                frames sampled from logs / videos
  items/<id>/stage<N>_<key>.json each finished stage's output (the marker that the stage is done)
  items/<id>/masks/, samples/    mask PNGs (0/255) those outputs refer to (written first)
  items/<id>/status.json         done, or failed with the stage and reason
  manifest.json                  counts and per-input status (rebuilt from the items at any time)
  summary.json                   VLM calls, retries, tokens and cost per session and in total
  review.json                    human Accept/Reject decisions from the review page
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from converseg_ros.dataengine.inputs import InputImage, from_json
from converseg_ros.dataengine.stages import STAGES
from converseg_ros.modeling.atomic import atomic_write_bytes

log = logging.getLogger(__name__)

DONE, FAILED, PENDING = "done", "failed", "pending"


class RunStore:
    """Reads and writes one run folder."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    # generic JSON -----------------------------------------------------------------------------------
    def write_json(self, rel: str | Path, data) -> None:
        atomic_write_bytes(self.root / rel, (json.dumps(data, indent=1, sort_keys=False) + "\n").encode())

    def read_json(self, rel: str | Path):
        path = self.root / rel
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, json.JSONDecodeError) as exc:  # atomic writes make this unlikely; treat as absent
            log.warning("%s unreadable (%s); treated as missing", path, exc)
            return None

    # inputs -----------------------------------------------------------------------------------------
    def inputs(self) -> list[InputImage] | None:
        rows = self.read_json("inputs.json")
        return None if rows is None else from_json(rows)

    def image_path(self, item: InputImage) -> Path:
        path = Path(item.path)
        return path if path.is_absolute() else self.root / path

    # items ------------------------------------------------------------------------------------------
    def item_dir(self, item_id: str) -> Path:
        return self.root / "items" / item_id

    @staticmethod
    def stage_file(n: int, key: str) -> str:
        return f"stage{n}_{key}.json"

    def read_stage(self, item_id: str, n: int, key: str) -> dict | None:
        return self.read_json(Path("items") / item_id / self.stage_file(n, key))

    def write_stage(self, item_id: str, n: int, key: str, data: dict) -> None:
        self.write_json(Path("items") / item_id / self.stage_file(n, key), data)

    def status(self, item_id: str) -> dict | None:
        return self.read_json(Path("items") / item_id / "status.json")

    def set_status(self, item_id: str, status: dict | None) -> None:
        path = self.item_dir(item_id) / "status.json"
        if status is None:
            path.unlink(missing_ok=True)
        else:
            self.write_json(path.relative_to(self.root), status)

    def stages_done(self, item_id: str) -> int:
        return sum((self.item_dir(item_id) / self.stage_file(n, key)).is_file() for n, (key, _) in
                   enumerate(STAGES, 1))

    def samples(self, item_id: str) -> list[dict]:
        last = len(STAGES)
        out = self.read_stage(item_id, last, STAGES[-1][0])
        return out["samples"] if out else []

    def remove_partial_files(self) -> int:
        """Delete temporary files a killed run left behind (``.<name>.*.part``); returns how many."""
        count = 0
        for folder in (self.root / "items", self.root / "frames", self.root):
            pattern = "**/.*.part" if folder != self.root else ".*.part"
            for path in folder.glob(pattern) if folder.is_dir() else []:
                path.unlink(missing_ok=True)
                count += 1
        return count

    # manifest ---------------------------------------------------------------------------------------
    def manifest(self) -> dict:
        """Every input with its status; counts; samples (rebuilt from the item files: always current)."""
        inputs = self.inputs() or []
        items, counts, samples = {}, {DONE: 0, FAILED: 0, PENDING: 0}, 0
        for item in inputs:
            status = self.status(item.id) or {}
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
