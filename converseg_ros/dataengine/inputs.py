"""The images a run works on: an image folder, frames sampled from a robot log, or DROID-style episodes.

Every input gets a stable id (the same on every machine and every resume), so ``--shard i/n`` (by a hash
of the id) splits a log between machines without coordination. Frames from logs and videos are written as
PNG under ``RUN_DIR/frames/`` (atomically); image-folder inputs are read in place.

Sampling (logs and videos): a frame is kept when at least ``every_s`` seconds passed since the last kept
frame of its camera and, with ``scene_threshold`` set, when it differs from that frame by at least that
much (mean absolute difference of 32x32 grey thumbnails, 0..1).

DROID-style episodes (the raw DROID layout): ``<episode>/metadata_*.json`` naming the camera serials
(``wrist_cam_serial``, ``ext1_cam_serial``, ``ext2_cam_serial``) and ``<episode>/recordings/MP4/<serial>.mp4``,
one video per camera with synchronised steps; each sampled step gives one image per camera.
"""

from __future__ import annotations

import json
import re
import zlib
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np

from converseg_ros.data.readers import IMAGE_SUFFIXES
from converseg_ros.data.robot_logs import RobotLogError, iter_messages
from converseg_ros.errors import ConverSegError
from converseg_ros.modeling.atomic import atomic_write_bytes

DROID_CAMERAS = {"ext1": "ext1_cam_serial", "ext2": "ext2_cam_serial", "wrist": "wrist_cam_serial"}


class InputError(ConverSegError, ValueError):
    """Inputs that cannot be read or are specified wrongly."""


@dataclass(frozen=True)
class InputImage:
    """One image to process: id, file (absolute, or relative to the run folder) and where it came from."""

    id: str
    path: str
    source: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Sampling:
    every_s: float = 1.0
    scene_threshold: float | None = None


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

    def owns(self, item_id: str) -> bool:
        return zlib.crc32(item_id.encode()) % self.count == self.index

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "_", text).strip("_") or "x"


class FrameSampler:
    """Keeps frames by time and (optionally) scene change, per camera."""

    def __init__(self, sampling: Sampling):
        self.sampling = sampling
        self._last: dict[str, tuple[int, np.ndarray]] = {}

    @staticmethod
    def thumbnail(rgb: np.ndarray) -> np.ndarray:
        grey = rgb if rgb.ndim == 2 else cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
        return cv2.resize(grey, (32, 32), interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0

    def keep(self, camera: str, stamp_ns: int, rgb: np.ndarray) -> bool:
        last = self._last.get(camera)
        thumb = None
        if last is not None:
            if (stamp_ns - last[0]) / 1e9 < self.sampling.every_s:
                return False
            if self.sampling.scene_threshold is not None:
                thumb = self.thumbnail(rgb)
                if float(np.abs(thumb - last[1]).mean()) < self.sampling.scene_threshold:
                    return False
        self._last[camera] = (stamp_ns, thumb if thumb is not None else self.thumbnail(rgb))
        return True


def _write_frame(run_dir: Path, item_id: str, rgb: np.ndarray) -> str:
    rel = f"frames/{item_id}.png"
    if not (run_dir / rel).is_file():
        bgr = cv2.cvtColor(rgb if rgb.ndim == 3 else np.repeat(rgb[..., None], 3, axis=2), cv2.COLOR_RGB2BGR)
        ok, buf = cv2.imencode(".png", bgr)
        if not ok:
            raise InputError(f"cannot encode frame {item_id}")
        atomic_write_bytes(run_dir / rel, buf.tobytes())
    return rel


def images_from_dir(folder: Path) -> Iterator[InputImage]:
    """Every image file below ``folder`` (recursive, sorted); ids from the relative path."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"--images: {folder} is not a folder")
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES):
        rel = path.relative_to(folder)
        yield InputImage(f"img_{slug(str(rel.with_suffix('')))}", str(path.resolve()), {"kind": "images",
                                                                                        "file": str(rel)})


def frames_from_bag(bag: Path, topics: list[str], sampling: Sampling) -> Iterator[tuple[InputImage, np.ndarray]]:
    """Sampled image messages of ``topics`` (rosbag2 folder, .bag, .mcap) with their pixels."""
    sampler = FrameSampler(sampling)
    for msg in iter_messages(bag, topics):
        if not isinstance(msg.value, np.ndarray) or not sampler.keep(msg.topic, msg.stamp_ns, msg.value):
            continue
        item_id = f"bag_{slug(Path(bag).stem)}_{slug(msg.topic)}_{msg.stamp_ns}"
        source = {"kind": "bag", "log": str(bag), "topic": msg.topic, "stamp_ns": msg.stamp_ns}
        yield InputImage(item_id, "", source), msg.value


def droid_episodes(root: Path) -> list[Path]:
    """Episode folders at or below ``root`` (those holding a ``metadata_*.json``)."""
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"--droid: {root} is not a folder")
    return sorted({p.parent for p in root.rglob("metadata_*.json")})


def frames_from_droid(root: Path, cameras: list[str], sampling: Sampling) -> Iterator[tuple[InputImage, np.ndarray]]:
    """Sampled steps of every episode, one image per camera and step."""
    episodes = droid_episodes(root)
    if not episodes:
        raise InputError(f"--droid: no episode (metadata_*.json) below {root}")
    for episode in episodes:
        meta_file = next(episode.glob("metadata_*.json"))
        try:
            meta = json.loads(meta_file.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise InputError(f"{meta_file}: unreadable episode metadata ({exc})") from exc
        for camera in cameras:
            serial = meta.get(DROID_CAMERAS[camera])
            video = episode / "recordings" / "MP4" / f"{serial}.mp4"
            if not serial or not video.is_file():
                continue
            yield from _video_frames(episode, camera, video, sampling)


def _video_frames(episode: Path, camera: str, video: Path, sampling: Sampling):
    cap = cv2.VideoCapture(str(video))
    if not cap.isOpened():
        raise InputError(f"{video}: cannot open the video")
    fps = cap.get(cv2.CAP_PROP_FPS) or 15.0  # DROID records at 15 Hz
    sampler, step = FrameSampler(sampling), 0
    try:
        while True:
            ok, bgr = cap.read()
            if not ok:
                break
            rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
            stamp_ns = int(step * 1e9 / fps)
            if sampler.keep(camera, stamp_ns, rgb):
                item_id = f"droid_{slug(episode.name)}_{camera}_{step:06d}"
                source = {"kind": "droid", "episode": str(episode), "camera": camera, "step": step}
                yield InputImage(item_id, "", source), rgb
            step += 1
    finally:
        cap.release()


@dataclass
class InputSpec:
    """What ``converseg-data run`` was asked to read."""

    images: list[str] = field(default_factory=list)
    bags: list[str] = field(default_factory=list)
    topics: list[str] = field(default_factory=list)
    droid: list[str] = field(default_factory=list)
    cameras: list[str] = field(default_factory=lambda: list(DROID_CAMERAS))
    sampling: Sampling = field(default_factory=Sampling)
    max_images: int | None = None
    shard: str | None = None


def collect_inputs(spec: InputSpec, run_dir: Path) -> list[InputImage]:
    """Enumerate (and for logs/videos write) this shard's inputs, at most ``max_images``."""
    shard = Shard.parse(spec.shard)
    if spec.bags and not spec.topics:
        raise InputError("--bag needs --topic (the camera topic to read)")
    unknown = [c for c in spec.cameras if c not in DROID_CAMERAS]
    if unknown:
        raise InputError(f"--cameras: unknown {unknown}; use {sorted(DROID_CAMERAS)}")
    out: list[InputImage] = []
    seen: set[str] = set()

    def full() -> bool:
        return spec.max_images is not None and len(out) >= spec.max_images

    def take(item: InputImage) -> bool:
        if item.id in seen or not shard.owns(item.id):
            return False
        seen.add(item.id)
        return True

    for folder in spec.images:
        for item in images_from_dir(Path(folder)):
            if full():
                return out
            if take(item):
                out.append(item)
    streams = [frames_from_bag(Path(b), spec.topics, spec.sampling) for b in spec.bags]
    streams += [frames_from_droid(Path(d), spec.cameras, spec.sampling) for d in spec.droid]
    for stream in streams:
        try:
            for item, rgb in stream:
                if full():
                    return out
                if take(item):
                    out.append(InputImage(item.id, _write_frame(run_dir, item.id, rgb), item.source))
        except RobotLogError as exc:
            raise InputError(str(exc)) from exc
    if not out and not (spec.images or spec.bags or spec.droid):
        raise InputError("no input: give --images DIR, --bag PATH --topic TOPIC or --droid DIR")
    return out


def to_json(items: list[InputImage]) -> list[dict]:
    return [asdict(i) for i in items]


def from_json(rows: list[dict]) -> list[InputImage]:
    return [InputImage(r["id"], r["path"], r.get("source", {})) for r in rows]
