"""Training config: the YAML recipes equal the paper's defaults, overrides and their errors."""

from pathlib import Path

import pytest

from converseg_ros.training.cli import _train_parser, config_from_args
from converseg_ros.training.config import ConfigError, TrainConfig, config_yaml, load_config

CONFIGS = Path(__file__).resolve().parents[2] / "config" / "train"


def test_stage1_yaml_is_the_paper_recipe():
    cfg = load_config(CONFIGS / "stage1.yaml")
    assert cfg.to_dict() == TrainConfig().to_dict()
    assert (cfg.optim.lr, cfg.optim.min_lr, cfg.optim.weight_decay) == (1e-4, 1e-6, 0.05)
    assert (cfg.batch_size, cfg.steps, cfg.model.lora_r, cfg.model.lora_alpha) == (6, 35_000, 16, 32)
    assert (cfg.data.erode_kernel, cfg.data.erode_iterations, cfg.loss.dice) == (5, 1, 0.25)


def test_stage2_differs_only_in_lr_and_initialisation():
    one, two = load_config(CONFIGS / "stage1.yaml").to_dict(), load_config(CONFIGS / "stage2.yaml").to_dict()
    assert two["optim"]["lr"] == 1e-5 and two["model"]["init"] == "runs/stage1"
    for d in (one, two):
        d["optim"].pop("lr"), d["model"].pop("init"), d.pop("name"), d.pop("out")
    assert one == two


def test_overrides_and_round_trip(tmp_path):
    cfg = load_config(
        None, ["optim.lr=2e-5", "data.augment.hflip=0.5", "optim.betas=[0.9, 0.95]", "steps=10"]
    )
    assert (cfg.optim.lr, cfg.data.augment.hflip, cfg.optim.betas, cfg.steps) == (2e-5, 0.5, (0.9, 0.95), 10)
    (tmp_path / "c.yaml").write_text(config_yaml(cfg))
    assert load_config(tmp_path / "c.yaml").to_dict() == cfg.to_dict()


@pytest.mark.parametrize(
    "override,message",
    [
        ("optim.lrr=1", "unknown config key 'optim.lrr'"),
        ("steps=ten", "expected a number"),
        ("steps=1.5", "expected an integer"),
        ("model.freeze_unsupervised=3", "true/false"),
        ("steps", "key=value"),
    ],
)
def test_bad_overrides(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, [override])


def test_cli_flags_map_to_config():
    args = _train_parser().parse_args(
        [
            "--config",
            str(CONFIGS / "stage2.yaml"),
            "--preset",
            "tiny",
            "--data",
            "a.jsonl",
            "b",
            "--steps",
            "7",
            "--lr",
            "3e-3",
            "--hflip",
            "0.5",
            "--set",
            "optim.min_lr=1e-3",
            "--val-data",
            "v.json",
        ]
    )
    cfg = config_from_args(args)
    assert (cfg.model.preset, cfg.steps, cfg.optim.lr, cfg.optim.min_lr) == ("tiny", 7, 3e-3, 1e-3)
    assert (cfg.data.train, cfg.data.val, cfg.data.augment.hflip) == (["a.jsonl", "b"], ["v.json"], 0.5)
    assert cfg.model.init == "runs/stage1"  # from the YAML
