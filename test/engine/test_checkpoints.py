"""Checkpoints in the authors' release format load unchanged; bad ones fail naming file and key."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from converseg_ros.engine import ConverSegEngine
from converseg_ros.errors import CheckpointError
from converseg_ros.modeling import checkpoints as ckpt
from converseg_ros.modeling.presets import tiny_root

LEGACY = (  # transformers >= 4.52 module paths -> <= 4.51 ones
    ("backbone.base_model.model.model.visual.", "backbone.base_model.model.visual."),
    ("backbone.base_model.model.model.language_model.layers.", "backbone.base_model.model.model.layers."),
    ("backbone.base_model.model.model.language_model.embed_tokens.", "backbone.base_model.model.model.embed_tokens."),
    ("backbone.base_model.model.model.language_model.norm.", "backbone.base_model.model.model.norm."),
)


class NotATensor:
    """A pickled object that weights_only loading must refuse."""


@pytest.fixture(scope="module")
def release(tiny_engine) -> dict[str, Path]:
    root = tiny_root()
    return {
        "sam2": root / "ConverSeg-Net_sam2_0.torch.torch",
        "plm": root / "ConverSeg-Net_plm_0.torch",
        "lora": root / "lora_plm_adapter_0",
    }


@pytest.fixture(scope="module")
def expected(tiny_engine, photos) -> np.ndarray:
    return tiny_engine.segment_image(photos["coffee"], ["the cup on the saucer"], return_logits=True)[0].logits


def test_generating_the_tiny_model_leaves_the_callers_random_state_alone(tmp_path):
    """A training run seeds torch, then builds its model: generating the tiny files on first use (seeded
    random weights) must not reseed the run (it did: a first run in a fresh cache followed another curve)."""
    from converseg_ros.modeling.tiny import build_tiny_files

    torch.manual_seed(123)
    expected = torch.rand(4)
    torch.manual_seed(123)
    build_tiny_files(tmp_path / "tiny", seed=0)
    assert (tmp_path / "tiny" / "ConverSeg-Net_plm_0.torch").is_file()
    assert torch.equal(torch.rand(4), expected)


def _logits(overrides: dict, image: np.ndarray) -> np.ndarray:
    engine = ConverSegEngine.from_preset("tiny", device="cpu", precision="fp32", overrides=overrides)
    return engine.segment_image(image, ["the cup on the saucer"], return_logits=True)[0].logits


def _legacy(state: dict) -> dict:
    out = {}
    for key, value in state.items():
        for new, old in LEGACY:
            if key.startswith(new):
                key = old + key[len(new):]
                break
        out[key] = value
    return out


def test_release_file_names_and_layout(release):
    assert release["sam2"].is_file() and release["sam2"].name.endswith(".torch.torch")
    assert ckpt.find_checkpoint(release["sam2"].parent, "ConverSeg-Net_sam2_0.torch*") == release["sam2"]
    plm = torch.load(release["plm"], weights_only=True, mmap=True)
    assert list(plm) == ["plm"]
    keys = list(plm["plm"])
    assert keys[:2] == ["scale", "temp"] and plm["plm"]["scale"].shape == ()
    assert {"to_sparse.weight", "to_dense.0.weight", "to_dense.2.weight", "txt_norm.weight"} <= set(keys)
    assert any(k.startswith("backbone.base_model.model.model.language_model.layers.0.") for k in keys)
    assert any(".lora_A.default.weight" in k for k in keys)
    assert (release["lora"] / "adapter_config.json").is_file()


def _legacy_lora_dir(tmp_path: Path, release: dict) -> Path:
    """The release's LoRA folder as an older PEFT/transformers (<=4.51) saved it."""
    lora = tmp_path / "legacy_lora"
    shutil.copytree(release["lora"], lora)
    weights = load_file(lora / "adapter_model.safetensors")
    legacy = {k[len("backbone."):]: v for k, v in _legacy({"backbone." + k: v for k, v in weights.items()}).items()}
    assert any(k.startswith("base_model.model.model.layers.0.") for k in legacy)
    assert any(k.startswith("base_model.model.visual.") for k in legacy)
    assert not any(".language_model." in k for k in legacy)
    save_file(legacy, lora / "adapter_model.safetensors")
    return lora


@pytest.mark.parametrize("plm_layout", ["current", "legacy"])
@pytest.mark.parametrize("lora_layout", ["current", "legacy"])
def test_both_key_layouts_of_both_files_give_identical_masks(tmp_path, release, expected, photos, plm_layout,
                                                            lora_layout):
    sam2 = torch.load(release["sam2"], weights_only=True)["model"]
    plm = torch.load(release["plm"], weights_only=True)["plm"]
    torch.save(sam2, tmp_path / "bare_sam2.torch")  # bare state dicts, single .torch suffix
    overrides = {"sam2_checkpoint": str(tmp_path / "bare_sam2.torch")}
    if plm_layout == "legacy":
        assert not any(k.startswith("backbone.base_model.model.model.language_model") for k in _legacy(plm))
        torch.save(_legacy(plm), tmp_path / "legacy_plm.torch")
        overrides["plm_checkpoint"] = str(tmp_path / "legacy_plm.torch")
    if lora_layout == "legacy":
        overrides["lora"] = str(_legacy_lora_dir(tmp_path, release))
    np.testing.assert_array_equal(_logits(overrides, photos["coffee"]), expected)


def test_lora_directory_weights_are_applied(tmp_path, release, expected, photos):
    lora = tmp_path / "lora"
    shutil.copytree(release["lora"], lora)
    weights = load_file(lora / "adapter_model.safetensors")
    save_file({k: torch.zeros_like(v) if "lora_B" in k else v for k, v in weights.items()},
              lora / "adapter_model.safetensors")
    changed = _logits({"lora": str(lora)}, photos["coffee"])  # LoRA dir loads after the plm file
    assert np.abs(changed - expected).max() > 1e-3


def _mutated(tmp_path: Path, release: dict, change) -> Path:
    state = dict(torch.load(release["plm"], weights_only=True)["plm"])
    change(state)
    path = tmp_path / "plm.torch"
    torch.save({"plm": state}, path)
    return path


def test_missing_key_is_named(tmp_path, release, tiny_net):
    path = _mutated(tmp_path, release, lambda s: s.pop("to_dense.2.bias"))
    with pytest.raises(CheckpointError, match=r"plm\.torch: missing key\(s\) to_dense\.2\.bias"):
        ckpt.load_plm_weights(tiny_net.adapter, path)


def test_wrong_shape_is_named(tmp_path, release, tiny_net):
    path = _mutated(tmp_path, release, lambda s: s.update({"to_sparse.weight": torch.zeros(3, 3)}))
    with pytest.raises(CheckpointError, match=r"to_sparse\.weight has shape \(3, 3\)"):
        ckpt.load_plm_weights(tiny_net.adapter, path)


def test_unexpected_key_is_named(tmp_path, release, tiny_net):
    path = _mutated(tmp_path, release, lambda s: s.update({"extra_head.weight": torch.zeros(1)}))
    with pytest.raises(CheckpointError, match=r"unexpected key\(s\) extra_head\.weight"):
        ckpt.load_plm_weights(tiny_net.adapter, path)


def test_missing_corrupt_and_unsafe_files_are_refused(tmp_path, tiny_net):
    with pytest.raises(CheckpointError, match="not found"):
        ckpt.load_sam2_weights(tiny_net.sam, tmp_path / "absent.torch")
    corrupt = tmp_path / "corrupt.torch"
    corrupt.write_bytes(b"PK\x03\x04 definitely not a zip archive")
    with pytest.raises(CheckpointError, match="corrupt.torch"):
        ckpt.load_sam2_weights(tiny_net.sam, corrupt)
    unsafe = tmp_path / "unsafe.torch"
    torch.save({"model": {"w": torch.zeros(1)}, "payload": NotATensor()}, unsafe)
    with pytest.raises(CheckpointError, match="unsafe.torch"):
        ckpt.load_sam2_weights(tiny_net.sam, unsafe)


def test_lora_directory_missing_tensor_is_named(tmp_path, release, tiny_net):
    lora = tmp_path / "lora"
    shutil.copytree(release["lora"], lora)
    weights = load_file(lora / "adapter_model.safetensors")
    dropped = sorted(weights)[0]
    save_file({k: v for k, v in weights.items() if k != dropped}, lora / "adapter_model.safetensors")
    with pytest.raises(CheckpointError, match="missing LoRA key"):
        ckpt.load_lora_weights(tiny_net.adapter, lora)
