"""Training configuration: dataclasses whose defaults are the paper's stage-1 recipe (supp. §D, Table 1).

A YAML file (``config/train/stage1.yaml``, ``stage2.yaml``) fills the dataclasses; dotted overrides such as
``optim.lr=1e-5`` (values parsed as YAML) are applied on top.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml


class ConfigError(ValueError):
    """An unknown key or a value of the wrong type in a training config."""


@dataclass
class AugmentConfig:
    """Augmentations applied identically to image and mask (all off in the paper's recipe)."""

    hflip: float = 0.0  # probability of a horizontal flip; "left"/"right" in the prompt are swapped
    scale_min: float = 1.0  # random crop keeping this fraction (min..max) of each side, aspect kept
    scale_max: float = 1.0
    color: float = 0.0  # strength of brightness/contrast/saturation jitter (image only)


@dataclass
class DataConfig:
    """Datasets, split and mask processing."""

    train: list[str] = field(default_factory=list)  # dataset.jsonl / items.json / folders / robot-log exports
    val: list[str] = field(default_factory=list)  # explicit validation sets; empty = hold out val_fraction
    val_fraction: float = 0.01
    num_samples: int | None = None  # truncate the training set (debugging)
    max_dim: int | None = None  # letterbox side; None = the model's SAM2 input size (1024 for Hiera-L)
    erode_kernel: int = 5
    erode_iterations: int = 1
    workers: int = 2
    augment: AugmentConfig = field(default_factory=AugmentConfig)


@dataclass
class ModelConfig:
    """Which model to build and what to start from."""

    preset: str = "converseg-3b"
    init: str | None = None  # stage-1 training checkpoint or release dir to start from (stage 2)
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    device: str = "auto"  # auto = cuda when available
    autocast: str = "auto"  # auto = bf16 autocast on CUDA (fp32 master weights), none on CPU; bf16 forces it
    freeze_unsupervised: bool = True  # keep decoder parts that output 0 never trains out of the optimiser
    gradient_checkpointing: bool = False  # recompute Qwen activations in the backward pass (less memory)
    max_pixels: int | None = None  # cap Qwen's view of each image (None = native resolution, as the authors)


@dataclass
class OptimConfig:
    """AdamW with linear warm-up then cosine decay to ``min_lr``."""

    lr: float = 1e-4
    min_lr: float = 1e-6
    weight_decay: float = 0.05  # not applied to norms, scalars, biases and token embeddings
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    warmup_fraction: float = 0.03
    grad_clip: float = 1.0


@dataclass
class LossConfig:
    """BCE + Dice on decoder output 0."""

    bce: float = 1.0
    dice: float = 0.25


@dataclass
class TrainConfig:
    """Everything a run needs; saved next to every checkpoint."""

    name: str = "stage1"
    out: str = "runs/stage1"
    steps: int = 35_000
    batch_size: int = 6
    seed: int = 0
    log_every: int = 20
    val_every: int = 1000
    val_items: int = 200  # validation items scored per validation (the first ones of the split)
    val_panels: int = 6  # rows in each prediction panel PNG (val and train subsets)
    save_every: int = 1000
    keep_last: int = 3
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    loss: LossConfig = field(default_factory=LossConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _build(cls: type, values: dict[str, Any], where: str) -> Any:
    if not isinstance(values, dict):
        raise ConfigError(f"{where or 'config'}: expected a mapping, got {values!r}")
    known = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in values.items():
        if key not in known:
            raise ConfigError(f"unknown config key {where + key!r} (known: {', '.join(known)})")
        default = getattr(cls(), key)
        if dataclasses.is_dataclass(default):
            kwargs[key] = _build(type(default), value, f"{where}{key}.")
        else:
            kwargs[key] = _coerce(value, default, where + key)
    return cls(**kwargs)


def _coerce(value: Any, default: Any, key: str) -> Any:
    if value is None or default is None:
        return value
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true/false, got {value!r}")
        return value
    if isinstance(default, (int, float)) and not isinstance(value, bool):
        try:
            number = float(value) if isinstance(default, float) else int(value)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{key}: expected a number, got {value!r}") from exc
        if isinstance(default, int) and number != float(value):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        return number
    if isinstance(default, (list, tuple)):
        items = value if isinstance(value, (list, tuple)) else [value]
        return type(default)(items)
    if isinstance(default, str):
        return str(value)
    return value


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> TrainConfig:
    """Defaults, then the YAML file (if any), then ``key.sub=value`` overrides."""
    values: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}")
        values = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    for item in overrides or []:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"override {item!r} is not key=value")
        node = values
        *parents, leaf = key.strip().split(".")
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {item!r}: {part} is not a section")
        node[leaf] = yaml.safe_load(raw)
    return _build(TrainConfig, values, "")


def config_yaml(config: TrainConfig) -> str:
    """YAML text of ``config`` (tuples as lists), loadable by ``load_config``."""
    return yaml.safe_dump(_plain(config.to_dict()), sort_keys=False)


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value
