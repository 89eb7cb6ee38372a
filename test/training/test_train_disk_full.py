"""A full disk in training and in checkpoint export, on a real small tmpfs: the run stops with "no space left on
<folder>" naming the checkpoint it keeps, nothing half-written is left, and after space is freed ``--resume``
(or a second export) ends exactly where an uninterrupted run does."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from converseg_ros.modeling.checkpoints import read_state_dict, release_files
from converseg_ros.training import checkpoint as ck
from converseg_ros.training.cli import main

STEPS, SAVE_EVERY = 8, 4


def _mount(folder: Path, size_kib: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_kib}k", "tmpfs", str(folder)], check=True,
                   capture_output=True, text=True)


@pytest.fixture
def small_disk(tmp_path: Path):
    """A tmpfs of a chosen size (KiB) under tmp_path, unmounted afterwards; resized with ``resize``."""
    mounted: list[Path] = []

    def make(size_kib: int) -> Path:
        folder = tmp_path / f"disk{len(mounted)}"
        try:
            _mount(folder, size_kib)
        except (OSError, subprocess.CalledProcessError) as exc:
            reason = getattr(exc, "stderr", "") or exc
            pytest.skip(f"cannot mount a tmpfs here (needs root / CAP_SYS_ADMIN): {str(reason).strip()}")
        mounted.append(folder)
        return folder

    yield make
    for folder in mounted:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def resize(folder: Path, size_kib: int) -> None:
    subprocess.run(["mount", "-o", f"remount,size={size_kib}k", str(folder)], check=True)


def _args(data: Path, out: Path, *extra: str) -> list[str]:
    return ["--preset", "tiny", "--data", str(data / "dataset.jsonl"), "--out", str(out), "--steps", str(STEPS),
            "--batch-size", "2", "--save-every", str(SAVE_EVERY), "--val-fraction", "0", "--workers", "0",
            "--val-every", "1000", "--lr", "3e-3", *extra]


def _size_kib(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) // 1024 + 1


def _leftovers(folder: Path) -> list[str]:
    return [str(p) for p in folder.rglob(".*") if p.name.endswith((".part", ".old"))]


@pytest.fixture(scope="module")
def reference(photo_data, tmp_path_factory) -> Path:
    """The uninterrupted run, on an ordinary disk (one thread, as the tests: a module fixture runs before
    the autouse one_thread, and another thread count sums in another order)."""
    out = tmp_path_factory.mktemp("reference") / "run"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert main(_args(photo_data, out)) == 0
    finally:
        torch.set_num_threads(threads)
    return out


def _assert_same_end(run: Path, ref: Path) -> None:
    """Same metric curve, same final trained weights and Adam moments (bit-identical here on one CPU)."""
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    ref_rows = [json.loads(x) for x in (ref / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == list(range(1, STEPS + 1))
    assert [r["loss"] for r in rows] == [r["loss"] for r in ref_rows]
    got, want = ck.latest_checkpoint(run), ck.latest_checkpoint(ref)
    assert got.name == want.name == f"step_{STEPS:08d}"
    weights, ref_weights = load_file(got / ck.TRAINED_FILE), load_file(want / ck.TRAINED_FILE)
    assert weights.keys() == ref_weights.keys()
    for name, value in ref_weights.items():
        assert torch.equal(weights[name], value), name
    state, ref_state = ck.read_state(got), ck.read_state(want)
    for index, moments in ref_state.optimizer["state"].items():
        for key in ("exp_avg", "exp_avg_sq"):
            assert torch.equal(state.optimizer["state"][index][key], moments[key]), (index, key)


def test_training_on_a_full_disk_stops_with_the_folder_then_resumes_exactly(
    photo_data, reference, small_disk, capsys
) -> None:
    checkpoint_kib = _size_kib(ck.latest_checkpoint(reference))
    # room for the step-4 checkpoint and the small files, not for a second checkpoint
    disk = small_disk(checkpoint_kib + checkpoint_kib // 2)
    run = disk / "run"
    assert main(_args(photo_data, run)) == 2
    message = capsys.readouterr().err.strip().splitlines()[-1]
    print(f"disk {checkpoint_kib + checkpoint_kib // 2} KiB, checkpoint {checkpoint_kib} KiB: {message}")
    assert message == (f"converseg-train: error: no space left on {run / ck.CHECKPOINTS} (training stopped at step "
                       f"{STEPS}); the last checkpoint, step_{SAVE_EVERY:08d}, is intact: free space, then run "
                       "again with --resume")
    assert ck.latest_checkpoint(run).name == f"step_{SAVE_EVERY:08d}"
    assert sorted(p.name for p in (run / ck.CHECKPOINTS).iterdir()) == ["latest", f"step_{SAVE_EVERY:08d}"]
    assert not _leftovers(run)
    # a line torn by the full disk (or a kill) at the end of the metrics must not stop the resume
    with open(run / "metrics.jsonl", "a") as fh:
        fh.write('{"loss": 0.79')

    resize(disk, 4 * checkpoint_kib)  # space freed
    assert main(_args(photo_data, run, "--resume")) == 0
    _assert_same_end(run, reference)
    assert not _leftovers(run)


def test_a_disk_full_from_the_start_names_the_run_folder(photo_data, small_disk, capsys) -> None:
    """So little space that the metrics log fills it before any checkpoint: nothing to resume from, said so."""
    disk = small_disk(12)
    run = disk / "run"
    assert main(_args(photo_data, run, "--steps", "40", "--save-every", "1000")) == 2
    message = capsys.readouterr().err.strip().splitlines()[-1]
    assert message.startswith(f"converseg-train: error: no space left on {run} (training stopped at step "), message
    assert message.endswith("no checkpoint was written yet: free space, then start again"), message


def test_export_on_a_full_disk_keeps_finished_files_and_reexports_identically(
    reference, small_disk, tmp_path, capsys
) -> None:
    full = tmp_path / "full_release"
    assert main(["export", str(reference), "--to", str(full)]) == 0
    files = release_files(full)
    sam2_kib = Path(files["sam2_checkpoint"]).stat().st_size // 1024 + 1
    disk = small_disk(sam2_kib + 64)  # the SAM2 file fits, the language-adapter file does not
    out = disk / "release"
    assert main(["export", str(reference), "--to", str(out)]) == 2
    message = capsys.readouterr().err.strip().splitlines()[-1]
    print(f"disk {sam2_kib + 64} KiB: {message}")
    step_dir = ck.latest_checkpoint(reference)
    assert message == (f"converseg-train: error: no space left on {out} (export of {step_dir} stopped; finished "
                       f"and kept: ConverSeg-Net_sam2_{STEPS}.torch): free space, then export again")
    assert sorted(p.name for p in out.iterdir()) == [f"ConverSeg-Net_sam2_{STEPS}.torch"]

    resize(disk, 4 * _size_kib(full))
    assert main(["export", str(reference), "--to", str(out)]) == 0
    again = release_files(out)
    for key, wrapper in (("sam2_checkpoint", "model"), ("plm_checkpoint", "plm")):
        a, b = read_state_dict(files[key], wrapper), read_state_dict(again[key], wrapper)
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), key
    lora = load_file(str(Path(files["lora"]) / "adapter_model.safetensors"))
    lora_again = load_file(str(Path(again["lora"]) / "adapter_model.safetensors"))
    assert lora.keys() == lora_again.keys() and all(torch.equal(lora[k], lora_again[k]) for k in lora)
    assert not _leftovers(out)
