"""Frames, masks and prompts extracted from small rosbag2 / MCAP logs that the tests write."""

import json

import cv2
import numpy as np
import pytest
from mcap_ros2.writer import Writer as McapRos2Writer
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.typesys import Stores, get_typestore
from skimage import data as skdata

from converseg_ros.data.extract import ExtractOptions, extract_frames
from converseg_ros.data.readers import read_dataset
from converseg_ros.data.robot_logs import RobotLogError, iter_messages

TS = get_typestore(Stores.ROS2_HUMBLE)
FRAMES = [
    cv2.resize(skdata.coffee(), (64, 48)),
    cv2.resize(skdata.chelsea(), (64, 48)),
    cv2.resize(skdata.rocket(), (64, 48)),
]


def _header(sec: int, nsec: int = 0):
    return TS.types["std_msgs/msg/Header"](
        stamp=TS.types["builtin_interfaces/msg/Time"](sec=sec, nanosec=nsec), frame_id="cam"
    )


def _image(arr: np.ndarray, enc: str, sec: int, nsec: int = 0):
    channels = 1 if arr.ndim == 2 else arr.shape[2]
    return TS.types["sensor_msgs/msg/Image"](
        header=_header(sec, nsec),
        height=arr.shape[0],
        width=arr.shape[1],
        encoding=enc,
        is_bigendian=0,
        step=arr.shape[1] * channels,
        data=arr.ravel(),
    )


def _mask(i: int) -> np.ndarray:
    m = np.zeros((48, 64), np.uint8)
    m[5 + i : 20 + i, 10:30] = 255
    return m


def _write_bag(path, storage):
    img_t, cmp_t, str_t = (
        TS.types[n].__msgtype__
        for n in ("sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage", "std_msgs/msg/String")
    )
    with Writer(path, version=9, storage_plugin=storage) as w:
        cam = w.add_connection("/wrist/image_raw", img_t, typestore=TS)
        jpg = w.add_connection("/ext/image/compressed", cmp_t, typestore=TS)
        lab = w.add_connection("/labels/mask", img_t, typestore=TS)
        txt = w.add_connection("/operator/prompt", str_t, typestore=TS)
        w.write(txt, 0, TS.serialize_cdr(TS.types["std_msgs/msg/String"](data="the object to grasp"), str_t))
        for i, frame in enumerate(FRAMES):
            t = (i + 1) * 10**9
            bgr = np.ascontiguousarray(frame[..., ::-1])
            w.write(cam, t, TS.serialize_cdr(_image(bgr, "bgr8", i + 1), img_t))
            _, enc = cv2.imencode(".png", bgr)
            cmsg = TS.types["sensor_msgs/msg/CompressedImage"](
                header=_header(i + 1), format="png", data=np.frombuffer(enc.tobytes(), np.uint8)
            )
            w.write(jpg, t, TS.serialize_cdr(cmsg, cmp_t))
            # the labeller republishes 20 ms later but keeps the camera stamp off by 5 ms
            w.write(lab, t + 2 * 10**7, TS.serialize_cdr(_image(_mask(i), "mono8", i + 1, 5_000_000), img_t))


@pytest.mark.parametrize("storage", [StoragePlugin.MCAP, StoragePlugin.SQLITE3])
def test_rosbag2_frames_masks_and_prompts(tmp_path, storage):
    bag = tmp_path / "droid_episode"
    _write_bag(bag, storage)
    opts = ExtractOptions(
        image_topics=["/wrist/image_raw"], mask_topic="/labels/mask", prompt_topic="/operator/prompt"
    )
    summary = extract_frames(bag, tmp_path / "out", opts)
    assert (summary.frames, summary.labelled) == (3, 3)
    res = read_dataset(tmp_path / "out" / "dataset.jsonl")
    assert [s.prompt for s in res.samples] == ["the object to grasp"] * 3
    for i, sample in enumerate(res.samples):
        rgb = cv2.cvtColor(cv2.imread(str(sample.image)), cv2.COLOR_BGR2RGB)
        assert np.array_equal(rgb, FRAMES[i])  # bgr8 decoded to the original RGB pixels
        target, _ = sample.load_target(rgb.shape[:2])
        assert np.array_equal(target, _mask(i) > 0)
    assert len(read_dataset(tmp_path / "out" / "items.json").samples) == 3


def test_bare_mcap_compressed_frames_every_nth(tmp_path):
    bag = tmp_path / "aisle"
    _write_bag(bag, StoragePlugin.MCAP)
    mcap_file = next(bag.glob("*.mcap"))  # a bare .mcap goes through mcap + mcap-ros2-support
    opts = ExtractOptions(image_topics=["/ext/image/compressed"], every=2)
    summary = extract_frames(mcap_file, tmp_path / "frames", opts)
    assert summary.frames == 2
    lines = [json.loads(x) for x in (tmp_path / "frames" / "frames.jsonl").read_text().splitlines()]
    assert [x["stamp_ns"] for x in lines] == [10**9, 3 * 10**9]
    rgb = cv2.cvtColor(cv2.imread(str(tmp_path / "frames" / lines[1]["image"])), cv2.COLOR_BGR2RGB)
    assert np.array_equal(rgb, FRAMES[2])
    assert not (tmp_path / "frames" / "dataset.jsonl").exists()


def test_mcap_written_by_mcap_ros2_writer(tmp_path):
    path = tmp_path / "cam.mcap"
    sep = "=" * 80
    msgdef = (
        f"std_msgs/Header header\nuint32 height\nuint32 width\nstring encoding\nuint8 is_bigendian\n"
        f"uint32 step\nuint8[] data\n{sep}\nMSG: std_msgs/Header\nbuiltin_interfaces/Time stamp\n"
        f"string frame_id\n{sep}\nMSG: builtin_interfaces/Time\nint32 sec\nuint32 nanosec\n"
    )
    with open(path, "wb") as fh:
        writer = McapRos2Writer(fh)
        schema = writer.register_msgdef("sensor_msgs/msg/Image", msgdef)
        rgba = np.dstack([FRAMES[0], np.full((48, 64), 255, np.uint8)])
        writer.write_message(
            "/cam",
            schema,
            {
                "header": {"stamp": {"sec": 7, "nanosec": 0}, "frame_id": "c"},
                "height": 48,
                "width": 64,
                "encoding": "rgba8",
                "is_bigendian": 0,
                "step": 64 * 4,
                "data": rgba.tobytes(),
            },
            log_time=1,
        )
        writer.finish()
    (msg,) = list(iter_messages(path, ["/cam"]))
    assert msg.stamp_ns == 7 * 10**9 and np.array_equal(msg.value, FRAMES[0])


def test_clear_errors(tmp_path):
    bag = tmp_path / "b"
    _write_bag(bag, StoragePlugin.MCAP)
    with pytest.raises(RobotLogError, match="not in the log"):
        list(iter_messages(bag, ["/nope"]))
    with pytest.raises(RobotLogError, match="not found"):
        list(iter_messages(tmp_path / "missing.mcap", ["/x"]))
    with pytest.raises(RobotLogError, match="needs --prompt"):
        extract_frames(bag, tmp_path / "o", ExtractOptions(["/wrist/image_raw"], mask_topic="/labels/mask"))
    (tmp_path / "junk.mcap").write_bytes(b"not an mcap file at all")
    with pytest.raises(RobotLogError, match="MCAP"):
        list(iter_messages(tmp_path / "junk.mcap", ["/x"]))


def test_extract_frames_command(tmp_path, capsys):
    from converseg_ros.training.cli import main

    bag = tmp_path / "warehouse"
    _write_bag(bag, StoragePlugin.SQLITE3)
    out = tmp_path / "ds"
    args = [
        "extract-frames",
        str(bag),
        "--image-topic",
        "/wrist/image_raw",
        "--mask-topic",
        "/labels/mask",
        "--prompt",
        "the pallet to pick",
        "--tolerance-ms",
        "1",
        "--out",
        str(out),
    ]
    assert main(args) == 0
    # the label stamps are 5 ms off the camera's: with a 1 ms tolerance nothing pairs, and it is reported
    assert "3 frames, 0 labelled" in capsys.readouterr().out
    assert main(args[:-4] + ["--out", str(out)]) == 0
    assert "3 frames, 3 labelled" in capsys.readouterr().out
    assert [s.prompt for s in read_dataset(out / "dataset.jsonl").samples] == ["the pallet to pick"] * 3
    assert main(["extract-frames", str(tmp_path / "missing"), "--image-topic", "/x", "--out", str(out)]) == 2


def test_masks_of_skipped_frames_are_not_paired_with_neighbours(tmp_path):
    bag = tmp_path / "b"
    _write_bag(bag, StoragePlugin.MCAP)
    opts = ExtractOptions(
        ["/wrist/image_raw"], mask_topic="/labels/mask", prompt="x", every=2, tolerance_ms=2000
    )  # a tolerance wider than the frame spacing
    summary = extract_frames(bag, tmp_path / "o", opts)
    assert (summary.frames, summary.labelled) == (2, 2)
    assert summary.skipped == {"mask of a frame not kept (--every / --max-frames)": 1}
    samples = read_dataset(tmp_path / "o" / "dataset.jsonl").samples
    for sample, i in zip(samples, (0, 2), strict=True):
        assert np.array_equal(sample.load_target((48, 64))[0], _mask(i) > 0)
    assert not (tmp_path / "o" / ".pending_masks").exists()
