"""Records as a rosbag2 with MCAP storage, one bag per recording session, written in closed chunks.

A session folder is a rosbag2 bag as ``ros2 bag record --split`` leaves it: ``metadata.yaml`` and the files
``<session>_<n>.mcap`` it lists, so ``ros2 bag info/play``, ``rosbags``, ``converseg-replay`` and
``converseg-data run --bag <session>`` read it, and each ``.mcap`` opens alone with the ``mcap`` reader. Per
record, at one log time: the queries' text on ``/record/query`` (``std_msgs/String``, just before the frame:
the data engine's ``--instruction-topic``), the frame as the model saw it on ``/record/image`` (or
``/record/<camera>/image``; ``sensor_msgs/Image`` rgb8 with the camera's header) and the summary on
``/record/meta`` (``std_msgs/String``, JSON: queries, answers, reasons, model).

A chunk is written into a tagged temporary folder and becomes part of the bag when closed (after
``chunk_s`` seconds, at a size limit, or when the session ends): its summary ``<session>_<n>.json`` is
written first, then the ``.mcap`` moved in, then ``metadata.yaml`` rebuilt from the summaries (atomically). A
kill loses the open chunk only (its folder is swept at the next start); dropping a chunk for the disk budget
goes in reverse (summary, metadata, then the ``.mcap``).
Plain Python (``rosbags`` serialises the messages; no ROS installation needed).
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from converseg_ros.modeling.atomic import atomic_write_bytes, named_no_space, sweep_stale, temporary_dir
from converseg_ros.serving.recording.budget import Unit
from converseg_ros.serving.recording.settings import Record

QUERY_TOPIC = "/record/query"
META_TOPIC = "/record/meta"
BAG_VERSION = 9
_CHUNK = re.compile(r"^(?P<session>.+)_(?P<n>\d+)\.json$")
_TYPES: Any = None


def image_topic(camera: str) -> str:
    """The topic a camera's recorded frames are on."""
    return f"/record/{camera}/image" if camera else "/record/image"


def _types() -> Any:
    global _TYPES
    if _TYPES is None:
        from rosbags.typesys import Stores, get_typestore

        _TYPES = get_typestore(Stores.ROS2_KILTED)
    return _TYPES


class _Chunk:
    """The open chunk: a rosbags writer in a temporary folder."""

    def __init__(self, session: Path, stem: str, opened_at: float) -> None:
        from rosbags.rosbag2 import StoragePlugin, Writer

        self.tmp = temporary_dir(session, stem)
        self.stem, self.opened_at = stem, opened_at
        self.writer = Writer(self.tmp / stem, version=BAG_VERSION, storage_plugin=StoragePlugin.MCAP)
        self.writer.open()
        self.connections: dict[str, Any] = {}
        self.records: list[dict[str, Any]] = []
        self.bytes = 0

    def write(self, topic: str, msgtype: str, log_ns: int, msg: Any) -> None:
        types = _types()
        if topic not in self.connections:
            self.connections[topic] = self.writer.add_connection(topic, msgtype, typestore=types)
        data = types.serialize_cdr(msg, msgtype)
        self.writer.write(self.connections[topic], log_ns, data)
        self.bytes += len(data) + 64


class McapSession:
    """One session's bag in ``root/name`` (created with its first record)."""

    def __init__(self, root: Path, name: str, chunk_s: float, chunk_bytes: int) -> None:
        self.path = Path(root) / name
        self.name, self.chunk_s, self.chunk_bytes = name, chunk_s, chunk_bytes
        self._chunk: _Chunk | None = None
        self._next = 0
        self._last_ns = 0

    @property
    def open_bytes(self) -> int:
        """Bytes in the open chunk (not yet part of the bag)."""
        return self._chunk.bytes if self._chunk is not None else 0

    def write(self, record: Record, now: float) -> None:
        """Write one record (opens a chunk; closes it first when this record would pass its size limit)."""
        size = record.rgb.nbytes + 4096
        if self._chunk is not None and self._chunk.records and self._chunk.bytes + size > self.chunk_bytes:
            self.close_chunk()
        with named_no_space(self.path):
            if self._chunk is None:
                self._chunk = _Chunk(self.path, f"{self.name}_{self._next}", now)
                self._next += 1
            log_ns = max(record.recorded_ns, self._last_ns + 2)
            self._last_ns = log_ns
            types = _types().types
            text_t = types["std_msgs/msg/String"]
            self._chunk.write(QUERY_TOPIC, "std_msgs/msg/String", log_ns - 1, text_t(data=record.instruction))
            self._chunk.write(image_topic(record.camera), "sensor_msgs/msg/Image", log_ns, _image(record))
            self._chunk.write(META_TOPIC, "std_msgs/msg/String", log_ns, text_t(data=json.dumps(record.meta)))
        self._chunk.records.append({k: record.meta[k] for k in ("id", "camera", "stamp_ns", "reasons")})

    def note(self, meta: dict[str, Any], recorded_ns: int, now: float) -> None:
        """A summary without a frame (a flag on a frame recorded before)."""
        with named_no_space(self.path):
            if self._chunk is None:
                self._chunk = _Chunk(self.path, f"{self.name}_{self._next}", now)
                self._next += 1
            log_ns = max(recorded_ns, self._last_ns + 2)
            self._last_ns = log_ns
            text_t = _types().types["std_msgs/msg/String"]
            self._chunk.write(META_TOPIC, "std_msgs/msg/String", log_ns, text_t(data=json.dumps(meta)))

    def tick(self, now: float) -> None:
        """Close the open chunk once it is ``chunk_s`` old."""
        if self._chunk is not None and now - self._chunk.opened_at >= self.chunk_s:
            self.close_chunk()

    def close_chunk(self) -> None:
        """Make the open chunk part of the bag: summary, then the .mcap, then metadata.yaml."""
        chunk, self._chunk = self._chunk, None
        if chunk is None:
            return
        try:
            with named_no_space(self.path):
                chunk.writer.close()
                folder = chunk.tmp / chunk.stem
                info = yaml.safe_load((folder / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
                summary = {"format": 1, "metadata": info, "records": chunk.records}
                atomic_write_bytes(self.path / f"{chunk.stem}.json", json.dumps(summary, indent=1).encode())
                os.replace(folder / f"{chunk.stem}.mcap", self.path / f"{chunk.stem}.mcap")
                rebuild_metadata(self.path)
        finally:
            shutil.rmtree(chunk.tmp, ignore_errors=True)

    def close(self) -> None:
        self.close_chunk()


def _image(record: Record) -> Any:
    types = _types().types
    rgb = np.ascontiguousarray(record.rgb, dtype=np.uint8)
    sec, nsec = divmod(record.stamp_ns, 1_000_000_000)
    header = types["std_msgs/msg/Header"](stamp=types["builtin_interfaces/msg/Time"](sec=sec, nanosec=nsec),
                                          frame_id=record.frame_id)
    return types["sensor_msgs/msg/Image"](header=header, height=rgb.shape[0], width=rgb.shape[1], encoding="rgb8",
                                          is_bigendian=0, step=rgb.shape[1] * 3, data=rgb.reshape(-1))


def _chunks(session: Path) -> list[tuple[int, Path]]:
    found = []
    for path in session.glob("*.json"):
        match = _CHUNK.match(path.name)
        if match and match["session"] == session.name:
            found.append((int(match["n"]), path))
    return sorted(found)


def rebuild_metadata(session: Path) -> None:
    """``metadata.yaml`` of a session from its closed chunks (the folder goes when none is left)."""
    infos = []
    for _, summary in _chunks(session):
        if summary.with_suffix(".mcap").exists():
            infos.append(json.loads(summary.read_text())["metadata"])
    meta = session / "metadata.yaml"
    if not infos:
        meta.unlink(missing_ok=True)
        if not any(session.iterdir()):  # (an open chunk's folder keeps it)
            session.rmdir()
        return
    files = [f for info in infos for f in info["files"]]
    start = min(f["starting_time"]["nanoseconds_since_epoch"] for f in files)
    end = max(f["starting_time"]["nanoseconds_since_epoch"] + f["duration"]["nanoseconds"] for f in files)
    topics: dict[tuple[str, str], dict[str, Any]] = {}
    for info in infos:
        for entry in info["topics_with_message_count"]:
            key = (entry["topic_metadata"]["name"], entry["topic_metadata"]["type"])
            if key in topics:
                topics[key]["message_count"] += entry["message_count"]
            else:
                topics[key] = {"topic_metadata": dict(entry["topic_metadata"]), "message_count": entry["message_count"]}
    merged = {**infos[0], "relative_file_paths": [f["path"] for f in files], "files": files,
              "starting_time": {"nanoseconds_since_epoch": start}, "duration": {"nanoseconds": end - start},
              "message_count": sum(f["message_count"] for f in files),
              "topics_with_message_count": list(topics.values())}
    text = yaml.safe_dump({"rosbag2_bagfile_information": merged}, default_flow_style=False, sort_keys=False)
    atomic_write_bytes(meta, text.encode())


def units(root: Path) -> list[Unit]:
    """Every closed chunk under ``root``, oldest first (sessions are named by their UTC start)."""
    found = []
    for session in sorted(p for p in Path(root).iterdir() if p.is_dir() and not p.name.startswith(".")):
        for n, summary in _chunks(session):
            mcap = summary.with_suffix(".mcap")
            size = summary.stat().st_size + (mcap.stat().st_size if mcap.exists() else 0)
            found.append(Unit((session.name, n), summary, size))
    return found


def drop(unit: Unit) -> None:
    """Delete a closed chunk: its summary, then ``metadata.yaml`` rebuilt without it, then its ``.mcap``, so
    that a reader opening the live bag never finds a listed file missing (but one that read the metadata
    just before may: see ``robot_logs``)."""
    mcap = unit.path.with_suffix(".mcap")
    unit.path.unlink(missing_ok=True)
    rebuild_metadata(unit.path.parent)
    mcap.unlink(missing_ok=True)
    if unit.path.parent.is_dir() and not any(unit.path.parent.iterdir()):  # (its last chunk: the folder goes)
        unit.path.parent.rmdir()


def sweep(root: Path) -> None:
    """Open chunks of writers that are gone (killed): removed, their sessions' metadata rebuilt."""
    for session in (p for p in Path(root).iterdir() if p.is_dir() and not p.name.startswith(".")):
        if sweep_stale(session):
            rebuild_metadata(session)
