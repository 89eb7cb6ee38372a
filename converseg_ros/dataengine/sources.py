"""Where a run's images come from. Each source lists *units* — an image file, a robot log, an episode — with
the key that decides which shard owns the unit; a unit's frames are decoded only when that shard asks for
them, so ``--shard`` / ``--ray`` workers decode only their own episodes.

Sampling (logs, videos, episodes): a frame is kept when at least ``every_s`` seconds passed since the last
kept frame of its camera and, with ``scene_threshold`` set, when it differs from that frame by at least that
much (mean absolute difference of 32x32 grey thumbnails, 0..1). Without a scene threshold only the kept
frames are decoded.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from converseg_ros.data import droid_raw, rlds
from converseg_ros.data.readers import IMAGE_SUFFIXES
from converseg_ros.data.robot_logs import iter_messages
from converseg_ros.dataengine.ids import make_id
from converseg_ros.errors import ConverSegError
from converseg_ros.imaging import decode_image

DROID_RLDS_CAMERAS = {"ext1": "exterior_image_1_left", "ext2": "exterior_image_2_left", "wrist": "wrist_image_left"}


class InputError(ConverSegError, ValueError):
    """Inputs that cannot be read or are specified wrongly."""


@dataclass(frozen=True)
class Sampling:
    every_s: float = 1.0
    scene_threshold: float | None = None


@dataclass
class Candidate:
    """A frame or file a unit offers: its id and source, and its pixels (frames) or file (images)."""

    id: str
    source: dict
    rgb: np.ndarray | None = None
    path: str | None = None

    def digest(self) -> str:
        """Content hash (decoded pixels of a frame, the bytes of a file) for duplicate detection."""
        h = hashlib.sha256()
        if self.rgb is not None:
            h.update(str(self.rgb.shape).encode())
            h.update(np.ascontiguousarray(self.rgb).tobytes())
        else:
            h.update(Path(self.path).read_bytes())
        return h.hexdigest()


@dataclass
class Unit:
    key: str  # what a shard claims (an episode, a log, a file)
    label: str
    frames: Callable[[], Iterator[Candidate]] = field(repr=False)


def thumbnail(rgb: np.ndarray) -> np.ndarray:
    grey = rgb if rgb.ndim == 2 else cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    return cv2.resize(grey, (32, 32), interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0


class FrameSampler:
    """Keeps frames by time and (optionally) scene change, per camera; pixels are asked for only when needed."""

    def __init__(self, sampling: Sampling):
        self.sampling = sampling
        self._last: dict[str, tuple[int, np.ndarray | None]] = {}

    def keep(self, camera: str, stamp_ns: int, thumb: Callable[[], np.ndarray]) -> bool:
        last, scene = self._last.get(camera), self.sampling.scene_threshold
        if last is not None:
            if self.sampling.every_s > 0 and (stamp_ns - last[0]) / 1e9 < self.sampling.every_s:
                return False
            if scene is not None and float(np.abs(thumb() - last[1]).mean()) < scene:
                return False
        self._last[camera] = (stamp_ns, thumb() if scene is not None else None)
        return True


# --- image folders -------------------------------------------------------------------------------------
def image_units(folder: str | Path) -> list[Unit]:
    root = Path(folder)
    if not root.is_dir():
        raise InputError(f"--images: {root} is not a folder")
    root = root.resolve()
    units = []
    for path in sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES):
        rel = path.relative_to(root).as_posix()
        item_id = make_id("img", [str(Path(rel).with_suffix(""))], f"{root}/{rel}")
        source = {"kind": "images", "root": str(root), "file": rel}
        units.append(Unit(f"{root}/{rel}", rel, lambda i=item_id, s=source, p=path: iter(
            [Candidate(i, s, path=str(p))])))
    return units


# --- robot logs ----------------------------------------------------------------------------------------
def bag_units(bag: str | Path, topics: list[str], sampling: Sampling, instruction_topic: str | None) -> list[Unit]:
    """One unit per log (a log is one episode)."""
    bag = Path(bag).resolve()

    def frames() -> Iterator[Candidate]:
        sampler, instruction = FrameSampler(sampling), None
        for msg in iter_messages(bag, topics + ([instruction_topic] if instruction_topic else [])):
            if msg.topic == instruction_topic:
                instruction = " ".join(str(msg.value).split()) or None
                continue
            rgb = msg.value
            if not isinstance(rgb, np.ndarray) or not sampler.keep(msg.topic, msg.stamp_ns, lambda r=rgb: thumbnail(r)):
                continue
            item_id = make_id("bag", [bag.stem, msg.topic, str(msg.stamp_ns)], f"{bag}|{msg.topic}|{msg.stamp_ns}")
            source = {"kind": "bag", "log": str(bag), "topic": msg.topic, "stamp_ns": msg.stamp_ns,
                      "episode_key": str(bag), "instructions": [instruction] if instruction else []}
            yield Candidate(item_id, source, rgb=rgb)

    return [Unit(str(bag), bag.name, frames)]


# --- DROID raw -----------------------------------------------------------------------------------------
def droid_units(root: str | Path, cameras: list[str], sampling: Sampling) -> list[Unit]:
    root_path = Path(root)
    folders = droid_raw.droid_episodes(root_path)
    if not folders:
        raise InputError(f"--droid: no episode (metadata_*.json) below {root}")
    units = []
    for folder in folders:
        episode = droid_raw.read_episode(folder, root_path.resolve())
        units.append(Unit(episode.key, episode.relative, lambda e=episode: _droid_frames(e, cameras, sampling)))
    return units


def _droid_frames(episode: droid_raw.DroidEpisode, cameras: list[str], sampling: Sampling) -> Iterator[Candidate]:
    base = episode.source()
    readable = [episode.lab, episode.uuid or episode.folder.name]
    for camera in cameras:
        if camera not in episode.videos:
            continue
        frame_of_step, stamps = droid_raw.step_frames(episode, camera)
        sampler = FrameSampler(sampling)
        if sampling.scene_threshold is None:
            kept = [s for s in range(len(stamps)) if sampler.keep(camera, int(stamps[s]), lambda: None)]
        else:
            thumbs = {k: thumbnail(rgb) for k, rgb in droid_raw.decode_frames(episode, camera, list(frame_of_step))}
            kept = [s for s in range(len(stamps)) if int(frame_of_step[s]) in thumbs
                    and sampler.keep(camera, int(stamps[s]), lambda k=int(frame_of_step[s]), t=thumbs: t[k])]
        pixels = dict(droid_raw.decode_frames(episode, camera, [int(frame_of_step[s]) for s in kept]))
        for step in kept:
            frame = int(frame_of_step[step])
            if frame not in pixels:
                continue
            item_id = make_id("droid", [*readable, camera, f"{step:06d}"], f"{episode.key}|{camera}|{step}")
            source = {**base, "camera": camera, "serial": episode.serials[camera], "step": step, "frame": frame,
                      "stamp_ns": int(stamps[step])}
            yield Candidate(item_id, source, rgb=pixels[frame])


# --- RLDS / TFDS ---------------------------------------------------------------------------------------
def rlds_cameras(layout: rlds.RLDSLayout, cameras: list[str]) -> list[str]:
    """The dataset's image features asked for: DROID short names (ext1, ext2, wrist) or feature names; when
    none matches the default list, every image feature."""
    wanted = [DROID_RLDS_CAMERAS.get(c, c) for c in cameras]
    found = [c for c in wanted if c in layout.images]
    return found or list(layout.images)


def rlds_units(root: str | Path, cameras: list[str], sampling: Sampling, fps: float) -> list[Unit]:
    folders = rlds.find_rlds(root)
    if not folders:
        raise InputError(f"--rlds: no TFDS dataset (features.json next to *.tfrecord-* shards) below {root}")
    units = []
    for folder in folders:
        layout = rlds.load_layout(folder.resolve())
        chosen = rlds_cameras(layout, cameras)
        for shard, index, offset in rlds.episode_refs(layout):
            key = rlds.episode_key(layout, shard, index)
            units.append(Unit(key, key, lambda a=(layout, shard, index, offset), c=chosen: _rlds_frames(
                rlds.read_episode(*a), c, sampling, fps)))
    return units


def _rlds_frames(episode: rlds.RLDSEpisode, cameras: list[str], sampling: Sampling, fps: float
                 ) -> Iterator[Candidate]:
    layout = episode.layout
    base = {"kind": "rlds", "dataset": layout.dataset, "folder": str(layout.folder), "shard": episode.shard.name,
            "episode_index": episode.index, "episode_key": episode.key, "metadata": episode.metadata()}
    for camera in cameras:
        sampler, cache = FrameSampler(sampling), {}

        def pixels(step: int, camera=camera, cache=cache) -> np.ndarray:
            if step not in cache:
                cache.clear()
                cache[step] = decode_image(episode.image(camera, step))
            return cache[step]

        for step in range(episode.steps):
            stamp = int(step * 1e9 / fps)
            if not sampler.keep(camera, stamp, lambda s=step: thumbnail(pixels(s))):
                continue
            item_id = make_id("rlds", [layout.dataset, episode.shard.name.rsplit("-", 3)[-3], str(episode.index),
                                       camera, f"{step:06d}"], f"{layout.folder}|{episode.key}|{camera}|{step}")
            source = {**base, "camera": camera, "step": step, "stamp_ns": stamp,
                      "instructions": episode.instructions(step)}
            yield Candidate(item_id, source, rgb=pixels(step))
