"""Records as plain folders: ``<dir>/<session>/<n>/`` with ``image.png`` (the frame as the model saw it, RGB)
and ``record.json`` (the summary: queries, answers, reasons, model, the instruction), each folder written
atomically; flags on a frame recorded before go to ``<session>/notes.jsonl``. Plain Python."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from converseg_ros.modeling.atomic import atomic_dir, named_no_space, sweep_stale
from converseg_ros.serving.recording.budget import Unit
from converseg_ros.serving.recording.settings import Record


class FolderSession:
    """One session's folder ``root/name`` (created with its first record)."""

    open_bytes = 0  # every record is complete once written

    def __init__(self, root: Path, name: str) -> None:
        self.path = Path(root) / name
        self.name = name

    def write(self, record: Record, now: float) -> None:
        with atomic_dir(self.path / f"{record.meta['seq']:06d}") as tmp:
            bgr = np.ascontiguousarray(record.rgb[:, :, ::-1])
            ok, png = cv2.imencode(".png", bgr)
            if not ok:
                raise OSError("PNG encoding failed")
            (tmp / "image.png").write_bytes(png.tobytes())
            summary = {**record.meta, "instruction": record.instruction, "frame_id": record.frame_id}
            (tmp / "record.json").write_text(json.dumps(summary, indent=1))

    def note(self, meta: dict[str, Any], recorded_ns: int, now: float) -> None:
        with named_no_space(self.path):
            self.path.mkdir(parents=True, exist_ok=True)
            with open(self.path / "notes.jsonl", "a", encoding="utf-8") as fh:
                fh.write(json.dumps({**meta, "recorded_ns": recorded_ns}) + "\n")

    def tick(self, now: float) -> None:
        pass

    def close_chunk(self) -> None:
        pass

    def close(self) -> None:
        pass


def _sessions(root: Path) -> list[Path]:
    return sorted(p for p in Path(root).iterdir() if p.is_dir() and not p.name.startswith("."))


def units(root: Path) -> list[Unit]:
    """Every record folder under ``root``, oldest first."""
    found = []
    for session in _sessions(root):
        for record in sorted(p for p in session.iterdir() if p.is_dir() and p.name.isdigit()):
            size = sum(f.stat().st_size for f in record.iterdir() if f.is_file())
            found.append(Unit((session.name, int(record.name)), record, size))
    return found


def drop(unit: Unit) -> None:
    """Delete a record folder (and its session once no record is left)."""
    shutil.rmtree(unit.path, ignore_errors=True)
    session = unit.path.parent
    if not any(p.is_dir() and p.name.isdigit() for p in session.iterdir()):
        shutil.rmtree(session, ignore_errors=True)


def sweep(root: Path) -> None:
    """Half-written record folders of writers that are gone."""
    for session in _sessions(root):
        sweep_stale(session)
