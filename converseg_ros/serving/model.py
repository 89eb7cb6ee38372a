"""Which model to serve and how: the request (preset, release folder, explicit files, device, speed options),
its check (files present, device resolved) and the engine's construction. Plain Python."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MODEL_FILE_FIELDS = ("vlm", "sam2_checkpoint", "sam2_base", "plm_checkpoint", "lora")


@dataclass(frozen=True)
class ModelRequest:
    """What the node was asked to load (node parameters of the same names)."""

    preset: str
    overrides: dict[str, Any] = field(default_factory=dict)  # ModelSpec fields, e.g. {"plm_checkpoint": ...}
    allow_download: bool = False
    device: str = "auto"
    precision: str = "auto"
    sam2_precision: str = "fp32"
    overlap: str = "auto"
    attention: str = "auto"
    compile_sam2: bool = False
    release: str = ""  # a release folder (SAM2 .torch, plm .torch, LoRA folder); ``overrides`` win over it

    def files(self) -> dict[str, Any]:
        """The preset fields to replace: the release folder's three files, then ``overrides`` (CheckpointError
        when the folder is not a release)."""
        from converseg_ros.modeling.checkpoints import release_files

        return {**(release_files(self.release) if self.release else {}), **self.overrides}

    @property
    def label(self) -> str:
        """A short name for answers and logs: the preset, ``@<release folder name>``, ``+files`` for overrides."""
        label = self.preset + (f"@{Path(self.release).name}" if self.release else "")
        return label + ("+files" if self.overrides else "")


@dataclass(frozen=True)
class ModelChoice:
    """What configure resolved: preset, whether it is trained, device and precision."""

    preset: str
    trained: bool
    description: str
    device: str
    precision: str


def quick_check(request: ModelRequest) -> None:
    """What can be checked at once (a run-time change is refused with it): the preset exists, the release
    folder holds a release, the explicit files are known fields. Raises with the reason."""
    from converseg_ros.modeling.presets import load_preset

    load_preset(request.preset).with_overrides(**request.files())


def check_model(request: ModelRequest) -> ModelChoice:
    """Validate the preset and make sure its files are local (raises ConverSegError/ValueError with the
    file or preset at fault). Builds the tiny model's files on first use; downloads only if allowed."""
    from converseg_ros.modeling.build import resolve_device_names
    from converseg_ros.modeling.presets import load_preset, resolve_files

    spec = load_preset(request.preset).with_overrides(**request.files())
    local = resolve_files(spec, allow_download=request.allow_download)
    for name in MODEL_FILE_FIELDS:
        path = getattr(local, name, None)
        if path and not Path(path).exists():
            raise FileNotFoundError(f"{name}: {path} does not exist")
    device, precision = resolve_device_names(request.device, request.precision)
    return ModelChoice(request.preset, bool(spec.trained), spec.description, device, precision)


def load_engine(request: ModelRequest, choice: ModelChoice) -> Any:
    """Build the ConverSeg engine on the chosen device (the slow part of activation)."""
    from converseg_ros.engine import ConverSegEngine

    kwargs: dict[str, Any] = {
        "device": choice.device,
        "precision": choice.precision,
        "allow_download": request.allow_download,
        "sam2_precision": request.sam2_precision,
        "overlap": request.overlap,
        "attention": request.attention,
        "compile_sam2": request.compile_sam2,
    }
    files = request.files()
    if files:
        kwargs["overrides"] = files
    return ConverSegEngine.from_preset(request.preset, **kwargs)
