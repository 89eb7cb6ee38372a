"""DROID as released: RLDS/TFDS shards read without TensorFlow (framing, CRCs, tf.train.Example) and raw
episodes with their task words, lab, outcome and scene, cameras aligned by trajectory.h5 timestamps."""

from __future__ import annotations

import re
import struct

import numpy as np
import pytest
from robot_datasets import DROID_IMAGES, read_mark, write_droid_raw, write_droid_rlds, write_tfrecord

from converseg_ros.data import droid_raw, rlds
from converseg_ros.data.tfrecord import TFRecordError, index_records, iter_records, masked_crc32c, parse_example
from converseg_ros.imaging import decode_image

TEXTS = [("put the marker in the pot", "place the marker into the pot", "marker to pot"),
         ("open the drawer", "pull the drawer open", ""),
         ("wipe the table", "clean the table with the cloth", "wipe")]


def test_crc32c_and_framing(tmp_path):
    import google_crc32c

    assert google_crc32c.value(b"123456789") == 0xE3069283  # the CRC-32C check value (RFC 3720)
    assert masked_crc32c(b"") == 0xA282EAD8  # crc 0, masked
    path = write_tfrecord(tmp_path / "x.tfrecord-00000-of-00001", [b"first", b"second record"])
    assert [d for _, d in iter_records(path)] == [b"first", b"second record"]
    assert [d for _, d in iter_records(path, wanted=lambda i: i == 1)] == [b"second record"]
    data = bytearray(path.read_bytes())
    data[12 + 2] ^= 0xFF  # a flipped byte inside record 0's data
    (tmp_path / "bad").write_bytes(bytes(data))
    with pytest.raises(TFRecordError, match=r"bad: record 0 fails its CRC32C check"):
        list(iter_records(tmp_path / "bad"))
    (tmp_path / "short").write_bytes(bytes(path.read_bytes()[:-3]))
    with pytest.raises(TFRecordError, match=r"short: record 1 truncated"):
        list(iter_records(tmp_path / "short"))
    (tmp_path / "len").write_bytes(struct.pack("<Q", 5) + b"\0\0\0\0" + b"first" + b"\0\0\0\0")
    with pytest.raises(TFRecordError, match="corrupt length field"):
        index_records(tmp_path / "len")
    with pytest.raises(TFRecordError, match="not a tf.train.Example"):
        parse_example(b"\x0a\xff\xff", "rec")


def test_droid_rlds_release_read(tmp_path):
    folder = write_droid_rlds(tmp_path, [(4, TEXTS[0]), (3, TEXTS[1]), (5, TEXTS[2])], shards=2)
    assert rlds.find_rlds(tmp_path) == [folder]
    layout = rlds.load_layout(folder)
    assert layout.dataset == "droid_100" and set(layout.images) == set(DROID_IMAGES)
    assert layout.instructions == tuple(f"steps/language_instruction{s}" for s in ("", "_2", "_3"))
    assert layout.metadata == ("episode_metadata/file_path", "episode_metadata/recording_folderpath")
    refs = rlds.episode_refs(layout)
    assert [(s.name[-23:], i) for s, i, _ in refs] == [
        ("tfrecord-00000-of-00002", 0), ("tfrecord-00000-of-00002", 1), ("tfrecord-00001-of-00002", 0)]
    episodes = list(rlds.iter_episodes(layout))
    assert [e.steps for e in episodes] == [4, 5, 3]  # episodes 0 and 2 in shard 0, episode 1 in shard 1
    first = episodes[0]
    assert first.instructions(0) == list(TEXTS[0]) and episodes[2].instructions(2) == list(TEXTS[1][:2])
    assert first.metadata()["file_path"].endswith("trajectory.h5")
    for camera in DROID_IMAGES:
        for step in range(first.steps):
            rgb = decode_image(first.image(camera, step))
            assert rgb.shape == (180, 320, 3) and read_mark(rgb) == step
    only = list(rlds.iter_episodes(layout, owns=lambda key: key.endswith("00001-of-00002#0")))
    assert [e.steps for e in only] == [3]


def test_droid_raw_two_labs_one_timestamp_folder(tmp_path):
    stamp = "Fri_Jul__7_09:42:23_2023"
    a = write_droid_raw(tmp_path, "AUTOLab", "success", stamp, "AUTOLab+5d05c5aa+2023-07-07-09h-42m-23s",
                        "put the marker in the pot", 3, step_frames=[2, 0, 1], stereo_only=("wrist",))
    b = write_droid_raw(tmp_path, "ILIAD", "failure", stamp, "ILIAD+8b1c2d3e+2023-07-07-09h-42m-23s",
                        "fold the towel", 3, photo_offset=1)
    assert a.name == b.name  # the same timestamp folder in two labs
    assert droid_raw.droid_episodes(tmp_path) == [a, b]
    ep_a, ep_b = (droid_raw.read_episode(f, tmp_path) for f in (a, b))
    assert (ep_a.lab, ep_a.task, ep_a.success, ep_a.scene_id) == ("AUTOLab", "put the marker in the pot", True, "3")
    assert (ep_b.lab, ep_b.success, ep_b.aligned) == ("ILIAD", False, "mp4 index")
    assert ep_a.key != ep_b.key and ep_a.aligned == "trajectory.h5 timestamps"
    assert ep_a.videos["wrist"][1] and not ep_a.videos["ext1"][1]  # stereo only for the wrist camera
    for camera in ("ext1", "ext2", "wrist"):
        frames, stamps = droid_raw.step_frames(ep_a, camera)
        assert list(frames) == [2, 0, 1]  # the h5 timestamps, not the MP4 index, decide
        assert np.allclose(stamps, [2000 / 15 * 1e6, 0, 1000 / 15 * 1e6], atol=1e3)  # ns from the h5 times
        pixels = dict(droid_raw.decode_frames(ep_a, camera, list(frames)))
        assert {k: read_mark(v) for k, v in pixels.items()} == {0: 0, 1: 1, 2: 2}
        assert all(v.shape == (96, 128, 3) for v in pixels.values())  # left view only, also from -stereo.mp4
        assert all(np.abs(v[60:, 60:].astype(int) - 200).mean() > 20 for v in pixels.values())
    frames_b, _ = droid_raw.step_frames(ep_b, "ext1")
    assert list(frames_b) == [0, 1, 2]


def test_droid_raw_bad_metadata_named(tmp_path):
    folder = write_droid_raw(tmp_path, "LAB", "success", "t", "LAB+1+t", "x", 2)
    meta = next(folder.glob("metadata_*.json"))
    meta.write_bytes(b"\xff{not json")
    with pytest.raises(droid_raw.DroidError, match=re.escape(meta.name) + ".*unreadable episode metadata"):
        droid_raw.read_episode(folder, tmp_path)
