"""Models the data engine loads from the presets: the box-prompted SAM2 and (for the local VLM) the whole net.

Both come through ``converseg_ros.modeling``; a run that uses a preset's VLM and that preset's SAM2 loads
the model once.
"""

from __future__ import annotations

import dataclasses
import functools
import threading
from pathlib import Path

from converseg_ros.errors import PresetError
from converseg_ros.modeling.presets import ModelSpec, available_presets, load_preset, resolve_files

SAM2_WEIGHTS = ("release", "base")
_lock = threading.Lock()


def is_preset(name: str) -> bool:
    """A preset name (``tiny``, ``converseg-3b``) or a preset YAML file."""
    path = Path(name)
    return name in available_presets() or (path.suffix in (".yaml", ".yml") and path.is_file())


@functools.lru_cache(maxsize=2)
def _cached_net(preset: str, device: str, precision: str, allow_download: bool):
    from converseg_ros.modeling.build import build_model

    return build_model(preset, device, precision, allow_download=allow_download)


def load_net(preset: str, device: str = "auto", precision: str = "auto", allow_download: bool = False):
    """ConverSeg-Net of a preset (built once per process)."""
    with _lock:
        return _cached_net(preset, device, precision, allow_download)


def sam2_spec(preset: str, weights: str = "release", checkpoint: str | None = None,
              allow_download: bool = False) -> ModelSpec:
    """A spec naming only SAM2 files: the release's fine-tuned SAM2 (default), the base SAM2, or a file.

    Only the SAM2 file is fetched (not the language adapter's multi-GB file).
    """
    from converseg_ros.modeling.checkpoints import find_checkpoint
    from converseg_ros.modeling.hub import fetch_snapshot

    if weights not in SAM2_WEIGHTS:
        raise PresetError(f"--sam2-weights must be one of {SAM2_WEIGHTS}, got {weights!r}")
    spec = load_preset(preset)
    if checkpoint:
        return dataclasses.replace(spec, sam2_checkpoint=checkpoint, sam2_base=None)
    if spec.builder:  # generated locally (tiny): resolving is cheap
        spec = resolve_files(spec)
        return dataclasses.replace(spec, sam2_base=None)
    if weights == "base":
        source = spec.sam2_base_source
        if not spec.sam2_base and not source:
            raise PresetError(f"preset {spec.name} names no base SAM2")
        path = spec.sam2_base or str(
            fetch_snapshot(source["repo_id"], [source["filename"]], allow_download, "SAM2 base")
            / source["filename"]
        )
        return dataclasses.replace(spec, sam2_base=path, sam2_checkpoint=None)
    if spec.sam2_checkpoint:
        return spec
    release = spec.release or {}
    if "sam2_checkpoint" not in release:
        raise PresetError(f"preset {spec.name} has no released SAM2; use --sam2-weights base or --sam2-checkpoint")
    snapshot = fetch_snapshot(release["repo_id"], [release["sam2_checkpoint"]], allow_download,
                              f"preset {spec.name} (SAM2)")
    return dataclasses.replace(spec, sam2_checkpoint=str(find_checkpoint(snapshot, release["sam2_checkpoint"])))


@functools.lru_cache(maxsize=2)
def load_box_sam2(preset: str, weights: str = "release", checkpoint: str | None = None,
                  allow_download: bool = False, device: str = "auto"):
    """SAM2Base (fp32, eval) for box prompts (built once per process and arguments)."""
    from converseg_ros.modeling.build import load_sam2, resolve_device_names

    device, _ = resolve_device_names(device, "auto")
    return load_sam2(sam2_spec(preset, weights, checkpoint, allow_download)).float().eval().to(device)
