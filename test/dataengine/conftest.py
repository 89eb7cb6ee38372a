"""Fixtures of the data-engine tests: the scripted VLM server and real photos on disk."""

from __future__ import annotations

import sys
from pathlib import Path

import cv2
import pytest

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parent.parent / "data"))  # robot_datasets: DROID layouts written by tests
from dataengine_inputs import PHOTOS, photo  # noqa: E402
from scripted_vlm import ScriptedVLM  # noqa: E402


@pytest.fixture
def scripted():
    """A fresh scripted VLM server per test (set ``.faults`` before the run)."""
    server = ScriptedVLM()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def photo_dir(tmp_path) -> Path:
    """Three real photos as JPEG/PNG files plus one corrupt file."""
    folder = tmp_path / "photos"
    folder.mkdir()
    for name in PHOTOS[:3]:
        cv2.imwrite(str(folder / f"{name}.jpg"), cv2.cvtColor(photo(name), cv2.COLOR_RGB2BGR))
    (folder / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not a png")
    return folder


