"""bf16 autocast (forced on CPU here; the default on CUDA) keeps fp32 master weights and optimizer state."""

from __future__ import annotations

import math

import torch

from converseg_ros.engine import ConverSegEngine
from converseg_ros.modeling.checkpoints import read_state_dict, release_files
from converseg_ros.training.config import load_config
from converseg_ros.training.export import export_release
from converseg_ros.training.loop import Trainer


def test_bf16_autocast_trains_fp32_masters_and_exports(photo_data, tmp_path):
    cfg = load_config(
        None,
        [
            "model.preset=tiny",
            f"out={tmp_path / 'run'}",
            "steps=4",
            "batch_size=2",
            "save_every=4",
            "val_every=100",
            "data.val_fraction=0",
            "data.workers=0",
            "model.autocast=bf16",
            "optim.lr=1e-3",
            "optim.warmup_fraction=0",
        ],
    )
    cfg.data.train = [str(photo_data / "dataset.jsonl")]
    trainer = Trainer(cfg)
    seen = []
    trainer.hooks.append(seen.append)
    trainer.run()
    net = trainer.net
    trained = {n: p for n, p in net.named_parameters() if p.requires_grad}
    assert trained and all(p.dtype == torch.float32 for p in trained.values())
    decoder = "sam.sam_mask_decoder."
    assert any(n.startswith(decoder + "output_hypernetworks_mlps.0.") for n in trained)
    assert any(n.startswith(decoder + "transformer.") for n in trained)
    for part in ("output_hypernetworks_mlps.1.", "iou_prediction_head.", "pred_obj_score_head.", "conv_s0."):
        assert not any(n.startswith(decoder + part) for n in trained), part  # no gradient from output 0
    qwen_base = [
        p for n, p in net.adapter.named_parameters() if n.startswith("backbone.") and ".lora_" not in n
    ]
    assert qwen_base and all(p.dtype == torch.bfloat16 for p in qwen_base)  # frozen weights in bf16
    assert all(s["exp_avg"].dtype == torch.float32 for s in trainer.optimizer.state.values())
    assert net.adapter.scale.item() != 1.0  # an update of ~lr on a weight of 1.0 is not lost
    assert all(math.isfinite(r["loss"]) for r in seen)

    release = export_release(tmp_path / "run", tmp_path / "release", dtype="bf16")
    plm = read_state_dict(release["plm"], "plm")
    assert plm["to_sparse.weight"].dtype == torch.bfloat16 and plm["scale"].dtype == torch.bfloat16
    engine = ConverSegEngine.from_preset(
        "tiny", device="cpu", precision="fp32", overrides=release_files(tmp_path / "release")
    )
    assert engine.net.adapter.scale.item() == torch.tensor(net.adapter.scale.item()).bfloat16().item()
