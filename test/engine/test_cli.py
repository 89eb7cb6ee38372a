"""converseg-segment end to end on a real photo, and release resolution through the hub cache."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from skimage import data

from converseg_ros.modeling.presets import tiny_root

PROMPTS = ["segment surfaces safe to place hot items", "the cup"]


@pytest.fixture(scope="module")
def photo(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("photos") / "coffee.png"
    cv2.imwrite(str(path), cv2.cvtColor(data.coffee(), cv2.COLOR_RGB2BGR))
    return path


def _run(args: list[str], env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "converseg_ros.cli.segment", *args], capture_output=True, text=True,
        env={**os.environ, **(env or {})}, timeout=300,
    )


def _outputs(out: Path, prompt_count: int) -> list[tuple[np.ndarray, dict, np.ndarray]]:
    masks = sorted(out.glob("*_mask.png"))
    assert len(masks) == prompt_count
    results = []
    for mask_path in masks:
        base = str(mask_path)[: -len("_mask.png")]
        mask = cv2.imread(str(mask_path), cv2.IMREAD_UNCHANGED)
        regions = json.loads(Path(base + "_regions.json").read_text())
        logits = np.load(base + "_logits.npy") if Path(base + "_logits.npy").exists() else None
        assert cv2.imread(base + "_overlay.png").shape[:2] == mask.shape
        results.append((mask, regions, logits))
    return results


def test_cli_segments_a_real_photo_with_the_tiny_preset(tmp_path, photo, tiny_engine):
    out = tmp_path / "out"
    args = ["--preset", "tiny", "--image", str(photo), "--out", str(out), "--save-logits", "--device", "cpu"]
    proc = _run(args + [a for p in PROMPTS for a in ("--prompt", p)])
    assert proc.returncode == 0, proc.stderr
    assert "UNTRAINED" in proc.stderr
    results = _outputs(out, len(PROMPTS))
    for mask, regions, logits in results:
        assert mask.shape == data.coffee().shape[:2] and mask.dtype == np.uint8
        assert set(np.unique(mask)) <= {0, 255}
        assert np.array_equal(mask == 255, logits > 0)
        assert regions["mask_area"] == int((mask == 255).sum())
        assert regions["trained"] is False and regions["prompt"] in PROMPTS
    assert not np.array_equal(results[0][0], results[1][0])  # different prompts, different masks
    # same answer as the engine in this process
    expected = tiny_engine.segment_image(data.coffee(), [regions["prompt"]], return_logits=True)[0]
    np.testing.assert_allclose(results[-1][2], expected.logits, atol=1e-4)


def _fake_hub_cache(root: Path) -> Path:
    """A Hugging Face cache holding the release (tiny weights under the real names) and Qwen's metadata."""
    tiny = tiny_root()
    commit = "0" * 40
    release = root / "models--aadarsh99--ConverSeg-Net-3B"
    snapshot = release / "snapshots" / commit
    snapshot.mkdir(parents=True)
    shutil.copy(tiny / "ConverSeg-Net_sam2_0.torch.torch", snapshot / "ConverSeg-Net_sam2_90000.torch.torch")
    shutil.copy(tiny / "ConverSeg-Net_plm_0.torch", snapshot / "ConverSeg-Net_plm_90000.torch")
    shutil.copytree(tiny / "lora_plm_adapter_0", snapshot / "lora_plm_adapter_90000")
    qwen = root / "models--Qwen--Qwen2.5-VL-3B-Instruct"
    shutil.copytree(tiny / "qwen", qwen / "snapshots" / commit)  # config/tokenizer/processor only, no weights
    for repo in (release, qwen):
        (repo / "refs").mkdir()
        (repo / "refs" / "main").write_text(commit)
    return root


def test_release_preset_resolves_from_the_hub_cache_offline(tmp_path, photo, tiny_engine):
    cache = _fake_hub_cache(tmp_path / "hub")
    out = tmp_path / "out"
    tiny_sam2_config = str(tiny_root() / "sam2_tiny.yaml")  # tiny weights need the tiny SAM2 config
    proc = _run(
        ["--preset", "converseg-3b", "--offline", "--sam2-config", tiny_sam2_config, "--image", str(photo),
         "--prompt", PROMPTS[1], "--out", str(out), "--save-logits", "--device", "cpu"],
        env={"HF_HUB_CACHE": str(cache), "HF_HUB_OFFLINE": "1"},
    )
    assert proc.returncode == 0, proc.stderr
    assert "UNTRAINED" not in proc.stderr
    (_, regions, logits), = _outputs(out, 1)
    assert regions["preset"] == "converseg-3b" and regions["trained"] is True
    expected = tiny_engine.segment_image(data.coffee(), [PROMPTS[1]], return_logits=True)[0]
    np.testing.assert_allclose(logits, expected.logits, atol=1e-4)


def test_missing_release_offline_gives_a_clear_error(tmp_path, photo):
    proc = _run(
        ["--preset", "converseg-3b", "--image", str(photo), "--prompt", "x", "--out", str(tmp_path / "o")],
        env={"HF_HUB_CACHE": str(tmp_path / "empty"), "HF_HUB_OFFLINE": "1"},
    )
    assert proc.returncode == 1
    assert "aadarsh99/ConverSeg-Net-3B" in proc.stderr and "not in the Hugging Face cache" in proc.stderr
    assert "--allow-download" in proc.stderr and "-p allow_download:=true" in proc.stderr  # CLI and node
    assert "Traceback" not in proc.stderr


def test_bad_image_and_bad_prompt_report_errors(tmp_path, photo):
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8 truncated")
    proc = _run(["--preset", "tiny", "--image", str(broken), "--prompt", "x", "--out", str(tmp_path / "o")])
    assert proc.returncode == 1 and "broken.jpg" in proc.stderr and "Traceback" not in proc.stderr
    proc = _run(["--preset", "tiny", "--image", str(photo), "--prompt", " ", "--out", str(tmp_path / "o")])
    assert proc.returncode == 1 and "query is empty" in proc.stderr


def test_interactive_loop_answers_and_survives_a_bad_path(tmp_path, photo):
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, "-m", "converseg_ros.cli.segment", "--preset", "tiny", "--out", str(out)],
        input=f"{tmp_path / 'missing.png'}\nthe cup\n{photo}\nthe saucer\nq\n", capture_output=True, text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert "missing.png" in proc.stderr  # reported, loop went on
    assert len(list(out.glob("coffee__the-saucer-*_mask.png"))) == 1
