"""The synthetic camera video: its known motion is the real one, its bag reads back as recorded."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from skimage import data

from converseg_ros.data.robot_logs import iter_messages
from converseg_ros.data.rosbag_writer import write_image_bag, write_video_bag
from converseg_ros.data.synthetic_video import (
    Window,
    camera_sweep,
    consistency_iou,
    make_video,
    warp_mask,
)


@pytest.fixture(scope="module")
def sweep():
    photo = data.coffee()  # 400 x 600
    cup = np.zeros(photo.shape[:2], bool)
    cup[60:260, 180:420] = True  # a region of the photo whose position in every frame is known
    return camera_sweep(photo, n_frames=10, size=(120, 160), region=cup)


def test_known_motion_carries_pixels_and_regions_to_the_next_frame(sweep):
    for t in range(len(sweep) - 1):
        motion = sweep.motion(t)
        assert consistency_iou(sweep.regions[t], sweep.regions[t + 1], motion) > 0.97
        # the image content itself moves by the motion: frame t warped onto frame t+1 matches it
        moved = cv2.warpAffine(sweep.frames[t], motion, (160, 120), flags=cv2.INTER_LINEAR)
        _, seen = warp_mask(np.ones((120, 160), bool), motion)
        inner = cv2.erode(seen.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
        error = np.abs(moved.astype(float) - sweep.frames[t + 1]).mean(axis=2)[inner].mean()
        unmoved = np.abs(sweep.frames[t].astype(float) - sweep.frames[t + 1]).mean(axis=2)[inner].mean()
        assert error < 6 and error < unmoved / 2, (t, error, unmoved)


def test_the_camera_moves_smoothly_and_zooms(sweep):
    centres = np.array([m @ [79.5, 59.5, 1] for m in sweep.to_photo])
    steps = np.linalg.norm(np.diff(centres, axis=0), axis=1)
    assert steps.min() > 0.5 and steps[0] < steps[len(steps) // 2] > steps[-1]  # eases in and out
    scales = [m[0, 0] for m in sweep.to_photo]
    assert scales[-1] == pytest.approx(scales[0] / 1.25)
    assert all(a > b for a, b in zip(scales, scales[1:], strict=False))


def test_consistency_iou_cases():
    mask = np.zeros((40, 50), bool)
    mask[10:20, 10:30] = True
    shift = np.array([[1.0, 0, 5], [0, 1.0, 3]])
    moved = np.zeros_like(mask)
    moved[13:23, 15:35] = True
    assert consistency_iou(mask, moved, shift) == 1.0
    assert consistency_iou(mask, mask, shift) == pytest.approx(
        (7 * 15) / (10 * 20 * 2 - 7 * 15))
    assert consistency_iou(np.zeros_like(mask), np.zeros_like(mask), shift) == 1.0
    far = np.zeros_like(mask)
    far[30:, 40:] = True
    assert consistency_iou(mask, far, shift) == 0.0
    # what frame t never saw does not count against frame t+1
    entering = moved.copy()
    entering[:3, :] = True
    assert consistency_iou(mask, entering, shift) == 1.0


def test_window_must_stay_on_the_photo():
    photo = data.coffee()
    with pytest.raises(ValueError, match="leaves"):
        make_video(photo, 3, (60, 80), Window(300, 200, 200), Window(580, 200, 200))
    with pytest.raises(ValueError, match="2 frames"):
        make_video(photo, 1, (60, 80), Window(300, 200, 200), Window(300, 200, 200))


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_video_bag_reads_back_as_recorded(tmp_path, sweep, storage):
    folder = write_video_bag(tmp_path / "sweep", sweep, topic="/head/color/image_raw", rate_hz=20.0,
                             storage=storage)
    messages = list(iter_messages(folder, ["/head/color/image_raw"]))
    assert len(messages) == len(sweep)
    for k, (msg, frame) in enumerate(zip(messages, sweep.frames, strict=True)):
        assert np.array_equal(msg.value, frame)
        assert msg.stamp_ns - messages[0].stamp_ns == k * 50_000_000
    truth = json.loads((folder / "motion.json").read_text())
    assert truth["photo_shape"] == [400, 600] and len(truth["motion_to_next"]) == len(sweep) - 1
    np.testing.assert_allclose(truth["motion_to_next"][3], sweep.motion(3))
    assert not (tmp_path / "sweep.partial").exists()


def test_bag_writer_refuses_bad_input(tmp_path, sweep):
    with pytest.raises(FileExistsError):
        write_image_bag(tmp_path, sweep.frames)
    with pytest.raises(ValueError, match="uint8 RGB"):
        write_image_bag(tmp_path / "gray", [np.zeros((4, 4), np.uint8)])
    with pytest.raises(ValueError, match="storage"):
        write_image_bag(tmp_path / "x", sweep.frames, storage="rosbag1")
