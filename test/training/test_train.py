"""End-to-end training with the tiny preset on real photos: overfitting, export, interrupt + resume."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from skimage import data as skdata

from converseg_ros.engine import ConverSegEngine
from converseg_ros.modeling.checkpoints import release_files
from converseg_ros.training import checkpoint as ck
from converseg_ros.training.cli import main
from converseg_ros.training.config import load_config
from converseg_ros.training.loop import Trainer
from converseg_ros.training.model import build_training_model


def _metrics(run) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def overfit_run(photo_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("overfit")
    code = main(
        [
            "--preset",
            "tiny",
            "--data",
            str(photo_data / "dataset.jsonl"),
            "--out",
            str(out),
            "--steps",
            "120",
            "--batch-size",
            "4",
            "--lr",
            "3e-3",
            "--set",
            "optim.min_lr=3e-3",
            "--val-fraction",
            "0",
            "--workers",
            "0",
            "--val-every",
            "120",
            "--save-every",
            "60",
            "--warmup-fraction",
            "0.05",
        ]
    )
    assert code == 0
    return out


def test_tiny_model_overfits_photos(overfit_run):
    rows = _metrics(overfit_run)
    assert [r["step"] for r in rows] == list(range(1, 121))
    first_loss = np.mean([r["loss"] for r in rows[:5]])
    last_loss = np.mean([r["loss"] for r in rows[-10:]])
    assert last_loss < 0.5 * first_loss, (first_loss, last_loss)
    start_iou = rows[0]["iou"]  # computed on the first batch, before any update
    final = [json.loads(x) for x in (overfit_run / "validation.jsonl").read_text().splitlines()][-1]
    assert final["split"] == "train_subset" and final["step"] == 120
    assert final["iou_first"] > start_iou + 0.3, (start_iou, final)
    assert (overfit_run / "panels" / "train_subset_step_00000120.png").stat().st_size > 1000
    assert list((overfit_run / "tb").iterdir())  # TensorBoard event file
    assert ck.latest_checkpoint(overfit_run).name == "step_00000120"


def test_export_loads_in_engine_with_the_trained_masks(overfit_run, tmp_path, tiny_net):
    release = tmp_path / "release"
    assert main(["export", str(overfit_run), "--to", str(release)]) == 0
    files = release_files(release)
    assert files["plm_checkpoint"].endswith("ConverSeg-Net_plm_120.torch")

    ckpt = ck.latest_checkpoint(overfit_run)
    cfg = load_config(ckpt / ck.CONFIG_FILE).model
    trained = build_training_model(cfg)
    ck.load_trained(trained, ckpt)
    engines = [
        ConverSegEngine(trained, decode_mode="first"),
        ConverSegEngine.from_preset(
            "tiny", device="cpu", precision="fp32", overrides=files, decode_mode="first"
        ),
        ConverSegEngine(tiny_net, decode_mode="first"),
    ]
    image = skdata.coffee()[::4, ::4]
    prompts = ["the cup of coffee", "the saucer the cup stands on"]
    ours, exported, untrained = (
        [o.logits for o in e.segment_image(image, prompts, return_logits=True)] for e in engines
    )
    for a, b, c in zip(ours, exported, untrained, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-4)
        assert np.array_equal(a > 0, b > 0)
        assert not np.allclose(a, c, atol=1e-2)  # the release carries the fine-tuned weights


def _cfg(photo_data, out, **over):
    cfg = load_config(
        None,
        [
            "model.preset=tiny",
            f"out={out}",
            "steps=8",
            "batch_size=2",
            "save_every=4",
            "val_every=1000",
            "data.val_fraction=0",
            "data.workers=0",
            "optim.lr=3e-3",
            "optim.warmup_fraction=0.25",
        ]
        + [f"{k}={v}" for k, v in over.items()],
    )
    cfg.data.train = [str(photo_data / "dataset.jsonl")]
    return cfg


class _StopAt:
    def __init__(self, step: int, error: type[BaseException]):
        self.step, self.error = step, error

    def __call__(self, record: dict) -> None:
        if record["step"] == self.step:
            raise self.error(f"stop at {self.step}")


def test_interrupt_crash_and_resume_continue_the_same_curve(photo_data, tmp_path):
    reference = tmp_path / "reference"
    Trainer(_cfg(photo_data, reference, **{"data.workers": 1})).run()  # through a DataLoader worker
    run = tmp_path / "run"
    # Ctrl-C after step 3: a checkpoint of step 3 is written on the way out
    with pytest.raises(KeyboardInterrupt):
        Trainer(_cfg(photo_data, run), hooks=[_StopAt(3, KeyboardInterrupt)]).run()
    assert ck.latest_checkpoint(run).name == "step_00000003"
    # resume, then crash hard after step 6: nothing is saved, the periodic checkpoint of step 4 remains
    with pytest.raises(RuntimeError):
        Trainer(_cfg(photo_data, run), resume=True, hooks=[_StopAt(6, RuntimeError)]).run()
    assert ck.latest_checkpoint(run).name == "step_00000004"
    assert [r["step"] for r in _metrics(run)] == list(range(1, 7))
    # the documented command line resumes to the end
    assert (
        main(
            [
                "--preset",
                "tiny",
                "--data",
                str(photo_data / "dataset.jsonl"),
                "--out",
                str(run),
                "--steps",
                "8",
                "--resume",
            ]
        )
        == 0
    )

    ref, got = _metrics(reference), _metrics(run)
    assert [r["step"] for r in got] == list(range(1, 9))
    assert [r["lr"] for r in got] == [r["lr"] for r in ref]
    np.testing.assert_allclose([r["loss"] for r in got], [r["loss"] for r in ref], rtol=1e-4, atol=1e-6)
    # the resumed run ends where the uninterrupted one does: trained weights and both Adam moments
    # (measured: bit-identical; the tolerances only allow for other BLAS builds)
    final_ref = ck.read_state(ck.latest_checkpoint(reference))
    final_run = ck.read_state(ck.latest_checkpoint(run))
    assert final_ref.step == final_run.step == 8
    weights_ref = load_file(ck.latest_checkpoint(reference) / ck.TRAINED_FILE)
    weights_run = load_file(ck.latest_checkpoint(run) / ck.TRAINED_FILE)
    assert weights_ref.keys() == weights_run.keys() and any(".lora_" in k for k in weights_ref)
    for name, value in weights_ref.items():
        torch.testing.assert_close(weights_run[name], value, rtol=1e-5, atol=1e-7, msg=name)
    moments_ref, moments_run = final_ref.optimizer["state"], final_run.optimizer["state"]
    assert moments_ref.keys() == moments_run.keys() and 0 < len(moments_ref) <= len(weights_ref)
    for index, value in moments_ref.items():
        assert int(moments_run[index]["step"]) == int(value["step"]) == 8
        for moment, atol in (("exp_avg", 1e-9), ("exp_avg_sq", 1e-12)):
            torch.testing.assert_close(
                moments_run[index][moment], value[moment], rtol=1e-4, atol=atol, msg=f"{moment} of {index}"
            )


def test_bad_samples_are_reported_and_training_continues(photo_data, tmp_path, caplog):
    (tmp_path / "broken.png").write_bytes(b"\x89PNG truncated")
    lines = [
        json.dumps(
            {
                "image": str(photo_data / "images" / "coffee.png"),
                "mask_merged": str(photo_data / "masks" / "000_coffee.png"),
                "prompt": "the cup",
            }
        ),
        json.dumps(
            {"image": str(photo_data / "images" / "coffee.png"), "mask_merged": "broken.png", "prompt": "cup"}
        ),
        json.dumps({"image": "missing.png", "mask_merged": "broken.png", "prompt": "x"}),
    ]
    (tmp_path / "data.jsonl").write_text("\n".join(lines) + "\n")
    cfg = _cfg(tmp_path, tmp_path / "run", steps=4, batch_size=1)
    cfg.data.train = [str(tmp_path / "data.jsonl")]
    with caplog.at_level("WARNING"):
        Trainer(cfg).run()
    rows = _metrics(tmp_path / "run")
    assert [r["step"] for r in rows] == [1, 2, 3, 4]
    assert sorted(r["batch"] for r in rows) == [0, 0, 1, 1]  # the broken item's steps made no update
    assert all("loss" in r for r in rows if r["batch"])
    assert "missing.png" in (tmp_path / "run" / "data_problems.txt").read_text()
    assert sum("skipped sample" in m and "not a recognised" in m for m in caplog.messages) == 1  # once
