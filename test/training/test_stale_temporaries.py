"""Temporaries left by a writer killed with SIGKILL mid-write (``.<name>.<owner>.<random>.part``) are swept when
training, export, the tiny-model cache and the command-line tools start; a live writer's are never touched,
and a ``.old`` left between the two renames of a directory replacement is put back."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from converseg_ros.modeling.atomic import atomic_dir, atomic_path, sweep_stale
from converseg_ros.modeling.presets import tiny_root
from converseg_ros.modeling.tiny import build_tiny_files
from converseg_ros.training import checkpoint as ck
from converseg_ros.training.cli import main

WRITER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from converseg_ros.modeling.atomic import atomic_dir, atomic_path
    kind, target = sys.argv[1], Path(sys.argv[2])
    with (atomic_dir if kind == "dir" else atomic_path)(target) as tmp:
        if kind == "dir":
            (tmp / "half.bin").write_bytes(b"x" * 4096)
        else:
            tmp.write_bytes(b"x" * 4096)
        print("writing", flush=True)
        time.sleep(600)
    """
)


class Writer:
    """A process stopped in the middle of an atomic write of ``target``."""

    def __init__(self, kind: str, target: Path) -> None:
        self.proc = subprocess.Popen([sys.executable, "-c", WRITER, kind, str(target)], stdout=subprocess.PIPE,
                                     text=True)
        assert self.proc.stdout.readline().strip() == "writing"

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)


def temporaries(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(".") and p.name.endswith((".part", ".old")))


def killed(kind: str, target: Path) -> str:
    """Start a writer, kill it mid-write; the temporary it left (the target, if any, is as it was)."""
    before = set(temporaries(target.parent)) if target.parent.is_dir() else set()
    content = target.read_bytes() if target.is_file() else sorted(os.listdir(target)) if target.is_dir() else None
    writer = Writer(kind, target)
    writer.kill()
    left = sorted(set(temporaries(target.parent)) - before)
    assert len(left) == 1 and left[0].startswith(f".{target.name}."), left
    now = target.read_bytes() if target.is_file() else sorted(os.listdir(target)) if target.is_dir() else None
    assert now == content
    return left[0]


def test_sweep_keeps_live_writers_and_restores_an_interrupted_replacement(tmp_path: Path) -> None:
    folder = tmp_path / "out"
    dead_file, dead_dir = killed("file", folder / "report.json"), killed("dir", folder / "step_00000009")
    live = Writer("dir", folder / "step_00000010")
    try:
        live_tmp = [n for n in temporaries(folder) if n.startswith(".step_00000010.")]
        (folder / ".legacy.json.abc123.part").write_bytes(b"half")  # named as before owners were tagged
        foreign = folder / ".step_00000011.0badc0de-7.xyz.part"  # written on another host
        foreign.mkdir()
        # a kill between "final -> .old" and ".part -> final" of a directory replacement
        with atomic_dir(folder / "lora") as tmp:
            (tmp / "adapter.bin").write_bytes(b"v1")
        os.replace(folder / "lora", folder / f".lora.{dead_dir.split('.')[2]}.old")

        removed = sorted(p.name for p in sweep_stale(folder))
        assert removed == sorted([dead_file, dead_dir, ".legacy.json.abc123.part"])
        assert (folder / "lora" / "adapter.bin").read_bytes() == b"v1"  # the previous version is back
        assert temporaries(folder) == sorted([*live_tmp, foreign.name])  # live writer and other host kept
        assert [p.name for p in sweep_stale(folder, exclusive=True)] == [foreign.name]  # a run folder
        assert temporaries(folder) == live_tmp
    finally:
        live.kill()
    assert [p.name for p in sweep_stale(folder, names=["other"])] == []  # only the targets asked for
    assert [p.name for p in sweep_stale(folder)] == live_tmp
    assert temporaries(folder) == []


def test_training_export_and_the_tiny_cache_sweep_on_start(photo_data, tmp_path: Path) -> None:
    run = tmp_path / "run"
    args = ["--preset", "tiny", "--data", str(photo_data / "dataset.jsonl"), "--out", str(run), "--batch-size", "2",
            "--save-every", "1", "--val-fraction", "0", "--workers", "0", "--val-every", "99"]
    assert main([*args, "--steps", "2"]) == 0
    checkpoints = run / ck.CHECKPOINTS
    left = [killed("dir", checkpoints / "step_00000003"), killed("file", checkpoints / "latest")]
    left_top = killed("file", run / "config.yaml")
    assert set(left) <= set(temporaries(checkpoints)) and left_top in temporaries(run)
    assert main([*args, "--steps", "2", "--resume"]) == 0  # a finished run: starts, sweeps, has nothing to do
    assert temporaries(checkpoints) == [] and temporaries(run) == []
    assert ck.latest_checkpoint(run).name == "step_00000002"

    release = tmp_path / "release"
    left = killed("file", release / "ConverSeg-Net_plm_2.torch")
    assert main(["export", str(run), "--to", str(release)]) == 0
    assert left not in temporaries(release) and temporaries(release) == []

    cache = tiny_root()
    left = killed("dir", cache)  # a tiny-model build killed half-way (the finished cache is untouched)
    build_tiny_files(cache)
    assert left not in temporaries(cache.parent) and (cache / "TINY_FORMAT").is_file()


def test_segment_and_eval_sweep_their_output_folders(photo_data, tmp_path: Path) -> None:
    from converseg_ros.cli import segment
    from converseg_ros.evaluation import cli as eval_cli

    out, report = tmp_path / "seg", tmp_path / "report"
    left = [killed("file", out / "coffee__the-cup_mask.png"), killed("file", report / "report.json")]
    image = sorted((photo_data / "images").iterdir())[0]
    assert segment.main(["--preset", "tiny", "--device", "cpu", "--image", str(image), "--prompt", "the cup",
                         "--out", str(out), "--offline"]) == 0
    assert eval_cli.main(["--preset", "tiny", "--device", "cpu", "--items", str(photo_data / "items.json"),
                          "--out", str(report), "--limit", "1"]) == 0
    assert left[0] not in temporaries(out) and left[1] not in temporaries(report)


@pytest.mark.parametrize("target", ["a.bin", "step_1"])
def test_an_ordinary_failure_leaves_no_temporary(tmp_path: Path, target: str) -> None:
    with pytest.raises(RuntimeError), (atomic_dir if "step" in target else atomic_path)(tmp_path / target):
        raise RuntimeError("fails half-way")
    assert list(tmp_path.iterdir()) == []
