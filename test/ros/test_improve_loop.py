"""The whole loop on the tiny preset: converseg_node serves a baseline release and records hard cases from a
moving camera in two sessions; ``converseg-improve`` turns them into samples with the scripted VLM server
(the data engine's stand-in for a paid API), splits by session, fine-tunes from the baseline, is killed during
training and continued with ``--resume``, and gates the result; a promoted release is swapped into the running
node with ``converseg-query --swap``. The figures (recorded frames, samples, steps, verdict, swap gap and
memory) go to $CONVERSEG_REPORT_DIR/improve_loop.json when set."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from camera_helpers import set_parameters
from ros_helpers import Collector, spin_for, spin_until
from ros_nodes import REPO, start_camera, start_node

from converseg_ros.data.rosbag_writer import write_video_bag
from converseg_ros.data.synthetic_video import camera_sweep
from converseg_ros.modeling.presets import tiny_root
from converseg_ros.modeling.tiny import build_tiny_files
from converseg_ros.msg import ModelStatus, SegmentationResult
from converseg_ros.ros.msgs import qos

pytestmark = pytest.mark.timeout(1200)
NS = "/cs_loop"
NODE = f"{NS}/converseg_node"
TRAIN = ["--steps", "60", "--batch-size", "4", "--lr", "3e-4", "--train-set", "optim.min_lr=3e-4",
         "--train-set", "optim.warmup_fraction=0.05", "--train-set", "loss.bce=0.2", "--train-set", "loss.dice=1.0",
         "--train-set", "data.val_fraction=0", "--train-set", "data.workers=0", "--train-set", "val_every=1000",
         "--train-set", "save_every=20", "--decode-mode", "first"]


def camera(bag: Path) -> subprocess.Popen:
    return start_camera(["--bag", str(bag)], f"{NS}/image", 10, output=subprocess.DEVNULL)


def improve(args: list[str], log: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "converseg_ros.improve.cli", *args], cwd="/",
                            stdout=open(log, "a"), stderr=subprocess.STDOUT)  # noqa: SIM115


def test_record_improve_promote_and_swap(ros, photos, tmp_path) -> None:  # noqa: ANN001
    sys.path.insert(0, str(REPO / "test" / "dataengine"))
    from scripted_vlm import ScriptedVLM

    baseline = build_tiny_files(tiny_root())  # the tiny preset's own release files: what the robot runs
    records, work = tmp_path / "records", tmp_path / "loop"
    videos = [write_video_bag(tmp_path / f"sweep{n}", camera_sweep(photos["coffee"], n_frames=n, size=(120, 160)))
              for n in (30, 37)]  # two passes over the scene, no frame in both
    params = ["-p", f"release:={baseline}", "-p", "record.enabled:=false", "-p", f"record.dir:={records}",
              "-p", "record.reasons:=['low_score']", "-p", "record.min_score:=1.0", "-p", "record.min_interval_s:=0.4",
              "-p", "record.chunk_s:=1.0", "-p", "query:=the cup on the saucer"]
    node = start_node(ros, NS, params, tmp_path / "converseg_node.log")
    results = Collector(ros, SegmentationResult, f"{NS}/result")
    statuses = Collector(ros, ModelStatus, f"{NS}/model_status", qos.latched_qos())
    report: dict = {}
    try:
        for video in videos:  # a recording session per pass
            cam = camera(video)
            assert spin_until(ros, lambda: len(results.items) >= 3, 60.0)
            set_parameters(ros, NODE, **{"record.enabled": True})
            spin_for(ros, 8.0)
            set_parameters(ros, NODE, **{"record.enabled": False})
            cam.terminate()
            cam.wait(10)
        sessions = sorted(p for p in records.iterdir() if (p / "metadata.yaml").exists())
        assert len(sessions) == 2

        vlm = ScriptedVLM()
        url = vlm.start()
        log = tmp_path / "improve.log"
        args = ["--recordings", str(records), "--baseline", str(baseline), "--out", str(work), "--preset", "tiny",
                "--vlm", "openai", "--base-url", url, "--model", "scripted", "--sam2", "tiny", "--device", "cpu",
                "--eval-fraction", "0.5", "--data-arg=--backoff=0.05", "--data-arg=--workers=2", *TRAIN]
        try:
            t0 = time.monotonic()
            first = improve(args, log)
            checkpoints = work / "train" / "checkpoints"  # (step_<8 digits>, every 20 steps)
            saved = lambda: any((p / "state.pt").exists() for p in checkpoints.glob("step_*"))  # noqa: E731
            assert spin_until(ros, lambda: saved() or first.poll() is not None, 900.0)
            assert first.poll() is None, log.read_text()[-3000:]
            first.send_signal(signal.SIGTERM)  # killed while training
            assert first.wait(120) == 130, log.read_text()[-3000:]
            state = json.loads((work / "improve.json").read_text())
            assert [s for s, v in state["stages"].items() if v["done"]] == ["data", "export"]
            second = improve([*args, "--resume"], log)
            code = second.wait(900)
            elapsed = time.monotonic() - t0
        finally:
            vlm.stop()
        out = log.read_text()
        assert code in (0, 3), out[-4000:]
        assert "data: done before" in out and "export: done before" in out and "train: continuing" in out, out
        train_log = (work / "logs" / "train.log").read_text()
        commands = [line for line in train_log.splitlines() if line.startswith("$ ")]
        assert len(commands) == 2 and commands[1].endswith("--resume"), commands
        state = json.loads((work / "improve.json").read_text())
        stages = state["stages"]
        promote = stages["promote"]
        assert promote["promoted"] == (code == 0) and int(stages["train"]["steps"]) == 60
        assert stages["export"]["groups"] == {"train": 1, "eval": 1}  # one session each side
        report = {"recorded_frames": stages["data"]["frames"], "data": stages["data"]["counts"],
                  "exported": stages["export"]["exported"], "train_steps": 60, "verdict": promote["summary"],
                  "seconds": {k: v["seconds"] for k, v in stages.items()}, "wall_s": round(elapsed, 1)}
        if code == 0:
            assert out.strip().splitlines()[-2] == f"promoted: {work / 'release'}"
            cam = camera(videos[0])  # the robot keeps looking while the model changes
            seen = len(results.items)
            assert spin_until(ros, lambda: len(results.items) >= seen + 5, 60.0)
            swap = subprocess.Popen([sys.executable, "-m", "converseg_ros.ros.tools.client", "--swap",
                                     promote["release"], "--namespace", NS], cwd="/", stdout=subprocess.PIPE,
                                    stderr=subprocess.STDOUT, text=True)
            assert spin_until(ros, lambda: swap.poll() is not None, 300.0)
            swapped = swap.communicate()[0]
            assert swap.returncode == 0 and "serving tiny@release" in swapped, swapped
            assert spin_until(ros, lambda: results.items[-1].model == "tiny@release", 60.0)
            cam.terminate()
            cam.wait(10)
            final = [s for s in statuses.items if s.state == "serving" and s.model == "tiny@release"][-1]
            report["swap"] = {"gap_frames": final.gap_frames, "gap_ms": round(final.gap_ms),
                              "load_s": round(final.load_s, 2), "rss_mb": [round(final.rss_before_mb),
                                                                           round(final.rss_peak_mb),
                                                                           round(final.rss_after_mb)]}
        else:
            assert out.strip().splitlines()[-1].startswith("not promoted: ")
        print(f"\nthe loop: {json.dumps(report)}")
    finally:
        assert node.stop() in (0, -2), node.output()[-3000:]
    folder = os.environ.get("CONVERSEG_REPORT_DIR")
    if folder:
        Path(folder, "improve_loop.json").write_text(json.dumps(report, indent=1))
