"""Robot datasets written by the tests in the released on-disk layouts, independently of the readers under test.

- ``write_droid_rlds``: a TFDS/RLDS folder like DROID's ``droid_100/1.0.0`` — ``features.json`` with DROID's
  feature tree, ``dataset_info.json``, ``droid_100-train.tfrecord-0000i-of-0000n`` shards. The TFRecord framing
  and masking are written here by hand; each episode's ``tf.train.Example`` is encoded straight into protobuf
  wire format (varints, length-delimited fields, packed repeated scalars), not through the reader's descriptor.
- ``write_droid_raw``: a raw DROID episode ``<lab>/<success|failure>/<date>/<timestamp>/`` with
  ``metadata_<uuid>.json``, ``recordings/MP4/<serial>.mp4`` (left view) and ``<serial>-stereo.mp4`` (left|right
  side by side), and optionally ``trajectory.h5`` (h5py) with DROID's attributes and camera timestamps.
Frames carry their index as a grey level in a corner patch, so a test can tell which frame it got.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import cv2
import google_crc32c
import numpy as np
from skimage import data as skdata

DROID_IMAGES = ("exterior_image_1_left", "exterior_image_2_left", "wrist_image_left")
PHOTOS = ("coffee", "chelsea", "astronaut")
W, H = 320, 180  # DROID RLDS image size


def photo(name: str, w: int = W, h: int = H) -> np.ndarray:
    rgb = getattr(skdata, name)()
    rgb = rgb if rgb.ndim == 3 else np.repeat(rgb[..., None], 3, axis=2)
    return cv2.resize(rgb[..., :3], (w, h), interpolation=cv2.INTER_AREA)


def marked(rgb: np.ndarray, k: int, tag: int = 0) -> np.ndarray:
    """``rgb`` with frame number ``k`` as the grey level 30 + 40 k of a 48x48 corner patch (and ``tag``, which
    keeps different episodes' and cameras' frames apart, in the opposite corner)."""
    out = rgb.copy()
    out[:48, :48] = min(255, 30 + 40 * k)
    out[-16:, -16:] = (tag * 37) % 256
    return out


def read_mark(rgb: np.ndarray) -> int:
    return int(round((float(rgb[8:40, 8:40].mean()) - 30) / 40))


# --- protobuf wire format and TFRecord framing, by hand ---------------------------------------------------
def _varint(n: int) -> bytes:
    n &= (1 << 64) - 1
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _field(number: int, payload: bytes) -> bytes:  # wire type 2: length-delimited
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def encode_feature(values) -> bytes:
    if values and isinstance(values[0], (bytes, str)):
        inner = b"".join(_field(1, v.encode() if isinstance(v, str) else v) for v in values)
        return _field(1, inner)  # bytes_list
    if values and isinstance(values[0], float):
        return _field(2, _field(1, struct.pack(f"<{len(values)}f", *values)))  # float_list, packed
    return _field(3, _field(1, b"".join(_varint(int(v)) for v in values)))  # int64_list, packed


def encode_example(features: dict[str, list]) -> bytes:
    entries = b"".join(_field(1, _field(1, k.encode()) + _field(2, encode_feature(v))) for k, v in features.items())
    return _field(1, entries)


def _masked(data: bytes) -> int:
    crc = google_crc32c.value(data)
    return ((((crc >> 15) | (crc << 17)) & 0xFFFFFFFF) + 0xA282EAD8) & 0xFFFFFFFF


def write_tfrecord(path: Path, records: list[bytes]) -> Path:
    with open(path, "wb") as fh:
        for data in records:
            length = struct.pack("<Q", len(data))
            fh.write(length + struct.pack("<I", _masked(length)) + data + struct.pack("<I", _masked(data)))
    return path


# --- DROID RLDS ---------------------------------------------------------------------------------------------
def _cls(name: str) -> str:
    return f"tensorflow_datasets.core.features.{name}"


def _tensor(shape, dtype="float32") -> dict:
    return {"pythonClassName": _cls("tensor_feature.Tensor"),
            "tensor": {"shape": {"dimensions": [str(s) for s in shape]}, "dtype": dtype, "encoding": "none"}}


def _scalar(dtype: str) -> dict:
    return {"pythonClassName": _cls("scalar.Scalar"), "tensor": {"shape": {}, "dtype": dtype, "encoding": "none"}}


def _text() -> dict:
    return {"pythonClassName": _cls("text_feature.Text"), "text": {}}


def _image() -> dict:
    return {"pythonClassName": _cls("image_feature.Image"),
            "image": {"shape": {"dimensions": [str(H), str(W), "3"]}, "dtype": "uint8", "encodingFormat": "jpeg"}}


def _dict(features: dict) -> dict:
    return {"pythonClassName": _cls("features_dict.FeaturesDict"), "featuresDict": {"features": features}}


def droid_features_json() -> dict:
    """DROID's RLDS feature tree (names and classes as in the release's features.json)."""
    observation = _dict({**{k: _image() for k in DROID_IMAGES}, "cartesian_position": _tensor([6], "float64"),
                         "gripper_position": _tensor([1], "float64"), "joint_position": _tensor([7], "float64")})
    step = _dict({
        "action": _tensor([7], "float64"), "discount": _scalar("float32"), "reward": _scalar("float32"),
        "is_first": _scalar("bool"), "is_last": _scalar("bool"), "is_terminal": _scalar("bool"),
        "language_instruction": _text(), "language_instruction_2": _text(), "language_instruction_3": _text(),
        "observation": observation,
    })
    steps = {"pythonClassName": _cls("dataset_feature.Dataset"), "sequence": {"feature": step, "length": "-1"}}
    return _dict({"steps": steps, "episode_metadata": _dict({"file_path": _text(), "recording_folderpath": _text()})})


def droid_episode(n_steps: int, instructions: tuple[str, str, str], photo_offset: int, path: str) -> bytes:
    jpeg = {}
    for c, cam in enumerate(DROID_IMAGES):
        base = photo(PHOTOS[(c + photo_offset) % len(PHOTOS)])
        jpeg[cam] = [cv2.imencode(".jpg", cv2.cvtColor(marked(base, k, 3 * photo_offset + c + 1),
                                                       cv2.COLOR_RGB2BGR))[1].tobytes()
                     for k in range(n_steps)]
    features = {f"steps/observation/{cam}": v for cam, v in jpeg.items()}
    features.update({
        "steps/language_instruction": [instructions[0]] * n_steps,
        "steps/language_instruction_2": [instructions[1]] * n_steps,
        "steps/language_instruction_3": [instructions[2]] * n_steps,
        "steps/is_first": [int(k == 0) for k in range(n_steps)],
        "steps/is_last": [int(k == n_steps - 1) for k in range(n_steps)],
        "steps/is_terminal": [int(k == n_steps - 1) for k in range(n_steps)],
        "steps/action": [0.1] * (7 * n_steps), "steps/discount": [1.0] * n_steps, "steps/reward": [0.0] * n_steps,
        "steps/observation/joint_position": [0.0] * (7 * n_steps),
        "steps/observation/gripper_position": [0.5] * n_steps,
        "steps/observation/cartesian_position": [0.2] * (6 * n_steps),
        "episode_metadata/file_path": [f"{path}/trajectory.h5"],
        "episode_metadata/recording_folderpath": [f"{path}/recordings/MP4"],
    })
    return encode_example(features)


def write_droid_rlds(root: Path, episodes: list[tuple[int, tuple[str, str, str]]], shards: int = 2,
                     name: str = "droid_100") -> Path:
    """``root/<name>/1.0.0`` with ``episodes`` [(steps, (instruction, instruction_2, instruction_3))] spread
    over ``shards`` files; returns the version folder."""
    folder = root / name / "1.0.0"
    folder.mkdir(parents=True)
    (folder / "features.json").write_text(json.dumps(droid_features_json(), indent=2))
    per_shard: list[list[bytes]] = [[] for _ in range(shards)]
    for k, (n_steps, texts) in enumerate(episodes):
        per_shard[k % shards].append(droid_episode(n_steps, texts, k, f"gs://bucket/LAB/success/2024-01-0{k}"))
    for i, records in enumerate(per_shard):
        write_tfrecord(folder / f"{name}-train.tfrecord-{i:05d}-of-{shards:05d}", records)
    info = {"name": name, "version": "1.0.0", "fileFormat": "tfrecord", "moduleName": f"{name}.{name}",
            "splits": [{"name": "train", "filepathTemplate": "{DATASET}-{SPLIT}.{FILEFORMAT}-{SHARD_X_OF_Y}",
                        "shardLengths": [str(len(r)) for r in per_shard]}]}
    (folder / "dataset_info.json").write_text(json.dumps(info, indent=2))
    return folder


# --- DROID raw ----------------------------------------------------------------------------------------------
def _video(path: Path, frames: list[np.ndarray], fps: float = 15.0) -> None:
    h, w = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
    assert writer.isOpened(), path
    for frame in frames:
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()


def write_droid_raw(root: Path, lab: str, outcome: str, timestamp: str, uuid: str, task: str, n_frames: int,
                    step_frames: list[int] | None = None, stereo_only: tuple[str, ...] = (), scene_id: int = 3,
                    photo_offset: int = 0) -> Path:
    """One raw episode. ``step_frames`` (with it, trajectory.h5 is written): the video frame each step's camera
    timestamp points at; ``stereo_only``: cameras that have only ``<serial>-stereo.mp4``."""
    folder = root / lab / outcome / "2023-07-07" / timestamp
    mp4 = folder / "recordings" / "MP4"
    mp4.mkdir(parents=True)
    serials = {"ext1": f"{lab[:2].upper()}11", "ext2": f"{lab[:2].upper()}22", "wrist": f"{lab[:2].upper()}33"}
    meta = {"uuid": uuid, "lab": lab, "user": "tester", "date": "2023-07-07", "timestamp": "2023-07-07-09h-42m-23s",
            "hdf5_path": f"{lab}/{outcome}/2023-07-07/{timestamp}/trajectory.h5", "building": "B1",
            "scene_id": scene_id, "success": outcome == "success", "current_task": task,
            **{f"{c}_cam_serial": s for c, s in serials.items()}}
    (folder / f"metadata_{uuid}.json").write_text(json.dumps(meta))
    for c, (camera, serial) in enumerate(serials.items()):
        base = photo(PHOTOS[(c + photo_offset) % len(PHOTOS)], 128, 96)
        left = [marked(base, k, sum(map(ord, lab)) + c) for k in range(n_frames)]
        right = [np.full_like(f, 200) for f in left]  # the right eye: a flat grey the reader must never return
        pairs = zip(left, right, strict=True)
        _video(mp4 / f"{serial}-stereo.mp4", [np.concatenate([a, b], axis=1) for a, b in pairs])
        if camera not in stereo_only:
            _video(mp4 / f"{serial}.mp4", left)
    if step_frames is not None:
        import h5py

        t0 = 1_688_722_943_000.0  # ms
        with h5py.File(folder / "trajectory.h5", "w") as h5:
            h5.attrs.update({"current_task": task, "success": outcome == "success", "scene_id": scene_id,
                             "user": "tester"})
            cams = h5.create_group("observation/timestamp/cameras")
            for serial in serials.values():
                ms = np.array([t0 + k * 1000.0 / 15.0 for k in step_frames])
                cams[f"{serial}_estimated_capture"] = ms
                cams[f"{serial}_frame_received"] = ms + 20
            h5["action/joint_position"] = np.zeros((len(step_frames), 7))
    return folder
