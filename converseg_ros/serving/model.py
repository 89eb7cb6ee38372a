"""Model checks (configure) and engine construction (activate) for converseg_node."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from converseg_ros.ros.params import NodeConfig

MODEL_FILE_FIELDS = ("vlm", "sam2_checkpoint", "sam2_base", "plm_checkpoint", "lora")


@dataclass(frozen=True)
class ModelChoice:
    """What configure resolved: preset, whether it is trained, device and precision."""

    preset: str
    trained: bool
    description: str
    device: str
    precision: str


def check_model(cfg: NodeConfig) -> ModelChoice:
    """Validate the preset and make sure its files are local (raises ConverSegError/ValueError with the
    file or preset at fault). Builds the tiny model's files on first use; downloads only if allowed."""
    from converseg_ros.modeling.build import resolve_device_names
    from converseg_ros.modeling.presets import load_preset, resolve_files

    spec = load_preset(cfg.preset).with_overrides(**cfg.overrides())
    local = resolve_files(spec, allow_download=cfg.allow_download)
    for name in MODEL_FILE_FIELDS:
        path = getattr(local, name, None)
        if path and not Path(path).exists():
            raise FileNotFoundError(f"{name}: {path} does not exist")
    device, precision = resolve_device_names(cfg.device, cfg.precision)
    return ModelChoice(cfg.preset, bool(spec.trained), spec.description, device, precision)


def load_engine(cfg: NodeConfig, choice: ModelChoice) -> Any:
    """Build the ConverSeg engine on the chosen device (the slow part of activation)."""
    from converseg_ros.engine import ConverSegEngine

    kwargs: dict[str, Any] = {
        "device": choice.device,
        "precision": choice.precision,
        "allow_download": cfg.allow_download,
        "sam2_precision": cfg.sam2_precision,
        "overlap": cfg.overlap,
        "attention": cfg.attention,
        "compile_sam2": cfg.compile_sam2,
    }
    overrides = cfg.overrides()
    if overrides:
        kwargs["overrides"] = overrides
    return ConverSegEngine.from_preset(cfg.preset, **kwargs)
