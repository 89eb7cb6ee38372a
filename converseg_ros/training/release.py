"""Locate the three files of a release directory (as ``converseg-train export`` or the authors write it)."""

from __future__ import annotations

from pathlib import Path

from converseg_ros.errors import CheckpointError
from converseg_ros.modeling.checkpoints import find_checkpoint


def release_files(release_dir: str | Path) -> dict[str, str]:
    """``{"sam2_checkpoint", "plm_checkpoint", "lora"}`` paths for ``ModelSpec.with_overrides``."""
    folder = Path(release_dir)
    if not folder.is_dir():
        raise CheckpointError(f"{folder}: release directory not found")
    return {
        "sam2_checkpoint": str(find_checkpoint(folder, "*_sam2_*.torch*")),
        "plm_checkpoint": str(find_checkpoint(folder, "*_plm_*.torch")),
        "lora": str(find_checkpoint(folder, "lora_plm_adapter_*")),
    }
