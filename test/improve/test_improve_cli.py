"""converseg-improve's refusals and its state, without the heavy stages' success: no session, a baseline that is
no release, a loop folder in use, a resume without a loop or with other arguments, and a stage that fails (an
unreachable VLM: no sample) named with its log and left resumable."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from converseg_ros.improve.cli import main
from converseg_ros.improve.recordings import find_sessions
from converseg_ros.modeling.presets import tiny_root
from converseg_ros.modeling.tiny import build_tiny_files

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "serving"))
from test_recorder import CUP, Outcome, batch, half, output, settings, wait_for  # noqa: E402

pytestmark = pytest.mark.timeout(300)


def record_session(tmp_path: Path, frames: int = 3) -> Path:
    from converseg_ros.serving.recording.recorder import HardCaseRecorder

    rec = HardCaseRecorder(settings(tmp_path))
    rec.start()
    for seq in range(1, frames + 1):
        rec.offer(batch(seq, [Outcome(CUP, output=output(half(True), 0.01))]))
    wait_for(lambda: rec.status().records == frames)
    rec.stop()
    time.sleep(0.01)
    return tmp_path / "records"


def args(records: Path, baseline: Path, out: Path, *extra: str) -> list[str]:
    return ["--recordings", str(records), "--baseline", str(baseline), "--out", str(out), "--preset", "tiny",
            "--vlm", "openai", "--base-url", "http://127.0.0.1:9/v1", "--model", "m", "--sam2", "tiny",
            "--device", "cpu", "--data-arg=--retries=1", "--data-arg=--timeout=2", "--data-arg=--backoff=0.01", *extra]


def test_refusals_and_a_failed_stage(tmp_path, capsys) -> None:  # noqa: ANN001
    baseline = build_tiny_files(tiny_root())
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(args(empty, baseline, tmp_path / "l0")) == 2
    assert "no recording session" in capsys.readouterr().err
    assert main(args(empty, tmp_path, tmp_path / "l0")) == 2
    assert "--baseline is not a release folder" in capsys.readouterr().err

    records = record_session(tmp_path)
    (session,) = find_sessions(records)[0]
    assert session.topics == ("/record/image",) and session.frames == 3
    out = tmp_path / "loop"
    assert main(args(records, baseline, out)) == 1  # the VLM is unreachable: no sample to train on
    err = capsys.readouterr().err
    assert "export: no training sample" in err, err
    state = json.loads((out / "improve.json").read_text())
    assert state["stages"]["data"]["done"] and not state["stages"]["export"]["done"]
    assert state["stages"]["data"]["counts"]["failed"] == 3 and (out / "logs" / "data.log").exists()

    assert main(args(records, baseline, out)) == 2
    assert "holds a loop already; continue it with --resume" in capsys.readouterr().err
    assert main(args(records, baseline, out, "--resume", "--steps", "5")) == 2
    assert "--resume with different train_args" in capsys.readouterr().err
    assert main(args(records, baseline, tmp_path / "none", "--resume")) == 2
    assert "holds no loop" in capsys.readouterr().err
    assert main(args(records, baseline, out, "--resume")) == 1  # the same failure, data not redone
    assert "data: done before" in capsys.readouterr().out
    assert np.isfinite(state["stages"]["data"]["seconds"])
