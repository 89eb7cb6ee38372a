"""Inputs the data-engine tests build: real photos, robot logs written here, the run command line.
Imported by this module's own name, so the folder's conftest stays private to it."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from skimage import data as skdata

PHOTOS = ("coffee", "chelsea", "astronaut", "rocket")


def photo(name: str, side: int = 160) -> np.ndarray:
    """A real photo shrunk to ``side`` pixels on its longer side (RGB)."""
    rgb = getattr(skdata, name)()
    if rgb.ndim == 2:
        rgb = np.repeat(rgb[..., None], 3, axis=2)
    f = side / max(rgb.shape[:2])
    return cv2.resize(rgb, (round(rgb.shape[1] * f), round(rgb.shape[0] * f)), interpolation=cv2.INTER_AREA)


def write_rosbag2(path: Path, frames: list[np.ndarray], topic: str = "/camera/color/image_raw",
                  storage: str = "sqlite3", period_s: float = 0.5,
                  instructions: dict[float, str] | None = None) -> Path:
    """A rosbag2 folder with sensor_msgs/Image (rgb8) frames ``period_s`` apart (header stamps set) and, with
    ``instructions``, std_msgs/String task words on /task at the given seconds."""
    from rosbags.rosbag2 import StoragePlugin, Writer
    from rosbags.typesys import Stores, get_typestore

    ts = get_typestore(Stores.ROS2_HUMBLE)
    img_t = ts.types["sensor_msgs/msg/Image"].__msgtype__
    plugin = StoragePlugin.SQLITE3 if storage == "sqlite3" else StoragePlugin.MCAP
    with Writer(path, version=9, storage_plugin=plugin) as writer:
        conn = writer.add_connection(topic, img_t, typestore=ts)
        if instructions:
            str_t = ts.types["std_msgs/msg/String"].__msgtype__
            task = writer.add_connection("/task", str_t, typestore=ts)
            for t_s, text in sorted(instructions.items()):
                msg = ts.types["std_msgs/msg/String"](data=text)
                writer.write(task, int(t_s * 1e9), ts.serialize_cdr(msg, str_t))
        for i, rgb in enumerate(frames):
            t_ns = int((1 + i * period_s) * 1e9)
            header = ts.types["std_msgs/msg/Header"](
                stamp=ts.types["builtin_interfaces/msg/Time"](sec=t_ns // 10**9, nanosec=t_ns % 10**9), frame_id="cam"
            )
            msg = ts.types["sensor_msgs/msg/Image"](
                header=header, height=rgb.shape[0], width=rgb.shape[1], encoding="rgb8", is_bigendian=0,
                step=rgb.shape[1] * 3, data=np.ascontiguousarray(rgb).ravel(),
            )
            writer.write(conn, t_ns, ts.serialize_cdr(msg, img_t))
    return path


def write_mcap(path: Path, frames: list[np.ndarray], topic: str = "/wrist/image/compressed",
               period_s: float = 0.5) -> Path:
    """A bare .mcap (mcap-ros2-support writer) with sensor_msgs/CompressedImage JPEG frames."""
    from mcap_ros2.writer import Writer as McapWriter

    sep = "=" * 80
    msgdef = (
        f"std_msgs/Header header\nstring format\nuint8[] data\n{sep}\nMSG: std_msgs/Header\n"
        f"builtin_interfaces/Time stamp\nstring frame_id\n{sep}\n"
        "MSG: builtin_interfaces/Time\nint32 sec\nuint32 nanosec\n"
    )
    with open(path, "wb") as fh:
        writer = McapWriter(fh)
        schema = writer.register_msgdef("sensor_msgs/msg/CompressedImage", msgdef)
        for i, rgb in enumerate(frames):
            t_ns = int((1 + i * period_s) * 1e9)
            ok, jpg = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
            writer.write_message(topic, schema, {
                "header": {"stamp": {"sec": t_ns // 10**9, "nanosec": t_ns % 10**9}, "frame_id": "wrist"},
                "format": "jpeg", "data": jpg.tobytes(),
            }, log_time=t_ns, publish_time=t_ns)
        writer.finish()
    return path


def run_args(out: Path, url: str, *extra: str) -> list[str]:
    """A ``converseg-data run`` command line against the scripted server with the tiny SAM2."""
    return ["run", "--out", str(out), "--vlm", "openai", "--base-url", url, "--model", "scripted",
            "--sam2", "tiny", "--device", "cpu", "--backoff", "0.05", "--no-progress", *extra]


def distinct_photos(path: Path, n: int, offset: int = 0) -> Path:
    """``n`` different PNG photos (real photos, each with its own corner marks) in a new folder."""
    from robot_datasets import marked

    path.mkdir()
    names = ("coffee", "chelsea", "astronaut", "rocket")
    for k in range(n):
        rgb = marked(photo(names[(k + offset) % 4]), k % 5, k + offset)
        cv2.imwrite(str(path / f"{k:03d}.png"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    return path
