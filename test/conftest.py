"""Shared fixtures: the tiny random-weight model (built once per session) and real photos."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import pytest

# One tiny-model cache per test session, inherited by the subprocesses tests start (CLI, ROS nodes).
if "CONVERSEG_TEST_CACHE" not in os.environ:
    os.environ["CONVERSEG_TEST_CACHE"] = tempfile.mkdtemp(prefix="converseg-test-")
os.environ["CONVERSEG_CACHE"] = os.environ["CONVERSEG_TEST_CACHE"]
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never reach the hub
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

REPO = Path(__file__).resolve().parents[1]


def pytest_collection_modifyitems(config, items):
    """Tests marked ``cuda`` run where torch sees a GPU and are skipped, with the reason, elsewhere."""
    needs_gpu = [item for item in items if item.get_closest_marker("cuda")]
    if not needs_gpu:
        return
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU: torch.cuda.is_available() is False on this machine")
    for item in needs_gpu:
        item.add_marker(skip)


@pytest.fixture(scope="session")
def tiny_engine():
    """ConverSegEngine on the tiny preset (untrained, cpu, fp32)."""
    from converseg_ros.engine import ConverSegEngine

    return ConverSegEngine.from_preset("tiny", device="cpu", precision="fp32")


@pytest.fixture(scope="session")
def tiny_net(tiny_engine):
    return tiny_engine.net


@pytest.fixture(scope="session")
def tiny_release_b(tmp_path_factory) -> Path:
    """A second tiny model (seed 1: other random weights, same architecture and tokenizer) whose release files
    (SAM2 .torch, plm .torch, LoRA folder) replace the tiny preset's with ``release``."""
    from converseg_ros.modeling.tiny import build_tiny_files

    return build_tiny_files(tmp_path_factory.mktemp("release") / "tiny_b", seed=1)


@pytest.fixture(scope="session")
def corrupt_release(tmp_path_factory, tiny_release_b) -> Path:
    """A release folder whose language-adapter file is cut in half (the other files are sound)."""
    import shutil

    from converseg_ros.modeling.checkpoints import release_files

    folder = tmp_path_factory.mktemp("release") / "tiny_corrupt"
    folder.mkdir()
    for path in release_files(tiny_release_b).values():
        copy = shutil.copytree if Path(path).is_dir() else shutil.copy2
        copy(path, folder / Path(path).name)
    plm = next(folder.glob("*_plm_*.torch"))
    plm.write_bytes(plm.read_bytes()[: plm.stat().st_size // 2])
    return folder


@pytest.fixture(scope="session")
def photos() -> dict[str, np.ndarray]:
    """Real photos shipped with scikit-image."""
    from skimage import data

    return {"coffee": data.coffee(), "chelsea": data.chelsea(), "astronaut": data.astronaut()}
