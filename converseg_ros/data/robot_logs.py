"""Frames from robot logs: rosbag2 folders (sqlite3 or MCAP storage), ROS 1 bags and bare ``.mcap`` files.

Bag folders and ``.bag`` files are read with ``rosbags``; bare MCAP files with ``mcap`` and
``mcap-ros2-support``.
``sensor_msgs/msg/Image`` (rgb8, bgr8, rgba8, bgra8, mono8, mono16) and ``sensor_msgs/msg/CompressedImage``
are decoded; no ROS installation is needed.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from converseg_ros.errors import ConverSegError


class RobotLogError(ConverSegError, ValueError):
    """A robot log cannot be opened or holds no usable messages."""


@dataclass(frozen=True)
class LogMessage:
    """One decoded message: topic, time stamp (ns; header stamp when set, else log time) and payload."""

    topic: str
    stamp_ns: int
    msgtype: str
    value: np.ndarray | str


def iter_messages(path: str | Path, topics: list[str]) -> Iterator[LogMessage]:
    """Yield decoded image (as RGB/mono uint8 arrays) and string messages of ``topics`` in log order."""
    path = Path(path)
    if not path.exists():
        raise RobotLogError(f"robot log not found: {path}")
    if path.is_file() and path.suffix == ".mcap":
        yield from _iter_mcap(path, topics)
    else:
        yield from _iter_rosbags(path, topics)


def _iter_rosbags(path: Path, topics: list[str]) -> Iterator[LogMessage]:
    from rosbags.highlevel import AnyReader, AnyReaderError

    try:
        reader = AnyReader([path])
        reader.open()
    except (AnyReaderError, OSError) as exc:
        raise RobotLogError(f"cannot open {path} as a rosbag: {exc}") from exc
    try:
        available = {c.topic for c in reader.connections}
        _check_topics(path, topics, available)
        connections = [c for c in reader.connections if c.topic in topics]
        for conn, log_time, raw in reader.messages(connections=connections):
            msg = reader.deserialize(raw, conn.msgtype)
            yield _convert(conn.topic, conn.msgtype, msg, log_time)
    finally:
        reader.close()


def _iter_mcap(path: Path, topics: list[str]) -> Iterator[LogMessage]:
    from mcap.exceptions import McapError
    from mcap.reader import make_reader
    from mcap_ros2.decoder import DecoderFactory

    with open(path, "rb") as fh:
        try:
            reader = make_reader(fh, decoder_factories=[DecoderFactory()])
            summary = reader.get_summary()
            available = {c.topic for c in summary.channels.values()} if summary else set()
        except McapError as exc:
            raise RobotLogError(f"cannot read {path} as MCAP: {exc}") from exc
        _check_topics(path, topics, available)
        for schema, channel, message, msg in reader.iter_decoded_messages(topics=topics, log_time_order=True):
            yield _convert(channel.topic, _ros2_name(schema.name), msg, message.log_time)


def _check_topics(path: Path, wanted: list[str], available: set[str]) -> None:
    missing = [t for t in wanted if t not in available]
    if missing:
        raise RobotLogError(f"{path}: topics {missing} not in the log; it has {sorted(available)}")


def _ros2_name(name: str) -> str:
    return name if "/msg/" in name else name.replace("/", "/msg/", 1)


def _convert(topic: str, msgtype: str, msg: object, log_time: int) -> LogMessage:
    header = getattr(msg, "header", None)
    stamp = log_time
    if header is not None and (header.stamp.sec or header.stamp.nanosec):
        stamp = header.stamp.sec * 1_000_000_000 + header.stamp.nanosec
    if msgtype == "sensor_msgs/msg/Image":
        return LogMessage(topic, stamp, msgtype, image_from_raw(msg))
    if msgtype == "sensor_msgs/msg/CompressedImage":
        return LogMessage(topic, stamp, msgtype, image_from_compressed(msg))
    if msgtype == "std_msgs/msg/String":
        return LogMessage(topic, stamp, msgtype, str(msg.data))
    raise RobotLogError(f"topic {topic}: unsupported message type {msgtype}")


_CHANNELS = {"rgb8": 3, "bgr8": 3, "rgba8": 4, "bgra8": 4, "mono8": 1, "8UC1": 1, "mono16": 1, "16UC1": 1}


def image_from_raw(msg: object) -> np.ndarray:
    """sensor_msgs/Image → RGB uint8 (H, W, 3), or (H, W) uint8 for mono encodings (16-bit: > 0 → 255)."""
    enc = msg.encoding
    if enc not in _CHANNELS:
        raise RobotLogError(f"unsupported image encoding {enc!r}")
    channels, height, width = _CHANNELS[enc], int(msg.height), int(msg.width)
    dtype = np.dtype(">u2" if msg.is_bigendian else "<u2") if "16" in enc else np.dtype(np.uint8)
    row = width * channels * dtype.itemsize
    buf = np.frombuffer(bytes(msg.data), np.uint8)
    if msg.step < row or buf.size < msg.step * height:
        raise RobotLogError(f"image data too short for {width}x{height} {enc}")
    rows = buf[: msg.step * height].reshape(height, msg.step)[:, :row]
    arr = np.ascontiguousarray(rows).view(dtype).reshape(height, width, channels)
    if "16" in enc:
        return np.where(arr[..., 0] > 0, 255, 0).astype(np.uint8)
    if channels == 1:
        return arr[..., 0].copy()
    if enc.startswith("bgr"):
        arr = arr[..., 2::-1]
    return np.ascontiguousarray(arr[..., :3])


def image_from_compressed(msg: object) -> np.ndarray:
    """sensor_msgs/CompressedImage (jpeg/png) → RGB uint8, or mono uint8 for single-channel payloads."""
    arr = cv2.imdecode(np.frombuffer(bytes(msg.data), np.uint8), cv2.IMREAD_UNCHANGED)
    if arr is None:
        raise RobotLogError(f"cannot decode compressed image (format {msg.format!r})")
    if arr.ndim == 2:
        return arr if arr.dtype == np.uint8 else np.where(arr > 0, 255, 0).astype(np.uint8)
    return cv2.cvtColor(arr, cv2.COLOR_BGRA2RGB if arr.shape[2] == 4 else cv2.COLOR_BGR2RGB)
