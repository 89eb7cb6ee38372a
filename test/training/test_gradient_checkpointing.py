"""Gradient checkpointing of the Qwen backbone: every layer is recomputed in the backward pass, and the
gradients stay the same."""

import dataclasses
from collections import Counter

import torch
from transformers.modeling_layers import GradientCheckpointingLayer

from converseg_ros.data.readers import read_dataset
from converseg_ros.training.config import DataConfig, ModelConfig
from converseg_ros.training.data import Collator, TrainDataset
from converseg_ros.training.losses import segmentation_loss
from converseg_ros.training.model import build_training_model


def _grads(cfg: ModelConfig, samples) -> tuple[dict[str, torch.Tensor], list[int], list[int]]:
    """Gradients of one step, and how often each Qwen layer (vision block or decoder layer) ran by the end of
    the forward and of the backward pass, counted on its sub-modules: checkpointing replays the layer's
    ``forward`` (hooks on the layer itself do not fire again) and stops the replay once the tensors the
    backward pass needs are recomputed (its last sub-modules may not run again)."""
    net = build_training_model(cfg)
    layers = [m for m in net.adapter.qwen.modules() if isinstance(m, GradientCheckpointingLayer)]
    assert layers and all(m.gradient_checkpointing == cfg.gradient_checkpointing for m in layers)
    calls = Counter()
    for index, layer in enumerate(layers):
        for name, child in layer.named_children():
            child.register_forward_hook(lambda *_, key=(index, name): calls.update([key]))

    def runs() -> list[int]:
        return [max(calls[(i, name)] for name, _ in layer.named_children()) for i, layer in enumerate(layers)]
    data = TrainDataset(samples, net.image_size, DataConfig(), seed=0)
    batch = Collator(net.inputs)([data[0], data[1]])
    with torch.no_grad():
        features = net.encode_images(net.sam_transform(batch["sam_images"]))
    torch.manual_seed(1)  # LoRA dropout is active: same masks in both runs
    sparse, dense = net.adapter(**batch["qwen"])
    masks, _ = net.decode(features, sparse, dense)
    after_forward = runs()
    segmentation_loss(masks[:, 0], batch["targets"])["loss"].backward()
    after_backward = runs()
    return {n: p.grad for n, p in net.named_parameters() if p.grad is not None}, after_forward, after_backward


def test_checkpointing_recomputes_every_layer_and_keeps_the_gradients(photo_data):
    samples = read_dataset(photo_data / "dataset.jsonl").samples[:2]
    plain_cfg = ModelConfig(preset="tiny", device="cpu")
    plain, plain_forward, plain_backward = _grads(plain_cfg, samples)
    checkpointed, ckpt_forward, ckpt_backward = _grads(
        dataclasses.replace(plain_cfg, gradient_checkpointing=True), samples
    )
    # vision blocks and decoder layers each run once forward; with checkpointing once more in backward
    assert plain_forward == plain_backward == ckpt_forward == [1] * len(plain_forward)
    assert ckpt_backward == [2] * len(ckpt_forward)
    assert set(plain) == set(checkpointed) and any(".lora_" in n for n in plain)
    for name, grad in plain.items():
        torch.testing.assert_close(checkpointed[name], grad, rtol=1e-5, atol=1e-7, msg=name)
