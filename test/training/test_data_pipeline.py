"""Training data pipeline: letterbox + erosion, aligned augmentation, bad items, step-indexed batches."""

import numpy as np
import pytest
from PIL import Image

from converseg_ros.data.readers import read_dataset
from converseg_ros.data.samples import Sample
from converseg_ros.training.augment import augment, swap_left_right
from converseg_ros.training.config import AugmentConfig, DataConfig
from converseg_ros.training.data import Collator, StepBatches, TrainDataset, letterbox_mask


def test_items_are_letterboxed_eroded_and_low_res(photo_data):
    samples = read_dataset(photo_data / "dataset.jsonl").samples
    plain = TrainDataset(samples, 128, DataConfig(erode_kernel=1), seed=0, train=False)[0]
    eroded = TrainDataset(samples, 128, DataConfig(), seed=0, train=False)[0]
    assert plain.sam_image.shape == (128, 128, 3) and eroded.target.shape == (32, 32)
    assert plain.qwen_image.shape[:2] == (64, 96)  # the photo at its own resolution for Qwen
    assert eroded.target.sum() < plain.target.sum() and not (eroded.target & ~plain.target).any()
    assert not plain.sam_image[:16].any()  # letterbox padding (96x64 -> 128x85, 21 rows on top)


def test_letterbox_mask_matches_image_geometry():
    mask = np.zeros((50, 100), bool)
    mask[:, :50] = True
    boxed = letterbox_mask(mask, 20)
    assert boxed.shape == (20, 20) and boxed[5:15, :10].all() and not boxed[5:15, 10:].any()
    assert not boxed[:5].any() and not boxed[15:].any()


def test_flip_mirrors_mask_and_prompt():
    rgb = np.zeros((10, 20, 3), np.uint8)
    rgb[:, :5] = 255
    mask = np.zeros((10, 20), bool)
    mask[:, :5] = True
    out_rgb, out_mask, prompt = augment(
        rgb,
        mask,
        "the Leftmost cup, left of the RIGHT plate",
        AugmentConfig(hflip=1.0),
        np.random.default_rng(0),
    )
    assert out_mask[:, 15:].all() and not out_mask[:, :15].any() and (out_rgb[out_mask] == 255).all()
    assert prompt == "the Rightmost cup, right of the LEFT plate"
    assert swap_left_right("bright light") == "bright light"


def test_crop_keeps_target_and_alignment():
    rng = np.random.default_rng(1)
    rgb = rng.integers(0, 255, (60, 80, 3), dtype=np.uint8)
    mask = np.zeros((60, 80), bool)
    mask[20:30, 50:60] = True
    for seed in range(5):
        out_rgb, out_mask, _ = augment(
            rgb, mask, "x", AugmentConfig(scale_min=0.5, scale_max=0.7), np.random.default_rng(seed)
        )
        assert out_mask.sum() == 100 and out_rgb.shape[:2] == out_mask.shape
        ys, xs = np.nonzero(out_mask)
        assert np.array_equal(out_rgb[ys.min(), xs.min()], rgb[20, 50])


def test_augmentation_is_reproducible_per_epoch(photo_data):
    samples = read_dataset(photo_data / "dataset.jsonl").samples
    cfg = DataConfig(augment=AugmentConfig(scale_min=0.6, color=0.3))
    ds = TrainDataset(samples, 128, cfg, seed=3)
    a, b, c = ds[(1, 0)], ds[(1, 0)], ds[(1, 1)]
    assert np.array_equal(a.sam_image, b.sam_image) and np.array_equal(a.target, b.target)
    assert not np.array_equal(a.sam_image, c.sam_image)


def test_bad_items_are_reported_not_raised(tmp_path, photo_data, tiny_net):
    good = read_dataset(photo_data / "dataset.jsonl").samples[0]
    (tmp_path / "corrupt.png").write_bytes(b"\x89PNG broken")
    Image.fromarray(np.zeros((7, 7), np.uint8)).save(tmp_path / "small.png")
    bad = [
        Sample("corrupt", good.image, "p", mask=tmp_path / "corrupt.png"),
        Sample("small", good.image, "p", mask=tmp_path / "small.png"),
        Sample("tokens", good.image, "<|im_end|><|im_start|>", mask=good.mask),
    ]
    ds = TrainDataset([good, *bad], 128, DataConfig(), seed=0)
    batch = Collator(tiny_net.inputs)([ds[i] for i in range(4)])
    assert batch["ids"] == [good.id] and batch["targets"].shape == (1, 32, 32)
    assert batch["qwen"]["input_ids"].shape[0] == 1 and "pixel_values" in batch["qwen"]
    (id0, e0), (id1, e1), (id2, e2) = batch["errors"]
    assert (id0, id1, id2) == ("corrupt", "small", "tokens")
    assert "not a recognised image format" in e0 and "mask is 7x7" in e1 and "special tokens" in e2


def test_step_batches_resume_and_ranks():
    full = list(StepBatches(10, 4, seed=0, start=0, end=6))
    assert list(StepBatches(10, 4, seed=0, start=3, end=6)) == full[3:]
    seen = [k for batch in full[:5] for k, _ in batch[:]]  # 20 draws = two epochs of 10
    assert sorted(seen[:10]) == list(range(10)) and sorted(seen[10:20]) == list(range(10))
    assert seen[:10] != seen[10:20]
    rank0 = list(StepBatches(8, 2, 0, 0, 2, rank=0, world=2))
    rank1 = list(StepBatches(8, 2, 0, 0, 2, rank=1, world=2))
    keys = [k for b in rank0 + rank1 for k, _ in b]
    assert sorted(keys) == list(range(8))
    with pytest.raises(ValueError, match="empty"):
        StepBatches(0, 2, 0, 0, 1)
