"""Fixtures for training tests: single-threaded torch (the tiny model is faster so on a shared 2-core
machine) and a small dataset built from real photos."""

from __future__ import annotations

import pytest
import torch

from converseg_ros.data.demo import write_demo_dataset


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def photo_data(tmp_path_factory):
    """Four photo samples (cup, saucer, cat eyes, helmet) shrunk to a 96-px longer side."""
    return write_demo_dataset(tmp_path_factory.mktemp("photos"), max_side=96, limit=4)
