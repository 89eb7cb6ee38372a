"""Atomic training checkpoints: contents, pointer, pruning, crash leftovers, RNG and load errors."""

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from converseg_ros.errors import CheckpointError
from converseg_ros.training import checkpoint as ck
from converseg_ros.training.config import OptimConfig
from converseg_ros.training.schedule import build_optimizer, build_scheduler


def _model() -> nn.Module:
    model = nn.Sequential(nn.Linear(3, 4), nn.LayerNorm(4), nn.Linear(4, 1))
    model[2].requires_grad_(False)  # frozen: must not be in the checkpoint
    return model


def _train(model, opt, sched, steps):
    for _ in range(steps):
        loss = model(torch.randn(5, 3)).pow(2).mean() + model[0].weight.sum() * 0.01
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()


def test_save_holds_only_trained_tensors_and_full_state(tmp_path):
    torch.manual_seed(0)
    model = _model()
    opt = build_optimizer(model, OptimConfig(lr=0.1))
    sched = build_scheduler(opt, 10, OptimConfig(lr=0.1))
    _train(model, opt, sched, 3)
    path = ck.save_checkpoint(tmp_path, 3, model, opt, sched, "steps: 10\n", keep_last=2, rng=ck.rng_state())
    assert path.name == "step_00000003" and ck.latest_checkpoint(tmp_path) == path
    tensors = load_file(str(path / ck.TRAINED_FILE))
    assert set(tensors) == {"0.weight", "0.bias", "1.weight", "1.bias"}
    state = ck.read_state(path)  # weights_only=True load
    assert state.step == 3 and state.scheduler["last_epoch"] == 3 and len(state.optimizer["state"]) == 4

    fresh = _model()
    ck.load_trained(fresh, path)
    assert torch.equal(fresh[0].weight, model[0].weight)
    assert not torch.equal(fresh[2].weight, model[2].weight)  # frozen part untouched


def test_rng_state_round_trip():
    state = ck.rng_state()
    a = (torch.rand(3), torch.randint(0, 1000, (2,)))
    ck.set_rng_state(state)
    b = (torch.rand(3), torch.randint(0, 1000, (2,)))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


def test_pointer_pruning_and_crash_leftovers(tmp_path):
    model = _model()
    opt = build_optimizer(model, OptimConfig())
    sched = build_scheduler(opt, 10, OptimConfig())
    for step in (1, 2, 3):
        ck.save_checkpoint(tmp_path, step, model, opt, sched, "", keep_last=2, rng=ck.rng_state())
    root = tmp_path / ck.CHECKPOINTS
    assert sorted(p.name for p in root.glob("step_*")) == ["step_00000002", "step_00000003"]
    # a crash while writing step 4 leaves only a hidden temporary directory behind
    (root / ".step_00000004.abc.part").mkdir()
    (root / ".step_00000004.abc.part" / ck.TRAINED_FILE).write_bytes(b"half")
    assert ck.latest_checkpoint(tmp_path).name == "step_00000003"
    # a lost pointer falls back to the newest complete checkpoint
    (root / "latest").unlink()
    assert ck.latest_checkpoint(tmp_path).name == "step_00000003"
    assert ck.resolve_checkpoint(tmp_path).name == "step_00000003"


def test_load_errors_name_the_problem(tmp_path):
    model = _model()
    opt = build_optimizer(model, OptimConfig())
    path = ck.save_checkpoint(
        tmp_path, 1, model, opt, build_scheduler(opt, 2, OptimConfig()), "", 1, ck.rng_state()
    )
    wider = nn.Sequential(nn.Linear(3, 5), nn.LayerNorm(5), nn.Linear(5, 1))
    with pytest.raises(CheckpointError, match=r"0.bias has shape \(4,\), the model expects \(5,\)"):
        ck.load_trained(wider, path)
    with pytest.raises(CheckpointError, match="tensors not in the model"):
        ck.load_trained(nn.Sequential(nn.Linear(3, 4)), path)
    (path / ck.TRAINED_FILE).write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="unreadable"):
        ck.load_trained(model, path)
    with pytest.raises(CheckpointError, match="no training checkpoint"):
        ck.resolve_checkpoint(tmp_path / "nowhere")
