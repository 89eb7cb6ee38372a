"""Gradient checkpointing of the Qwen backbone changes memory use, not the gradients."""

import dataclasses

import torch

from converseg_ros.data.readers import read_dataset
from converseg_ros.training.config import DataConfig, ModelConfig
from converseg_ros.training.data import Collator, TrainDataset
from converseg_ros.training.losses import segmentation_loss
from converseg_ros.training.model import build_training_model


def _grads(cfg: ModelConfig, samples) -> dict[str, torch.Tensor]:
    net = build_training_model(cfg)
    layers = [m for m in net.adapter.qwen.modules() if hasattr(m, "gradient_checkpointing")]
    assert layers and all(m.gradient_checkpointing == cfg.gradient_checkpointing for m in layers)
    data = TrainDataset(samples, net.image_size, DataConfig(), seed=0)
    batch = Collator(net.inputs)([data[0], data[1]])
    with torch.no_grad():
        features = net.encode_images(net.sam_transform(batch["sam_images"]))
    torch.manual_seed(1)  # LoRA dropout is active: same masks in both runs
    sparse, dense = net.adapter(**batch["qwen"])
    masks, _ = net.decode(features, sparse, dense)
    segmentation_loss(masks[:, 0], batch["targets"])["loss"].backward()
    return {n: p.grad for n, p in net.named_parameters() if p.grad is not None}


def test_checkpointing_gives_the_same_gradients(photo_data):
    samples = read_dataset(photo_data / "dataset.jsonl").samples[:2]
    plain_cfg = ModelConfig(preset="tiny", device="cpu")
    plain = _grads(plain_cfg, samples)
    checkpointed = _grads(dataclasses.replace(plain_cfg, gradient_checkpointing=True), samples)
    assert set(plain) == set(checkpointed) and any(".lora_" in n for n in plain)
    for name, grad in plain.items():
        torch.testing.assert_close(checkpointed[name], grad, rtol=1e-5, atol=1e-7, msg=name)
