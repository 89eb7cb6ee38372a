"""bench/gpu_benchmark.py keeps working as the engine changes: its --smoke mode runs the whole script on
the tiny preset on this CPU (the numbers are not a measurement; the GPU run is the measurement)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_gpu_benchmark_smoke_writes_every_figure(tmp_path, tiny_engine):
    subprocess.run(
        [sys.executable, str(REPO / "bench" / "gpu_benchmark.py"), "--smoke", "--device", "cpu", "--iters", "1",
         "--precisions", "fp32", "--out", str(tmp_path)],
        check=True, capture_output=True, text=True, timeout=600,
    )
    report = json.loads((tmp_path / "gpu_benchmark.json").read_text())
    run = report["runs"][0]
    for key in ("sam2_encoder_ms", "qwen_vision_ms", "qwen_text_prefix_ms", "query_suffix_ms", "decoder_ms",
                "postprocess_ms", "first_query_sequential_ms", "first_query_overlapped_ms", "cached_query_ms",
                "queries_per_s_batch16", "loop_fps_640x480", "loop_fps_1280x720"):
        assert run[key] > 0, key
    assert run["overlap_mask_agreement"] == 1.0  # overlapped encoders give the same mask
    assert "| SAM2 image encoder |" in (tmp_path / "gpu_benchmark.md").read_text()
