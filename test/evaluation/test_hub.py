"""The hub benchmark loader: a local copy in the hub's parquet layout, and the offline error."""

from __future__ import annotations

import io

import datasets
import numpy as np
import pytest
from PIL import Image
from skimage import data as skdata

from converseg_ros.data.hub import HubUnavailableError, load_hub_split
from converseg_ros.errors import OfflineError


def _png(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def test_local_copy_in_hub_layout(tmp_path):
    image = skdata.astronaut()[::8, ::8]
    mask = np.zeros((64, 64, 4), np.uint8)
    mask[10:20, 30:40, 3] = 255  # RGBA mask: the alpha channel is the target
    rows = {
        "id": ["a1", "a2"],
        "image": [{"bytes": _png(image), "path": None}] * 2,
        "mask": [{"bytes": _png(mask), "path": None}] * 2,
        "prompt": ["the helmet", ""],
        "concept": ["affordances", "spatial"],
    }
    features = datasets.Features(
        {
            "id": datasets.Value("string"),
            "image": datasets.Image(),
            "mask": datasets.Image(),
            "prompt": datasets.Value("string"),
            "concept": datasets.Value("string"),
        }
    )
    (tmp_path / "data").mkdir()
    datasets.Dataset.from_dict(rows, features=features).to_parquet(
        str(tmp_path / "data" / "sam_seeded-00000-of-00001.parquet")
    )
    result = load_hub_split("sam_seeded", str(tmp_path), cache_dir=str(tmp_path / "cache"))
    assert [(s.id, s.prompt, s.concept) for s in result.samples] == [
        ("a1", "the helmet", "affordances"),
        ("a2", "segment", "spatial"),
    ]
    target, _ = result.samples[0].load_target((64, 64))
    assert target.sum() == 100 and target[15, 35]
    assert (
        len(load_hub_split("sam_seeded", str(tmp_path), cache_dir=str(tmp_path / "cache"), limit=1).samples)
        == 1
    )
    with pytest.raises(HubUnavailableError, match="no split 'human_annotated'"):
        load_hub_split("human_annotated", str(tmp_path), cache_dir=str(tmp_path / "cache"))


def test_offline_without_cache_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True, raising=False)
    with pytest.raises(OfflineError, match="HF_HUB_OFFLINE is set and the dataset is not in the cache"):
        load_hub_split("sam_seeded", cache_dir=str(tmp_path / "empty-cache"))
