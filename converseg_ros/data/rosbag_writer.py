"""Write camera frames as a rosbag2 (``sensor_msgs/msg/Image``, rgb8) with ``rosbags``; no ROS needed.

The bag is what ``ros2 bag record`` would leave for a camera topic (rosbag2 version 9, MCAP or sqlite3
storage, header stamps equal to the log times), so ``ros2 bag play``, ``converseg-replay`` and
``converseg_ros.data.robot_logs`` read it back. The folder is written under a temporary name and renamed
when complete: an interrupted run leaves no half bag.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np

from converseg_ros.data.synthetic_video import SyntheticVideo

STORAGES = ("mcap", "sqlite3")


def write_image_bag(
    folder: str | Path, frames: list[np.ndarray], topic: str = "/camera/color/image_raw", rate_hz: float = 10.0,
    frame_id: str = "camera_color_optical_frame", start_ns: int = 1_700_000_000 * 10**9, storage: str = "mcap",
    extra_files: dict[str, str] | None = None,
) -> Path:
    """Frames (H x W x 3 uint8 RGB) at ``rate_hz`` on ``topic``; returns the bag folder (must not exist).
    ``extra_files`` (name -> text) are written into the folder with the bag (e.g. its ground truth)."""
    from rosbags.rosbag2 import StoragePlugin, Writer
    from rosbags.typesys import Stores, get_typestore

    if storage not in STORAGES:
        raise ValueError(f"storage must be one of {STORAGES}, got {storage!r}")
    if rate_hz <= 0:
        raise ValueError(f"rate_hz must be positive, got {rate_hz}")
    for k, rgb in enumerate(frames):
        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
            raise ValueError(f"frame {k}: expected H x W x 3 uint8 RGB, got {rgb.shape} {rgb.dtype}")
    folder = Path(folder)
    if folder.exists():
        raise FileExistsError(f"{folder} exists; rosbag2 writes a new folder")
    partial = folder.with_name(folder.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    store = get_typestore(Stores.ROS2_KILTED)
    image_t, header_t, time_t = (
        store.types[name] for name in ("sensor_msgs/msg/Image", "std_msgs/msg/Header", "builtin_interfaces/msg/Time")
    )
    plugin = StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3
    with Writer(partial, version=9, storage_plugin=plugin) as writer:
        connection = writer.add_connection(topic, image_t.__msgtype__, typestore=store)
        for k, rgb in enumerate(frames):
            stamp = start_ns + round(k * 1e9 / rate_hz)
            msg = image_t(
                header=header_t(stamp=time_t(sec=stamp // 10**9, nanosec=stamp % 10**9), frame_id=frame_id),
                height=rgb.shape[0], width=rgb.shape[1], encoding="rgb8", is_bigendian=0, step=rgb.shape[1] * 3,
                data=np.ascontiguousarray(rgb).reshape(-1),
            )
            writer.write(connection, stamp, store.serialize_cdr(msg, image_t.__msgtype__))
    for name, text in (extra_files or {}).items():
        (partial / name).write_text(text)
    partial.rename(folder)
    return folder


def write_video_bag(folder: str | Path, video: SyntheticVideo, **kwargs) -> Path:
    """A synthetic video as a bag, with its ground truth in ``<folder>/motion.json``: per frame the affine
    frame -> photo map and the motion to the next frame (2 x 3 rows), and the photo's size."""
    truth = {
        "photo_shape": list(video.photo_shape),
        "to_photo": [m.tolist() for m in video.to_photo],
        "motion_to_next": [video.motion(t).tolist() for t in range(len(video) - 1)],
    }
    return write_image_bag(folder, video.frames, extra_files={"motion.json": json.dumps(truth, indent=1)}, **kwargs)
