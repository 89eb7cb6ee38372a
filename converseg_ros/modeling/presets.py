"""Model presets (YAML files in ``models/``) and their resolution to local files.

A preset names the base models and, for a released model, the hub repository and file names of the
authors' release. ``resolve_files`` turns it into local paths: explicit paths win, then the hub cache,
then a download when allowed. The ``tiny`` preset is generated locally (random weights, untrained).
"""

from __future__ import annotations

import dataclasses
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from converseg_ros.errors import PresetError
from converseg_ros.modeling.checkpoints import find_checkpoint, release_files
from converseg_ros.modeling.hub import fetch_snapshot
from converseg_ros.modeling.language_adapter import LoraSettings
from converseg_ros.modeling.preset_fields import FIELD_RULES, check_fields, lora_mapping

# Config, tokenizer and processor files of a Qwen2.5-VL repository (weights excluded).
QWEN_METADATA_PATTERNS = ["*.json", "*.txt", "*.jinja"]


@dataclass
class ModelSpec:
    """Everything needed to build ConverSeg-Net; paths may be hub ids until resolved."""

    name: str
    description: str = ""
    trained: bool = False
    vlm: str = "Qwen/Qwen2.5-VL-3B-Instruct"  # hub id or local directory (config, tokenizer, processor)
    sam2_config: str = "sam2_hiera_l.yaml"  # bundled sam2 config name or a YAML path
    sam2_checkpoint: str | None = None  # fine-tuned SAM2 .torch (the release's)
    sam2_base: str | None = None  # base SAM2 checkpoint (sam2_hiera_large.pt)
    plm_checkpoint: str | None = None  # language adapter .torch (holds the Qwen weights)
    lora: str | None = None  # PEFT LoRA directory
    lora_settings: LoraSettings = field(default_factory=LoraSettings)
    release: dict | None = None  # {repo_id, sam2_checkpoint, plm_checkpoint, lora} globs in the repo
    sam2_base_source: dict | None = None  # {repo_id, filename}
    builder: str | None = None  # "tiny": generated locally
    paper: dict = field(default_factory=dict)  # published gIoU/cIoU, for evaluation reports

    def with_overrides(self, **paths: str | None) -> ModelSpec:
        """Copy with explicit values (e.g. local checkpoint paths) replacing the preset's."""
        unknown = set(paths) - set(FIELD_RULES)
        if unknown:
            raise PresetError(f"unknown model option(s): {sorted(unknown)}")
        check_fields({k: v for k, v in paths.items() if v is not None}, f"model option(s) for {self.name}")
        return dataclasses.replace(self, **{k: v for k, v in paths.items() if v is not None})


def models_dirs() -> list[Path]:
    """Where preset YAML files are looked up, in order."""
    dirs = []
    if os.environ.get("CONVERSEG_MODELS_DIR"):
        dirs.append(Path(os.environ["CONVERSEG_MODELS_DIR"]))
    dirs.append(Path(__file__).resolve().parents[2] / "models")  # source checkout
    dirs.append(Path(sys.prefix) / "share" / "converseg_ros" / "models")  # pip install
    try:  # colcon install
        from ament_index_python.packages import get_package_share_directory

        dirs.append(Path(get_package_share_directory("converseg_ros")) / "models")
    except Exception:  # noqa: BLE001 - ament index absent or package not installed there
        pass
    return dirs


def available_presets() -> list[str]:
    """Names of every preset found."""
    return sorted({p.stem for d in models_dirs() if d.is_dir() for p in d.glob("*.yaml")})


def load_preset(name_or_path: str) -> ModelSpec:
    """Read a preset by name (``converseg-3b``, ``tiny``) or from a YAML path."""
    path = Path(name_or_path)
    if not path.is_file():
        candidates = [d / f"{name_or_path}.yaml" for d in models_dirs()]
        path = next((c for c in candidates if c.is_file()), None)
        if path is None:
            raise PresetError(f"unknown preset {name_or_path!r}; available: {available_presets()}")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        raise PresetError(f"{path}: invalid YAML ({err})") from err
    if not isinstance(data, dict):
        raise PresetError(f"{path}: a preset must be a mapping of fields, not {type(data).__name__}")
    known = set(FIELD_RULES) - {"lora"}  # YAML ``lora`` is the LoRA section; the path field is set by overrides
    unknown = sorted(set(map(str, data)) - known - {"lora"})
    if unknown:
        raise PresetError(f"{path}: unknown field(s) {unknown}")
    section = data.pop("lora", {})
    lora_mapping(section, f"{path}: lora")
    check_fields(data, str(path))
    data.setdefault("name", path.stem)
    return ModelSpec(lora_settings=LoraSettings(**section), **data)


def tiny_root() -> Path:
    """Cache folder of the generated tiny model (``CONVERSEG_CACHE`` or ~/.cache/converseg_ros)."""
    base = os.environ.get("CONVERSEG_CACHE") or Path.home() / ".cache" / "converseg_ros"
    return Path(base) / "tiny"


def resolve_files(spec: ModelSpec, allow_download: bool = False) -> ModelSpec:
    """Return a copy whose every file field is a local path (building or fetching what is missing)."""
    if spec.builder == "tiny":
        from converseg_ros.modeling.tiny import build_tiny_files

        root = build_tiny_files(tiny_root())
        local = {"vlm": str(root / "qwen"), "sam2_config": str(root / "sam2_tiny.yaml"), **release_files(root)}
        defaults = ModelSpec(name=spec.name)
        keep = {k: getattr(spec, k) for k in local if getattr(spec, k) != getattr(defaults, k)}
        return _checked(dataclasses.replace(spec, **{**local, **keep}))

    updates: dict[str, str] = {}
    release = spec.release or {}
    missing = [k for k in ("sam2_checkpoint", "plm_checkpoint", "lora") if k in release and not getattr(spec, k)]

    if missing:
        snapshot = fetch_snapshot(
            release["repo_id"], [release[k] + ("/*" if k == "lora" else "") for k in missing],
            allow_download, f"preset {spec.name} (release)",
        )
        for key in missing:
            updates[key] = str(find_checkpoint(snapshot, release[key]))
    if not Path(spec.vlm).is_dir():
        has_qwen_weights = bool(spec.plm_checkpoint or updates.get("plm_checkpoint"))
        patterns = QWEN_METADATA_PATTERNS + ([] if has_qwen_weights else ["*.safetensors"])
        updates["vlm"] = str(fetch_snapshot(spec.vlm, patterns, allow_download, f"preset {spec.name} (VLM)"))
    has_sam2 = spec.sam2_base or spec.sam2_checkpoint or updates.get("sam2_checkpoint")
    if not has_sam2 and spec.sam2_base_source:
        source = spec.sam2_base_source
        snapshot = fetch_snapshot(source["repo_id"], [source["filename"]], allow_download, "SAM2 base")
        updates["sam2_base"] = str(snapshot / source["filename"])
    return _checked(dataclasses.replace(spec, **updates))


def _checked(spec: ModelSpec) -> ModelSpec:
    """``spec`` once its SAM2 config reads and names only SAM2 model classes (ModelConfigError otherwise),
    so a hostile config is refused where files are resolved (the node's configure), before any build."""
    from converseg_ros.modeling.sam2_config import load_config

    load_config(spec.sam2_config)
    return spec
