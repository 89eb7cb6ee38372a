"""bench/gpu_benchmark.py keeps working as the engine changes: its --smoke mode runs the whole script on
the tiny preset on this CPU (the numbers are not a measurement; the GPU run is the measurement)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


# The benchmark runs on a CUDA machine without ROS: it must not import rclpy or ROS messages.
NO_ROS = """
import importlib.abc, runpy, sys
class NoRos(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("rclpy", "sensor_msgs", "std_msgs", "builtin_interfaces", "rosidl_runtime_py"):
            raise ImportError(f"the GPU benchmark imported {name}")
sys.meta_path.insert(0, NoRos())
sys.argv = sys.argv[1:]
sys.path.insert(0, sys.argv[0].rsplit("/", 1)[0])  # the script's folder, as python SCRIPT does
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def test_gpu_benchmark_smoke_writes_every_figure(tmp_path, tiny_engine):
    done = subprocess.run(
        [sys.executable, "-c", NO_ROS, str(REPO / "bench" / "gpu_benchmark.py"), "--smoke", "--device", "cpu",
         "--iters", "1", "--precisions", "fp32", "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=600,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads((tmp_path / "gpu_benchmark.json").read_text())
    run = report["runs"][0]
    assert "errors" not in run
    # the text prefix is derived (prefix minus vision, two medians): at one iteration on a loaded CPU it can
    # come out below 0; what is measured must be positive
    assert math.isfinite(run["qwen_text_prefix_ms"])
    assert run["qwen_text_prefix_ms"] == run["qwen_prefix_ms"] - run["qwen_vision_ms"]
    for key in ("sam2_encoder_ms", "qwen_vision_ms", "qwen_prefix_ms", "query_suffix_ms", "decoder_ms",
                "postprocess_ms", "first_query_sequential_ms", "first_query_overlapped_ms", "cached_query_ms",
                "queries_per_s_batch16", "loop_fps_640x480", "loop_fps_1280x720"):
        assert run[key] > 0, key
    assert run["overlap_mask_agreement"] == 1.0  # overlapped encoders give the same mask
    table = (tmp_path / "gpu_benchmark.md").read_text()
    assert "| SAM2 image encoder |" in table
    # tracked queries over 1 and 3 cameras: tracked and grounded frames, with their stages
    for cameras in (1, 3):
        for key in (f"tracked_{cameras}cam_fps_per_camera", f"grounded_{cameras}cam_fps_per_camera",
                    f"tracked_{cameras}cam_fps_per_camera_with_reground_every_30"):
            assert run[key] > 0, key
        stages = run["tracking_stages"][f"{cameras}cam"]
        assert stages["tracked"]["memory_attention_ms"] > 0 and "qwen_prefix_ms" not in stages["tracked"]
        assert stages["grounded"]["qwen_prefix_ms"] > 0
        # a grounded frame runs the language model on top of a tracked frame's work
        assert run[f"grounded_{cameras}cam_round_ms"] > run[f"tracked_{cameras}cam_round_ms"]
    assert "| 3 cam, tracked: memory_attention |" in table
    # the node's serving loop (worker + publish queue) with each query kind on 1 and 3 cameras
    for mode in ("continuous", "tracked"):
        for cameras in (1, 3):
            prefix = f"node_{mode}_{cameras}cam_"
            assert run[prefix + "fps_per_camera"] > 0 and run[prefix + "min_fps_per_camera"] > 0, prefix
            assert run[prefix + "latency_ms_median"] > 0, prefix
            assert run[prefix + "answers"] >= 2 * cameras, prefix
            assert 0 < run[prefix + "frames_answered_fraction"] <= 1, prefix
    assert "| node loop, tracked query, 3 camera(s): answers/s per camera |" in table
    assert "[gpu-bench" in done.stdout and "node loop: tracked query, 3 camera(s)" in done.stdout  # progress
