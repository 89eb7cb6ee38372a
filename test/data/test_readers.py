"""Dataset readers on small datasets written in each on-disk format."""

import json

import cv2
import numpy as np
import pytest
from PIL import Image
from skimage import data as skdata

from converseg_ros.data.masks import MaskError, erode, read_mask
from converseg_ros.data.readers import DatasetError, read_dataset


@pytest.fixture()
def photo_dir(tmp_path):
    img = skdata.coffee()[::4, ::4]  # 100 x 150
    Image.fromarray(img).save(tmp_path / "coffee.jpg")
    mask = np.zeros(img.shape[:2], np.uint8)
    cv2.ellipse(mask, (55, 40), (30, 20), 0, 0, 360, 255, -1)
    Image.fromarray(mask).save(tmp_path / "cup.png")
    return tmp_path, img.shape[:2], mask > 0


def test_jsonl_reads_relative_paths_and_reports_missing(photo_dir):
    root, hw, mask = photo_dir
    lines = [
        {"image": "coffee.jpg", "mask_merged": "cup.png", "prompt": "the cup"},
        {"image": "missing.jpg", "mask_merged": "cup.png", "prompt": "x"},
        {"image": "coffee.jpg", "mask_merged": "cup.png"},
    ]
    (root / "dataset.jsonl").write_text("\n".join(json.dumps(x) for x in lines))
    res = read_dataset(root / "dataset.jsonl")
    assert [s.prompt for s in res.samples] == ["the cup", "segment"]
    assert len(res.problems) == 1 and "missing.jpg" in res.problems[0]
    target, ignore = res.samples[0].load_target(hw)
    assert ignore is None and np.array_equal(target, mask)


def test_jsonl_without_mask_key_is_an_error(tmp_path):
    (tmp_path / "d.jsonl").write_text(json.dumps({"image": "a.jpg"}) + "\n")
    with pytest.raises(DatasetError, match="mask_merged"):
        read_dataset(tmp_path / "d.jsonl")


def test_items_json_with_concepts(photo_dir):
    root, _, _ = photo_dir
    items = {
        "dataset": "t",
        "count": 1,
        "items": [
            {
                "id": "c1",
                "image": str(root / "coffee.jpg"),
                "mask": "cup.png",
                "prompt": "cup",
                "concept": "spatial",
            }
        ],
    }
    (root / "items.json").write_text(json.dumps(items))
    res = read_dataset(root / "items.json")
    assert [(s.id, s.concept) for s in res.samples] == [("c1", "spatial")]
    assert read_dataset(root).samples[0].id == "c1"  # a folder with items.json


def test_image_folder_with_prompt_sidecars(photo_dir):
    root, _, mask = photo_dir
    (root / "ds" / "images").mkdir(parents=True)
    (root / "ds" / "masks").mkdir()
    Image.open(root / "coffee.jpg").save(root / "ds" / "images" / "coffee.png")
    Image.fromarray(mask.astype(np.uint8) * 255).save(root / "ds" / "masks" / "coffee__cup.png")
    (root / "ds" / "masks" / "coffee__cup.txt").write_text("pick up the cup\n")
    Image.fromarray(mask.astype(np.uint8) * 255).save(root / "ds" / "masks" / "coffee__plate.png")
    res = read_dataset(root / "ds")
    assert [(s.id, s.prompt) for s in res.samples] == [("coffee__cup", "pick up the cup")]
    assert "coffee__plate.png" in res.problems[0]


def test_reasonseg_polygons_and_ignore(tmp_path):
    Image.fromarray(skdata.chelsea()[::10, ::10]).save(tmp_path / "cat.jpg")  # 30 x 46
    ann = {
        "text": ["what is the animal?", "the thing that purrs"],
        "is_sentence": True,
        "shapes": [
            {"label": "target", "points": [[5, 5], [20, 5], [20, 20], [5, 20]], "shape_type": "polygon"},
            {"label": "ignore", "points": [[30, 0], [40, 0], [40, 10], [30, 10]], "shape_type": "polygon"},
        ],
    }
    (tmp_path / "cat.json").write_text(json.dumps(ann))
    res = read_dataset(tmp_path)
    assert [s.prompt for s in res.samples] == ann["text"]
    target, ignore = res.samples[0].load_target((30, 46))
    assert target[10, 10] and not target[25, 25] and target.sum() == 16 * 16
    assert ignore[5, 35] and not ignore[10, 10]


def test_mask_alpha_grayscale_corrupt_and_size(photo_dir, tmp_path):
    root, hw, mask = photo_dir
    rgba = np.zeros((*hw, 4), np.uint8)
    rgba[..., 3] = mask * 255
    rgba[..., :3] = 255  # colour says "everything": the alpha channel must win
    Image.fromarray(rgba).save(tmp_path / "rgba.png")
    assert np.array_equal(read_mask(tmp_path / "rgba.png"), mask)
    (tmp_path / "bad.png").write_bytes(b"\x89PNG not really")
    with pytest.raises(MaskError, match="corrupt"):
        read_mask(tmp_path / "bad.png")
    with pytest.raises(MaskError, match="cannot open"):
        read_mask(tmp_path / "nope.png")
    from converseg_ros.data.samples import Sample

    with pytest.raises(MaskError, match="mask is 150x100 but image is 10x10"):
        Sample("s", root / "coffee.jpg", "p", mask=root / "cup.png").load_target((10, 10))


def test_erode_5x5_once_removes_a_two_pixel_rim():
    m = np.zeros((20, 20), bool)
    m[5:15, 5:15] = True
    out = erode(m, 5, 1)
    assert out.sum() == 6 * 6 and out[7:13, 7:13].all()
    assert np.array_equal(erode(m, 1, 1), m)
