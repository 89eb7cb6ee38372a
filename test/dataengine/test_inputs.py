"""Inputs: a rosbag2 and a bare MCAP written here, sampled by time and by scene change; DROID episodes; shards."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from dataengine_inputs import photo, write_mcap, write_rosbag2

from converseg_ros.dataengine.inputs import InputError, InputSpec, Sampling, Shard, collect_inputs
from converseg_ros.imaging import decode_image


def _frames() -> list[np.ndarray]:
    """Eight frames, 0.5 s apart: coffee x3, chelsea x3, rocket x2 (two scene changes)."""
    return [photo("coffee")] * 3 + [photo("chelsea")] * 3 + [photo("rocket")] * 2


def test_rosbag2_sampled_by_time(tmp_path):
    bag = write_rosbag2(tmp_path / "episode", _frames())
    spec = InputSpec(bags=[str(bag)], topics=["/camera/color/image_raw"], sampling=Sampling(every_s=1.0))
    items = collect_inputs(spec, tmp_path / "run")
    stamps = [i.source["stamp_ns"] for i in items]
    assert stamps == [10**9, 2 * 10**9, 3 * 10**9, 4 * 10**9]  # every other frame of a 2 Hz stream
    first = decode_image(tmp_path / "run" / items[0].path)
    assert np.array_equal(first, photo("coffee"))  # rgb8 pixels come back exactly (PNG)
    assert all(i.id.startswith("bag_episode_camera_color_image_raw_") for i in items)


def test_mcap_sampled_by_scene_change(tmp_path):
    mcap = write_mcap(tmp_path / "wrist.mcap", _frames())
    spec = InputSpec(bags=[str(mcap)], topics=["/wrist/image/compressed"],
                     sampling=Sampling(every_s=0.0, scene_threshold=0.05))
    items = collect_inputs(spec, tmp_path / "run")
    # the first frame, then one frame per scene change: frames 0, 3 and 6
    assert [i.source["stamp_ns"] for i in items] == [10**9, int(2.5e9), 4 * 10**9]


def test_droid_episode_several_cameras(tmp_path):
    episode = tmp_path / "droid" / "LAB+abc+2024-01-01-10h-00m-00s"
    (episode / "recordings" / "MP4").mkdir(parents=True)
    serials = {"ext1_cam_serial": "111", "ext2_cam_serial": "222", "wrist_cam_serial": "333"}
    (episode / "metadata_LAB+abc.json").write_text(json.dumps({**serials, "current_task": "put the cup away"}))
    for serial, name in zip(serials.values(), ("coffee", "chelsea", "astronaut"), strict=True):
        frame = photo(name)
        h, w = frame.shape[:2]
        writer = cv2.VideoWriter(str(episode / "recordings" / "MP4" / f"{serial}.mp4"),
                                 cv2.VideoWriter_fourcc(*"mp4v"), 15.0, (w, h))
        assert writer.isOpened()
        for _ in range(30):  # 2 s at 15 Hz
            writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
        writer.release()
    spec = InputSpec(droid=[str(tmp_path / "droid")], cameras=["ext1", "wrist"], sampling=Sampling(every_s=1.0))
    items = collect_inputs(spec, tmp_path / "run")
    assert [(i.source["camera"], i.source["step"]) for i in items] == [("ext1", 0), ("ext1", 15), ("wrist", 0),
                                                                        ("wrist", 15)]
    wrist = decode_image(tmp_path / "run" / items[2].path)
    assert np.abs(wrist.astype(int) - photo("astronaut")).mean() < 12  # the wrist camera's own video


def test_shards_split_without_overlap_and_max_images(tmp_path):
    bag = write_rosbag2(tmp_path / "episode", _frames())
    base = {"bags": [str(bag)], "topics": ["/camera/color/image_raw"], "sampling": Sampling(every_s=0.0)}
    everything = {i.id for i in collect_inputs(InputSpec(**base), tmp_path / "all")}
    parts = [{i.id for i in collect_inputs(InputSpec(**base, shard=f"{k}/3"), tmp_path / f"s{k}")} for k in range(3)]
    assert len(everything) == 8 and set().union(*parts) == everything
    assert sum(len(p) for p in parts) == 8
    assert len(collect_inputs(InputSpec(**base, max_images=3), tmp_path / "cap")) == 3


def test_clear_errors(tmp_path):
    with pytest.raises(InputError, match="needs --topic"):
        collect_inputs(InputSpec(bags=[str(tmp_path)]), tmp_path / "r")
    with pytest.raises(InputError, match="i/n"):
        Shard.parse("3/3")
    with pytest.raises(InputError, match="not in the log"):
        bag = write_rosbag2(tmp_path / "b", [photo("coffee")])
        collect_inputs(InputSpec(bags=[str(bag)], topics=["/nope"]), tmp_path / "r")
    with pytest.raises(InputError, match="no episode"):
        (tmp_path / "empty").mkdir()
        collect_inputs(InputSpec(droid=[str(tmp_path / "empty")]), tmp_path / "r")
