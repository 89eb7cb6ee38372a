"""Learning-rate schedule, weight-decay groups and the loss on hand-checked cases."""

import math

import pytest
import torch
from torch import nn

from converseg_ros.training.config import OptimConfig
from converseg_ros.training.losses import batch_iou, dice_loss, segmentation_loss
from converseg_ros.training.schedule import build_optimizer, build_scheduler, lr_at, param_groups


def test_warmup_then_cosine_to_min_lr():
    cfg = OptimConfig(lr=1e-4, min_lr=1e-6, warmup_fraction=0.03)
    total = 1000  # 30 warm-up updates
    lrs = [lr_at(s, total, cfg) for s in range(total)]
    assert lrs[0] == pytest.approx(1e-4 / 30) and lrs[29] == pytest.approx(1e-4)
    assert all(b > a for a, b in zip(lrs[:30], lrs[1:30], strict=False))
    assert all(b <= a for a, b in zip(lrs[30:], lrs[31:], strict=False))
    assert lrs[-1] == pytest.approx(1e-6)
    mid = 30 + (total - 30 - 1) / 2
    assert lr_at(math.ceil(mid), total, cfg) == pytest.approx((1e-4 + 1e-6) / 2, rel=0.01)


def test_scheduler_follows_lr_at():
    model = nn.Linear(2, 2)
    cfg = OptimConfig(lr=0.1, min_lr=0.001, warmup_fraction=0.2)
    opt = build_optimizer(model, cfg)
    sched = build_scheduler(opt, 10, cfg)
    seen = []
    for _ in range(10):
        seen.append(sched.get_last_lr()[0])
        opt.step()
        sched.step()
    assert seen == pytest.approx([lr_at(s, 10, cfg) for s in range(10)])


class _Toy(nn.Module):
    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(1.0))
        self.proj = nn.Linear(4, 4)
        self.norm = nn.LayerNorm(4)
        self.tokens = nn.Embedding(3, 4)
        self.frozen = nn.Linear(4, 4).requires_grad_(False)


def test_no_weight_decay_on_norms_scalars_biases_embeddings():
    toy = _Toy()
    decay, plain = param_groups(toy, 0.05)
    assert decay["weight_decay"] == 0.05 and plain["weight_decay"] == 0.0
    assert [p is toy.proj.weight for p in decay["params"]] == [True]
    assert {id(p) for p in plain["params"]} == {
        id(toy.scale),
        id(toy.proj.bias),
        id(toy.norm.weight),
        id(toy.norm.bias),
        id(toy.tokens.weight),
    }


def test_small_updates_survive_in_fp32():
    """The reference's bf16 parameters lose updates of order lr; fp32 master weights keep them."""
    p32 = nn.Parameter(torch.tensor(1.0))
    p16 = nn.Parameter(torch.tensor(1.0, dtype=torch.bfloat16))
    for p in (p32, p16):
        opt = torch.optim.AdamW([p], lr=1e-4, weight_decay=0.0)
        for _ in range(10):
            p.grad = torch.ones_like(p)
            opt.step()
    assert p16.item() == 1.0 and p32.item() == pytest.approx(1 - 1e-3, rel=1e-3)


def test_loss_terms():
    target = torch.zeros(1, 4, 4)
    target[0, :2] = 1
    perfect = target * 40 - 20
    terms = segmentation_loss(perfect, target)
    assert terms["loss"] < 1e-6
    half = torch.zeros(1, 4, 4)  # sigmoid 0.5 everywhere: BCE = ln 2, Dice = 1 - 2*4/(8+8)
    terms = segmentation_loss(half, target, bce_weight=1.0, dice_weight=0.25)
    assert terms["bce"] == pytest.approx(math.log(2)) and terms["dice"] == pytest.approx(0.5)
    assert terms["loss"] == pytest.approx(math.log(2) + 0.125)
    assert dice_loss(torch.full((2, 3), -30.0), torch.zeros(2, 3)).item() == pytest.approx(0.0, abs=1e-5)
    assert batch_iou(
        torch.tensor([[[1.0, -1.0]], [[-1.0, -1.0]]]), torch.tensor([[[1, 1]], [[0, 0]]])
    ).tolist() == [0.5, 1.0]
