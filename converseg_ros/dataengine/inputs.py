"""The images a run works on: image folders, robot logs, DROID raw episodes, RLDS/TFDS datasets.

Every input gets an id built from its source's full identity (``ids``), the same on every machine and every
resume. ``--shard i/n`` assigns whole units (an episode, a log, an image file) by a hash of the unit's key
before anything is decoded, so machines split a dataset without coordination and each decodes only its own
episodes. Two inputs with one id stop the run with both sources named; frames whose pixels (files: bytes)
repeat an earlier input are left out and counted (``InputReport.duplicates``). Frames from logs and videos
are written once as PNG under ``RUN_DIR/frames/`` (atomically); image files are read in place.
"""

from __future__ import annotations

import re
import zlib
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from converseg_ros.data.robot_logs import RobotLogError
from converseg_ros.data.tfrecord import TFRecordError
from converseg_ros.dataengine import sources
from converseg_ros.dataengine.ids import check_id
from converseg_ros.dataengine.sources import Candidate, InputError, Sampling, Unit
from converseg_ros.errors import ConverSegError
from converseg_ros.modeling.atomic import atomic_write_bytes

DROID_CAMERAS = tuple(sources.DROID_RLDS_CAMERAS)
__all__ = ["InputError", "InputImage", "InputReport", "InputSpec", "Sampling", "Shard", "collect_inputs"]


@dataclass(frozen=True)
class InputImage:
    """One image to process: id, file (absolute, or relative to the run folder) and where it came from."""

    id: str
    path: str
    source: dict = field(default_factory=dict)

    @property
    def instructions(self) -> list[str]:
        value = self.source.get("instructions") or []
        return [str(v) for v in value if str(v).strip()] if isinstance(value, list) else []


@dataclass(frozen=True)
class Shard:
    index: int = 0
    count: int = 1

    @classmethod
    def parse(cls, text: str | None) -> Shard:
        if not text:
            return cls()
        match = re.fullmatch(r"(\d+)/(\d+)", text.strip())
        if not match or not 0 <= int(match[1]) < int(match[2]):
            raise InputError(f"--shard must be i/n with 0 <= i < n, got {text!r}")
        return cls(int(match[1]), int(match[2]))

    def owns(self, key: str) -> bool:
        return zlib.crc32(key.encode("utf-8", "surrogatepass")) % self.count == self.index

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


@dataclass
class InputSpec:
    """What ``converseg-data run`` was asked to read."""

    images: list[str] = field(default_factory=list)
    bags: list[str] = field(default_factory=list)
    topics: list[str] = field(default_factory=list)
    droid: list[str] = field(default_factory=list)
    rlds: list[str] = field(default_factory=list)
    cameras: list[str] = field(default_factory=lambda: list(DROID_CAMERAS))
    sampling: Sampling = field(default_factory=Sampling)
    max_images: int | None = None
    shard: str | None = None
    instruction_topic: str | None = None
    fps: float = 15.0  # steps per second of RLDS episodes (DROID: 15 Hz)


@dataclass
class InputReport:
    """What reading found besides the inputs: duplicates left out, units read and owned."""

    units: int = 0
    owned: int = 0
    duplicates: list[dict] = field(default_factory=list)

    def to_json(self) -> dict:
        return {"units": self.units, "owned_units": self.owned, "duplicates": len(self.duplicates),
                "duplicate_examples": self.duplicates[:20]}


def _units(spec: InputSpec) -> list[Unit]:
    if spec.bags and not spec.topics:
        raise InputError("--bag needs --topic (the camera topic to read)")
    if spec.droid:
        unknown = [c for c in spec.cameras if c not in DROID_CAMERAS]
        if unknown:
            raise InputError(f"--cameras: unknown {unknown} for --droid; use {list(DROID_CAMERAS)}")
    units: list[Unit] = []
    for folder in spec.images:
        units += sources.image_units(folder)
    for bag in spec.bags:
        units += sources.bag_units(bag, spec.topics, spec.sampling, spec.instruction_topic)
    for root in spec.droid:
        if sources.rlds.find_rlds(root) and not sources.droid_raw.droid_episodes(root):
            units += sources.rlds_units(root, spec.cameras, spec.sampling, spec.fps)  # the RLDS release
        else:
            units += sources.droid_units(root, spec.cameras, spec.sampling)
    for root in spec.rlds:
        units += sources.rlds_units(root, spec.cameras, spec.sampling, spec.fps)
    if not units and not (spec.images or spec.bags or spec.droid or spec.rlds):
        raise InputError("no input: give --images DIR, --bag PATH --topic TOPIC, --droid DIR or --rlds DIR")
    return units


def _write_frame(run_dir: Path, item_id: str, rgb: np.ndarray) -> str:
    rel = f"frames/{check_id(item_id)}.png"
    if not (run_dir / rel).is_file():
        bgr = cv2.cvtColor(rgb if rgb.ndim == 3 else np.repeat(rgb[..., None], 3, axis=2), cv2.COLOR_RGB2BGR)
        ok, buf = cv2.imencode(".png", bgr)
        if not ok:
            raise InputError(f"cannot encode frame {item_id}")
        atomic_write_bytes(run_dir / rel, buf.tobytes())
    return rel


def collect_inputs(spec: InputSpec, run_dir: Path | None, progress: bool = False
                   ) -> tuple[list[InputImage], InputReport]:
    """This shard's inputs (at most ``max_images``) and the report; frames are written under ``run_dir``
    (``None``: a dry run, nothing written)."""
    shard, report = Shard.parse(spec.shard), InputReport()
    units = _units(spec)
    report.units = len(units)
    owned = [u for u in units if shard.owns(u.key)]
    report.owned = len(owned)
    out: list[InputImage] = []
    seen: dict[str, dict] = {}
    digests: dict[str, str] = {}
    bar = tqdm(total=len(owned), unit="unit", desc="reading inputs", disable=not progress, dynamic_ncols=True)
    try:
        for unit in owned:
            bar.set_postfix_str(unit.label[-40:])
            for cand in _frames(unit):
                if spec.max_images is not None and len(out) >= spec.max_images:
                    return out, report
                _check_unique(cand, seen)
                digest = cand.digest()
                if digest in digests:
                    report.duplicates.append({"id": cand.id, "same_as": digests[digest]})
                    continue
                digests[digest] = cand.id
                path = cand.path if cand.rgb is None else (
                    _write_frame(run_dir, cand.id, cand.rgb) if run_dir is not None else "")
                out.append(InputImage(cand.id, path, cand.source))
            bar.update(1)
    finally:
        bar.close()
    return out, report


def _frames(unit: Unit):
    try:
        yield from unit.frames()
    except (RobotLogError, TFRecordError) as exc:
        raise InputError(str(exc)) from exc
    except ConverSegError:
        raise
    except (OSError, ValueError, KeyError) as exc:
        raise InputError(f"{unit.label}: cannot read ({type(exc).__name__}: {exc})") from exc


def _check_unique(cand: Candidate, seen: dict[str, dict]) -> None:
    if cand.id in seen:
        raise InputError(f"two inputs got the id {cand.id}: {seen[cand.id]} and {cand.source}; "
                         "please report this (ids come from each source's full identity)")
    seen[cand.id] = cand.source


def to_json(items: list[InputImage]) -> list[dict]:
    return [asdict(i) for i in items]


def from_json(rows: list[dict]) -> list[InputImage]:
    return [InputImage(check_id(r["id"]), str(r["path"]), r.get("source") or {}) for r in rows]
