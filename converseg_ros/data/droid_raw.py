"""DROID raw episodes: metadata, the collector's task words and camera frames aligned by ``trajectory.h5``.

Layout (the raw release): ``<lab>/success|failure/<date>/<timestamp>/`` holding ``metadata_<uuid>.json``
(``uuid``, ``lab``, ``current_task``, ``success``, ``scene_id``, ``building``, the camera serials
``ext1_cam_serial`` / ``ext2_cam_serial`` / ``wrist_cam_serial``), ``trajectory.h5`` (the same task, success
and scene id as attributes; per step ``observation/timestamp/cameras/<serial>_estimated_capture`` and
``<serial>_frame_received`` in ms) and ``recordings/MP4/<serial>.mp4`` — the left view — next to
``<serial>-stereo.mp4`` (left and right side by side). Only left views are read: ``<serial>.mp4``, or the
left half of the stereo video when that is all there is.

Alignment: with ``trajectory.h5`` each step's image is the video frame whose time is nearest the step's
camera timestamp (``_estimated_capture``, else ``_frame_received``); a frame's time comes from
``<serial>_timestamps.json`` next to the video (DROID's per-frame receive times) when present, else from the
video's frame rate counted from the camera's first step. Without ``trajectory.h5`` step = frame index at the
video's frame rate (said in each input's source as ``aligned``).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from converseg_ros.errors import ConverSegError

CAMERA_KEYS = {"ext1": "ext1_cam_serial", "ext2": "ext2_cam_serial", "wrist": "wrist_cam_serial"}
DEFAULT_FPS = 15.0  # DROID records at 15 Hz


class DroidError(ConverSegError, ValueError):
    """A DROID episode folder that cannot be read."""


@dataclass
class DroidEpisode:
    """One raw episode's identity, task words and per-camera videos and timestamps."""

    folder: Path
    root: Path
    meta: dict
    videos: dict[str, tuple[Path, bool]] = field(default_factory=dict)  # camera -> (file, is stereo)
    serials: dict[str, str] = field(default_factory=dict)
    step_ms: dict[str, np.ndarray] = field(default_factory=dict)  # camera -> capture ms per step (h5)

    @property
    def lab(self) -> str:
        return str(self.meta.get("lab") or self._path_parts()[0])

    @property
    def uuid(self) -> str | None:
        value = self.meta.get("uuid")
        return str(value) if value else None

    @property
    def task(self) -> str:
        return " ".join(str(self.meta.get("current_task") or "").split())

    @property
    def success(self) -> bool | None:
        if "success" in self.meta:
            return bool(self.meta["success"])
        outcome = self._path_parts()[1] if len(self._path_parts()) > 1 else ""
        return {"success": True, "failure": False}.get(outcome)

    @property
    def scene_id(self) -> str | None:
        value = self.meta.get("scene_id")
        return None if value in (None, "", -1, "-1") else str(value)

    @property
    def relative(self) -> str:
        return self.folder.relative_to(self.root).as_posix() if self.folder != self.root else self.folder.name

    @property
    def key(self) -> str:
        """The episode's identity across labs and download folders: lab + uuid, else the folder path."""
        return f"{self.lab}/{self.uuid}" if self.uuid else f"{self.root.resolve()}/{self.relative}"

    @property
    def aligned(self) -> str:
        return "trajectory.h5 timestamps" if self.step_ms else "mp4 index"

    def _path_parts(self) -> list[str]:
        return self.relative.split("/")

    def source(self) -> dict:
        return {"kind": "droid", "root": str(self.root), "episode": self.relative, "lab": self.lab,
                "uuid": self.uuid, "success": self.success, "scene_id": self.scene_id,
                "building": self.meta.get("building"), "instructions": [self.task] if self.task else [],
                "episode_key": self.key, "aligned": self.aligned}


def droid_episodes(root: str | Path) -> list[Path]:
    """Episode folders at or below ``root`` (those holding a ``metadata_*.json``)."""
    root = Path(root)
    if not root.is_dir():
        raise DroidError(f"--droid: {root} is not a folder")
    return sorted({p.parent for p in root.rglob("metadata_*.json")})


def _h5_attrs_and_times(path: Path, serials: dict[str, str]) -> tuple[dict, dict[str, np.ndarray]]:
    import h5py

    try:
        with h5py.File(path, "r") as h5:
            attrs = {k: (v.decode() if isinstance(v, bytes) else v.item() if hasattr(v, "item") else v)
                     for k, v in h5.attrs.items() if k in ("current_task", "success", "scene_id", "building")}
            times = {}
            group = h5.get("observation/timestamp/cameras")
            for camera, serial in serials.items():
                for suffix in ("_estimated_capture", "_frame_received"):
                    if group is not None and f"{serial}{suffix}" in group:
                        times[camera] = np.asarray(group[f"{serial}{suffix}"][()], dtype=np.float64)
                        break
    except (OSError, KeyError, ValueError) as exc:
        raise DroidError(f"{path}: unreadable trajectory file ({exc})") from exc
    return attrs, times


def read_episode(folder: Path, root: Path) -> DroidEpisode:
    """Metadata (+ ``trajectory.h5`` attributes and timestamps) and the left-view videos of one episode."""
    meta_file = next(iter(sorted(folder.glob("metadata_*.json"))))
    try:
        meta = json.loads(meta_file.read_text(encoding="utf-8"))
        if not isinstance(meta, dict):
            raise ValueError("not a JSON object")
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise DroidError(f"{meta_file}: unreadable episode metadata ({exc})") from exc
    episode = DroidEpisode(folder, root, meta)
    mp4 = folder / "recordings" / "MP4"
    for camera, key in CAMERA_KEYS.items():
        serial = str(meta.get(key) or "")
        if not serial:
            continue
        episode.serials[camera] = serial
        if (mp4 / f"{serial}.mp4").is_file():
            episode.videos[camera] = (mp4 / f"{serial}.mp4", False)
        elif (mp4 / f"{serial}-stereo.mp4").is_file():
            episode.videos[camera] = (mp4 / f"{serial}-stereo.mp4", True)
    h5_file = folder / "trajectory.h5"
    if h5_file.is_file():
        attrs, episode.step_ms = _h5_attrs_and_times(h5_file, episode.serials)
        for key, value in attrs.items():
            if not meta.get(key) and meta.get(key) is not False:
                meta[key] = value
    return episode


def _frame_times_ms(video: Path, cap: cv2.VideoCapture, first_ms: float) -> np.ndarray:
    sidecar = video.with_name(video.name.replace("-stereo", "")[:-4] + "_timestamps.json")
    if sidecar.is_file():
        try:
            return np.asarray(json.loads(sidecar.read_text(encoding="utf-8")), dtype=np.float64)
        except (UnicodeDecodeError, ValueError, TypeError) as exc:
            raise DroidError(f"{sidecar}: unreadable frame timestamps ({exc})") from exc
    fps = cap.get(cv2.CAP_PROP_FPS) or DEFAULT_FPS
    count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    return first_ms + np.arange(max(count, 0)) * 1000.0 / fps


def step_frames(episode: DroidEpisode, camera: str) -> tuple[np.ndarray, np.ndarray]:
    """Per step: the video frame index and the step's time (ns from the episode's start)."""
    video, _ = episode.videos[camera]
    cap = cv2.VideoCapture(str(video))
    if not cap.isOpened():
        raise DroidError(f"{video}: cannot open the video")
    try:
        steps_ms = episode.step_ms.get(camera)
        if steps_ms is None or not len(steps_ms):
            fps = cap.get(cv2.CAP_PROP_FPS) or DEFAULT_FPS
            count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
            index = np.arange(max(count, 0))
            return index, (index * 1e9 / fps).astype(np.int64)
        frames_ms = _frame_times_ms(video, cap, float(np.min(steps_ms)))
    finally:
        cap.release()
    if not len(frames_ms):
        raise DroidError(f"{video}: no frames")
    order = np.argsort(frames_ms)
    pos = np.clip(np.searchsorted(frames_ms[order], steps_ms), 1, len(order) - 1) if len(order) > 1 else None
    if pos is None:
        nearest = np.zeros(len(steps_ms), dtype=np.int64)
    else:
        left, right = order[pos - 1], order[pos]
        nearest = np.where(np.abs(frames_ms[left] - steps_ms) <= np.abs(frames_ms[right] - steps_ms), left, right)
    start = float(np.min(steps_ms))
    return nearest.astype(np.int64), ((steps_ms - start) * 1e6).astype(np.int64)


def decode_frames(episode: DroidEpisode, camera: str, wanted: list[int]) -> Iterator[tuple[int, np.ndarray]]:
    """(frame index, RGB left view) for the ``wanted`` frame indices, decoded in one forward pass."""
    video, stereo = episode.videos[camera]
    targets = sorted(set(wanted))
    if not targets:
        return
    cap = cv2.VideoCapture(str(video))
    if not cap.isOpened():
        raise DroidError(f"{video}: cannot open the video")
    try:
        k = 0
        for target in targets:
            while k < target:
                if not cap.grab():
                    return
                k += 1
            ok, bgr = cap.read()
            k += 1
            if not ok:
                return
            if stereo:
                bgr = bgr[:, : bgr.shape[1] // 2]
            yield target, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    finally:
        cap.release()
