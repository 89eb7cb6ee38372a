"""Inputs: rosbag2 / MCAP sampled by time and scene change; DROID raw and RLDS episodes with the robot's task
words; ids that cannot collide; duplicates left out; shards that own whole episodes."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from dataengine_inputs import photo, write_mcap, write_rosbag2
from robot_datasets import marked, read_mark, write_droid_raw, write_droid_rlds

from converseg_ros.dataengine.inputs import InputError, InputSpec, Sampling, Shard, collect_inputs
from converseg_ros.imaging import decode_image

TASKS = [("put the marker in the pot", "marker into the pot", ""), ("open the drawer", "", "")]


def _frames() -> list[np.ndarray]:
    """Eight distinct frames, 0.5 s apart: coffee x3, chelsea x3, rocket x2 (two scene changes)."""
    names = ["coffee"] * 3 + ["chelsea"] * 3 + ["rocket"] * 2
    return [marked(photo(n), k % 3) if k % 3 else photo(n) for k, n in enumerate(names)]


def test_rosbag2_sampled_by_time(tmp_path):
    bag = write_rosbag2(tmp_path / "episode", _frames())
    spec = InputSpec(bags=[str(bag)], topics=["/camera/color/image_raw"], sampling=Sampling(every_s=1.0))
    items, report = collect_inputs(spec, tmp_path / "run")
    stamps = [i.source["stamp_ns"] for i in items]
    assert stamps == [10**9, 2 * 10**9, 3 * 10**9, 4 * 10**9]  # every other frame of a 2 Hz stream
    first = decode_image(tmp_path / "run" / items[0].path)
    assert np.array_equal(first, photo("coffee"))  # rgb8 pixels come back exactly (PNG)
    assert all(i.id.startswith("bag_episode_camera_color_image_raw_") for i in items)
    assert report.units == report.owned == 1 and not report.duplicates


def test_rosbag2_instruction_topic(tmp_path):
    tasks = {0.5: "pick up the cup", 2.2: "put the cup in the sink"}
    bag = write_rosbag2(tmp_path / "episode", _frames()[:4], instructions=tasks)
    spec = InputSpec(bags=[str(bag)], topics=["/camera/color/image_raw"], sampling=Sampling(every_s=0.0),
                     instruction_topic="/task")
    items, _ = collect_inputs(spec, tmp_path / "run")
    by_stamp = {i.source["stamp_ns"]: i.instructions for i in items}
    assert by_stamp == {10**9: ["pick up the cup"], int(1.5e9): ["pick up the cup"],
                        2 * 10**9: ["pick up the cup"], int(2.5e9): ["put the cup in the sink"]}


def test_mcap_sampled_by_scene_change(tmp_path):
    mcap = write_mcap(tmp_path / "wrist.mcap", [photo(n) for n in ["coffee"] * 3 + ["chelsea"] * 3 + ["rocket"] * 2])
    spec = InputSpec(bags=[str(mcap)], topics=["/wrist/image/compressed"],
                     sampling=Sampling(every_s=0.0, scene_threshold=0.05))
    items, _ = collect_inputs(spec, tmp_path / "run")
    # the first frame, then one frame per scene change: frames 0, 3 and 6
    assert [i.source["stamp_ns"] for i in items] == [10**9, int(2.5e9), 4 * 10**9]


def test_droid_raw_two_labs_same_timestamp_all_cameras(tmp_path):
    root, stamp = tmp_path / "droid", "Fri_Jul__7_09:42:23_2023"
    write_droid_raw(root, "AUTOLab", "success", stamp, "AUTOLab+5d05c5aa+2023-07-07-09h-42m-23s",
                    "put the marker in the pot", 3, step_frames=[2, 0, 1], stereo_only=("wrist",))
    write_droid_raw(root, "ILIAD", "failure", stamp, "ILIAD+8b1c2d3e+2023-07-07-09h-42m-23s", "fold the towel", 3,
                    photo_offset=1)
    spec = InputSpec(droid=[str(root)], sampling=Sampling(every_s=0.0))
    items, report = collect_inputs(spec, tmp_path / "run")
    assert len(items) == 18 and len({i.id for i in items}) == 18  # 2 episodes x 3 cameras x 3 steps
    assert {i.source["lab"] for i in items} == {"AUTOLab", "ILIAD"}
    for item in items:
        rgb = decode_image(tmp_path / "run" / item.path)
        assert rgb.shape == (96, 128, 3)  # left views only
        assert read_mark(rgb) == item.source["frame"]
        if item.source["lab"] == "AUTOLab":
            assert item.instructions == ["put the marker in the pot"] and item.source["success"] is True
            assert item.source["frame"] == [2, 0, 1][item.source["step"]]  # aligned by trajectory.h5 timestamps
            assert item.source["aligned"] == "trajectory.h5 timestamps"
        else:
            assert item.source["frame"] == item.source["step"] and item.source["aligned"] == "mp4 index"
            assert item.source["success"] is False and item.instructions == ["fold the towel"]
    assert report.units == 2


def test_rlds_release_cameras_instructions_and_shards(tmp_path):
    write_droid_rlds(tmp_path / "tfds", [(3, TASKS[0]), (2, TASKS[1]), (3, TASKS[0])], shards=2)
    spec = dict(rlds=[str(tmp_path / "tfds")], sampling=Sampling(every_s=0.0))
    items, report = collect_inputs(InputSpec(**spec), tmp_path / "all", progress=True)
    assert len(items) == 3 * (3 + 2 + 3) and report.units == 3
    assert {i.source["camera"] for i in items} == {"exterior_image_1_left", "exterior_image_2_left",
                                                   "wrist_image_left"}
    first = [i for i in items if i.source["episode_key"].endswith("00000-of-00002#0")]
    assert all(i.instructions == ["put the marker in the pot", "marker into the pot"] for i in first)
    assert all(read_mark(decode_image(tmp_path / "all" / i.path)) == i.source["step"] for i in items)
    wrist_only, _ = collect_inputs(InputSpec(**spec, cameras=["wrist"]), tmp_path / "w")
    assert {i.source["camera"] for i in wrist_only} == {"wrist_image_left"}
    # --droid on the RLDS release is recognised too
    assert len(collect_inputs(InputSpec(droid=[str(tmp_path / "tfds")], sampling=Sampling(0.0)), None)[0]) == 24
    parts = [collect_inputs(InputSpec(**spec, shard=f"{k}/2"), tmp_path / f"s{k}")[0] for k in range(2)]
    assert sorted(i.id for p in parts for i in p) == sorted(i.id for i in items)
    owners = {}
    for k, part in enumerate(parts):
        for item in part:
            assert owners.setdefault(item.source["episode_key"], k) == k  # whole episodes per shard


def test_equal_file_names_in_two_folders_and_duplicates(tmp_path):
    for cam in ("camA", "camB"):
        (tmp_path / cam).mkdir()
        cv2.imwrite(str(tmp_path / cam / "000001.png"), cv2.cvtColor(photo("coffee" if cam == "camA" else "rocket"),
                                                                      cv2.COLOR_RGB2BGR))
    cv2.imwrite(str(tmp_path / "camB" / "000002.png"), cv2.cvtColor(photo("coffee"), cv2.COLOR_RGB2BGR))
    spec = InputSpec(images=[str(tmp_path / "camA"), str(tmp_path / "camB")])
    items, report = collect_inputs(spec, tmp_path / "run")
    assert len(items) == 2 and items[0].id != items[1].id  # camB's 000001 is not lost
    assert [d["id"] for d in report.duplicates] == [report.duplicates[0]["id"]] and len(report.duplicates) == 1
    assert report.duplicates[0]["same_as"] == items[0].id  # camB/000002 is a byte copy of camA/000001


def test_shards_split_without_overlap_and_max_images(tmp_path):
    bags = [write_rosbag2(tmp_path / f"episode{k}", _frames()[k::3]) for k in range(3)]
    base = {"bags": [str(b) for b in bags], "topics": ["/camera/color/image_raw"], "sampling": Sampling(every_s=0.0)}
    everything = {i.id for i in collect_inputs(InputSpec(**base), tmp_path / "all")[0]}
    parts = [{i.id for i in collect_inputs(InputSpec(**base, shard=f"{k}/3"), tmp_path / f"s{k}")[0]}
             for k in range(3)]
    assert len(everything) == 8 and set().union(*parts) == everything
    assert sum(len(p) for p in parts) == 8
    assert len(collect_inputs(InputSpec(**base, max_images=3), tmp_path / "cap")[0]) == 3
    assert Shard.parse("1/3").owns("x") in (True, False)


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
    with pytest.raises(InputError, match="no TFDS dataset"):
        collect_inputs(InputSpec(rlds=[str(tmp_path / "empty")]), tmp_path / "r")
