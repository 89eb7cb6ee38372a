"""Read and write checkpoints in the authors' release format (reference §2).

* SAM2: ``torch.save({"model": SAM2Base.state_dict()})`` (or a bare state dict), file names ending in
  ``.torch`` or ``.torch.torch``.
* Language adapter ("plm"): ``torch.save({"plm": LanguageAdapter.state_dict()})`` (or bare), holding the
  whole Qwen backbone with LoRA, in the transformers >=4.52 key layout or the <=4.51 one (remapped).
* LoRA: a PEFT ``save_pretrained`` directory (``adapter_config.json`` + ``adapter_model.safetensors``).

Files are opened with ``weights_only=True`` and memory-mapped; ``assign=True`` loading keeps tensors
backed by the file instead of copying them.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import torch
from torch import nn

from converseg_ros.errors import CheckpointError
from converseg_ros.modeling.atomic import atomic_dir, atomic_path, torch_save

_PLM_PREFIX = "backbone.base_model.model."  # the Qwen model inside the plm file's LanguageAdapter
_LORA_PREFIX = "base_model.model."  # the Qwen model inside a PEFT LoRA folder
# transformers <=4.51 module paths -> >=4.52 (what this package and the release use), below the prefix.
_LEGACY_QWEN_PATHS = (
    ("visual.", "model.visual."),
    ("model.layers.", "model.language_model.layers."),
    ("model.embed_tokens.", "model.language_model.embed_tokens."),
    ("model.norm.", "model.language_model.norm."),
)
_SHOWN = 5


def read_state_dict(path: str | Path, wrapper_key: str) -> dict[str, torch.Tensor]:
    """Open a ``.torch`` file memory-mapped and return its state dict (wrapped or bare)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint file not found")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except (RuntimeError, zipfile.BadZipFile, EOFError, OSError) as err:
        raise CheckpointError(f"{path}: not a readable torch checkpoint ({err})") from err
    except Exception as err:  # weights_only refuses pickled code: say so plainly
        raise CheckpointError(f"{path}: refused to load (only tensors are accepted): {err}") from err
    if isinstance(obj, dict) and isinstance(obj.get(wrapper_key), dict):
        obj = obj[wrapper_key]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"{path}: expected a state dict or {{'{wrapper_key}': state_dict}}")
    return obj


def remap_legacy_keys(state: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """Rename Qwen keys below ``prefix`` saved with transformers <=4.51 to the >=4.52 layout; other keys
    (and keys already in the new layout) pass through."""
    new_layout = prefix + "model.language_model."
    remapped = {}
    for key, value in state.items():
        for old, new in _LEGACY_QWEN_PATHS:
            if key.startswith(prefix + old) and not key.startswith(new_layout):
                key = prefix + new + key[len(prefix + old):]
                break
        remapped[key] = value
    return remapped


def _describe(keys: list[str]) -> str:
    shown = ", ".join(keys[:_SHOWN])
    return shown + (f" (and {len(keys) - _SHOWN} more)" if len(keys) > _SHOWN else "")


def check_state_dict(
    module: nn.Module, state: dict[str, torch.Tensor], path: Path, allow_missing: bool = False
) -> None:
    """Raise CheckpointError naming the file and the first offending keys on any mismatch."""
    expected = module.state_dict(keep_vars=True)
    unexpected = sorted(set(state) - set(expected))
    if unexpected:
        raise CheckpointError(f"{path}: unexpected key(s) {_describe(unexpected)}")
    missing = sorted(set(expected) - set(state))
    if missing and not allow_missing:
        raise CheckpointError(f"{path}: missing key(s) {_describe(missing)}")
    for key, value in state.items():
        if tuple(value.shape) != tuple(expected[key].shape):
            raise CheckpointError(
                f"{path}: key {key} has shape {tuple(value.shape)}, the model expects "
                f"{tuple(expected[key].shape)} (wrong model size or config?)"
            )


def load_sam2_weights(sam: nn.Module, path: str | Path, allow_missing: bool = False) -> None:
    """Load a SAM2 ``.torch`` checkpoint ({"model": sd} or bare) into ``sam``."""
    state = read_state_dict(path, "model")
    check_state_dict(sam, state, Path(path), allow_missing)
    sam.load_state_dict(state, strict=not allow_missing, assign=True)


def load_plm_weights(adapter: nn.Module, path: str | Path) -> None:
    """Load the release's ``plm`` file (adapter heads + Qwen backbone + LoRA) into ``adapter``."""
    state = remap_legacy_keys(read_state_dict(path, "plm"), _PLM_PREFIX)
    check_state_dict(adapter, state, Path(path))
    adapter.load_state_dict(state, strict=True, assign=True)


def read_lora_settings(lora_dir: str | Path) -> dict:
    """The ``adapter_config.json`` of a PEFT LoRA directory."""
    config = Path(lora_dir) / "adapter_config.json"
    if not config.is_file():
        raise CheckpointError(f"{config}: LoRA adapter config not found")
    try:
        return json.loads(config.read_text())
    except json.JSONDecodeError as err:
        raise CheckpointError(f"{config}: invalid JSON ({err})") from err


def load_lora_weights(adapter: nn.Module, lora_dir: str | Path) -> None:
    """Load a PEFT LoRA directory into the adapter's backbone; every LoRA tensor must be present. Folders
    saved with transformers <=4.51 (``base_model.model.model.layers.N``, ``base_model.model.visual``) are
    remapped like the plm file."""
    from peft import set_peft_model_state_dict
    from peft.utils import load_peft_weights

    weights = Path(lora_dir) / "adapter_model.safetensors"
    if not weights.is_file():
        raise CheckpointError(f"{weights}: LoRA weights not found")
    try:
        state = remap_legacy_keys(load_peft_weights(str(lora_dir), device="cpu"), _LORA_PREFIX)
    except Exception as err:
        raise CheckpointError(f"{weights}: unreadable LoRA weights ({err})") from err
    backbone = adapter.backbone
    wanted = {k for k in backbone.state_dict() if ".lora_" in k}
    given = {k.replace(".weight", ".default.weight") for k in state}
    missing = sorted(wanted - given)
    if missing:
        raise CheckpointError(f"{weights}: missing LoRA key(s) {_describe(missing)}")
    result = set_peft_model_state_dict(backbone, state)
    if result.unexpected_keys:
        unexpected = sorted(result.unexpected_keys)
        raise CheckpointError(f"{weights}: unexpected LoRA key(s) {_describe(unexpected)}")


def find_checkpoint(folder: Path, pattern: str) -> Path:
    """The one file in ``folder`` matching a glob (release names vary: ``.torch`` / ``.torch.torch``)."""
    matches = sorted(Path(folder).glob(pattern))
    if not matches:
        raise CheckpointError(f"{folder}: no file matches {pattern!r}")
    return min(matches, key=lambda p: len(p.name))


def release_files(release_dir: str | Path) -> dict[str, str]:
    """The three files of a release folder, as ``ModelSpec`` fields (``sam2_checkpoint``, ``plm_checkpoint``,
    ``lora``), whatever its name and step (the authors' or ``converseg-train export``'s)."""
    folder = Path(release_dir)
    if not folder.is_dir():
        raise CheckpointError(f"{folder}: release directory not found")
    return {
        "sam2_checkpoint": str(find_checkpoint(folder, "*_sam2_*.torch*")),
        "plm_checkpoint": str(find_checkpoint(folder, "*_plm_*.torch")),
        "lora": str(find_checkpoint(folder, "lora_plm_adapter_*")),
    }


def release_names(step: int | str, name: str = "ConverSeg-Net") -> dict[str, str]:
    """File names of a release, as the authors' training script writes them."""
    return {
        "sam2": f"{name}_sam2_{step}.torch",
        "plm": f"{name}_plm_{step}.torch",
        "lora": f"lora_plm_adapter_{step}",
    }


def write_release(
    sam: nn.Module, adapter: nn.Module, out_dir: str | Path, step: int | str, name: str = "ConverSeg-Net",
    sam2_suffix: str = "",
) -> dict[str, Path]:
    """Write SAM2, plm and LoRA files in the release format, each atomically (a full disk raises
    DiskFullError naming ``out_dir``; files finished before stay). Returns their paths."""
    out_dir = Path(out_dir)
    names = release_names(step, name)
    paths = {
        "sam2": out_dir / (names["sam2"] + sam2_suffix),
        "plm": out_dir / names["plm"],
        "lora": out_dir / names["lora"],
    }
    with atomic_path(paths["sam2"]) as tmp:
        torch_save({"model": sam.state_dict()}, tmp)
    with atomic_path(paths["plm"]) as tmp:
        torch_save({"plm": adapter.state_dict()}, tmp)
    with atomic_dir(paths["lora"]) as tmp:
        adapter.backbone.save_pretrained(str(tmp))
    return paths
