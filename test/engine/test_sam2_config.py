"""SAM2 configs are data: every ``_target_`` must be a SAM2 model class, checked over the whole resolved config
before anything is instantiated, from every entry point (engine API, presets, converseg-segment/eval/train).
The authors' configs shipped with the sam2 package and the tiny preset's still build."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from converseg_ros.errors import ModelConfigError
from converseg_ros.modeling.presets import load_preset, resolve_files
from converseg_ros.modeling.sam2_config import allowed_target, load_config
from converseg_ros.modeling.sam2_model import build_sam2_model

SAM2_DIR = Path(__import__("sam2").__file__).parent
BUNDLED = sorted(str(p.relative_to(SAM2_DIR)) for p in (SAM2_DIR / "configs").glob("sam2*/sam2*_hiera_*.yaml")
                 if "training" not in p.parent.name)
TOP_LEVEL = sorted(p.name for p in SAM2_DIR.glob("sam2_hiera_*.yaml"))
REFUSED = "is not allowed: only SAM2 model classes"


def write_yaml(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def tiny_model_config() -> dict:
    """The tiny preset's SAM2 config (the real one, from the generated model folder)."""
    return yaml.safe_load(Path(resolve_files(load_preset("tiny")).sam2_config).read_text())


def hostile_configs(tmp: Path) -> dict[str, tuple[Path, Path, str]]:
    """name -> (config file, the file it would write, the key path the refusal must name)."""
    victim = {name: tmp / f"written_{name}" for name in ("top", "nested", "list", "interp", "partial", "walk")}
    configs: dict[str, tuple[dict, str]] = {
        "top": ({"model": {"_target_": "shutil.copyfile", "src": __file__, "dst": str(victim["top"])}},
                "model._target_"),
        "partial": ({"model": {"_target_": "builtins.open", "_partial_": True, "file": str(victim["partial"])}},
                    "model._target_"),
        "interp": ({"evil": "shutil.copyfile",
                    "model": {"_target_": "${evil}", "src": __file__, "dst": str(victim["interp"])}},
                   "model._target_"),
        "walk": ({"model": {"_target_": "sam2.modeling.sam2_base.torch.save", "obj": 1, "f": str(victim["walk"])}},
                 "model._target_"),
    }
    nested = tiny_model_config()
    nested["model"]["memory_encoder"]["fuser"]["layer"] = {
        "_target_": "builtins.open", "file": str(victim["nested"]), "mode": "w"}
    configs["nested"] = (nested, "model.memory_encoder.fuser.layer._target_")
    in_list = tiny_model_config()
    in_list["model"]["image_encoder"]["trunk"]["_args_"] = [
        {"_target_": "shutil.copyfile", "src": __file__, "dst": str(victim["list"])}]
    configs["list"] = (in_list, "model.image_encoder.trunk._args_[0]._target_")
    return {name: (write_yaml(tmp / f"{name}.yaml", cfg), victim[name], key) for name, (cfg, key) in configs.items()}


def test_the_hostile_config_does_write_when_given_to_hydra_directly(tmp_path: Path) -> None:
    """The fixture is effective: hydra's own instantiate runs the copy (so the refusals below mean something)."""
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    path, victim, _ = hostile_configs(tmp_path)["top"]
    instantiate(OmegaConf.load(path).model)
    assert victim.is_file()


@pytest.mark.parametrize("name", ["top", "nested", "list", "interp", "partial", "walk"])
def test_hostile_config_is_refused_with_the_key_and_nothing_is_written(tmp_path: Path, name: str) -> None:
    path, victim, key = hostile_configs(tmp_path)[name]
    with pytest.raises(ModelConfigError) as err:
        build_sam2_model(str(path))
    assert f"SAM2 config {path}: {key}" in str(err.value)
    if name != "partial":
        assert REFUSED in str(err.value)
    assert not victim.exists()


@pytest.mark.parametrize(
    "model, message",
    [
        ({"_target_": ["shutil.copyfile"]}, "model._target_: a target must be a class name, not list"),
        ({"_target_": "sam2.modeling.sam2_base.SAM2Base", "_recursive_": False}, "model._recursive_: the hydra"),
        ({"_target_": "sam2.modeling.sam2_base.SAM2Base", "x": "\\${model.y}"}, "model.x: interpolation text"),
        ({"_target_": "sam2.modeling.sam2_base.SAM2Base", "x": "${oc.decode:'{_target_: os.getcwd}'}"},
         "model.x: the resolver 'oc.decode' is not allowed"),
        ({"_target_": "sam2.modeling.sam2_utils.get_1d_sine_pe"}, "model._target_ = 'sam2.modeling.sam2_utils"),
        ({"_target_": "sam2.modeling.backbones.hieradet.Hiera", "weights_path": "/tmp/x.pt"},
         "model.weights_path: loading weights from a config is not allowed"),
    ],
)
def test_other_ways_to_run_code_are_refused(tmp_path: Path, model: dict, message: str) -> None:
    path = write_yaml(tmp_path / "cfg.yaml", {"model": model})
    with pytest.raises(ModelConfigError, match="SAM2 config") as err:
        load_config(str(path))
    assert message in str(err.value)


def test_environment_values_never_reach_the_config_or_the_message(tmp_path: Path, monkeypatch) -> None:
    """``${oc.env:…}`` would copy a key from the environment into the config (and into an error message)."""
    monkeypatch.setenv("CONVERSEG_TEST_SECRET", "hf_not_to_be_logged")
    path = write_yaml(tmp_path / "cfg.yaml", {"model": {"_target_": "${oc.env:CONVERSEG_TEST_SECRET}"}})
    with pytest.raises(ModelConfigError) as err:
        load_config(str(path))
    assert "model._target_: the resolver 'oc.env' is not allowed" in str(err.value)
    assert "hf_not_to_be_logged" not in str(err.value)


def test_references_between_keys_still_resolve(tmp_path: Path) -> None:
    cfg = tiny_model_config()
    cfg["dims"] = {"d": cfg["model"]["memory_attention"]["d_model"]}
    cfg["model"]["memory_attention"]["d_model"] = "${dims.d}"
    model = build_sam2_model(str(write_yaml(tmp_path / "ref.yaml", cfg)))
    assert model.memory_attention.d_model == cfg["dims"]["d"]


def test_allow_list_is_exact() -> None:
    assert allowed_target("sam2.modeling.sam2_base.SAM2Base")
    assert allowed_target("sam2.modeling.backbones.hieradet.Hiera")
    for target in ("sam2.modeling.sam2_base.torch.nn.Module", "sam2.modeling.sam2_base.SAM2Base.__init__",
                   "sam2.build_sam.build_sam2", "sam2.modeling.__builtins__.open", "sam2.modeling",
                   "sam2.modeling.sam2_base._private", "torch.nn.Linear", "sam2.modeling.nonexistent.X"):
        assert not allowed_target(target), target


@pytest.mark.parametrize("name", BUNDLED + TOP_LEVEL)
def test_the_authors_configs_still_build(name: str) -> None:
    """Every model config the sam2 package ships (sam2 and sam2.1, tiny to large) builds a SAM2Base."""
    from accelerate import init_empty_weights

    with init_empty_weights():  # parameters on the meta device: the structure without 0.9 GB of weights
        model = build_sam2_model(name)
    assert type(model).__name__ == "SAM2Base"
    if "hiera_l" in name:
        assert model.image_encoder.trunk.blocks.__len__() == 48 and model.image_size == 1024


def test_bundled_config_count() -> None:
    assert len(BUNDLED) == 8 and len(TOP_LEVEL) == 4, (BUNDLED, TOP_LEVEL)


def test_the_tiny_preset_still_builds_and_runs(tiny_engine) -> None:
    sam = build_sam2_model(resolve_files(load_preset("tiny")).sam2_config)
    same = tiny_engine.net.sam.state_dict()
    assert set(sam.state_dict()) == set(same)
    pixels = torch.zeros(1, 3, sam.image_size, sam.image_size)
    assert sam.forward_image(pixels)["vision_features"].shape[0] == 1


def test_preset_and_engine_api_refuse_before_building(tmp_path: Path) -> None:
    """A preset whose sam2_config is hostile, and the engine API with an override: refused, nothing written."""
    from converseg_ros.engine import ConverSegEngine

    path, victim, key = hostile_configs(tmp_path)["nested"]
    preset = write_yaml(tmp_path / "preset.yaml", {"builder": "tiny", "sam2_config": str(path)})
    with pytest.raises(ModelConfigError, match=key):
        resolve_files(load_preset(str(preset)))
    with pytest.raises(ModelConfigError, match=key):
        ConverSegEngine.from_preset("tiny", device="cpu", overrides={"sam2_config": str(path)})
    assert not victim.exists()


def _cli(module: str, args: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True,
                          env=dict(os.environ), timeout=300, check=False)


def test_command_line_tools_refuse_hostile_configs(tmp_path: Path, photo_items: Path) -> None:
    """converseg-segment (--sam2-config, top level), converseg-eval (--sam2-config, nested) and converseg-train
    (a preset YAML naming the config, in a list): error exit, the key named, nothing written."""
    configs = hostile_configs(tmp_path)
    image = photo_items.parent / "images" / sorted(os.listdir(photo_items.parent / "images"))[0]
    top, nested, in_list = configs["top"], configs["nested"], configs["list"]
    preset = write_yaml(tmp_path / "preset.yaml", {"builder": "tiny", "sam2_config": str(in_list[0])})
    runs = {
        "segment": (_cli("converseg_ros.cli.segment", ["--preset", "tiny", "--sam2-config", str(top[0]),
                                                      "--image", str(image), "--prompt", "the cup",
                                                      "--out", str(tmp_path / "seg"), "--device", "cpu"]), top),
        "eval": (_cli("converseg_ros.evaluation.cli", ["--preset", "tiny", "--sam2-config", str(nested[0]),
                                                      "--items", str(photo_items), "--out", str(tmp_path / "ev"),
                                                      "--device", "cpu"]), nested),
        "train": (_cli("converseg_ros.training.cli", ["--preset", str(preset), "--data", str(photo_items),
                                                     "--out", str(tmp_path / "run"), "--steps", "1",
                                                     "--device", "cpu"]), in_list),
    }
    for tool, (proc, (path, victim, key)) in runs.items():
        assert proc.returncode in (1, 2), (tool, proc.returncode, proc.stderr[-2000:])
        assert f"SAM2 config {path}: {key}" in proc.stderr and REFUSED in proc.stderr, (tool, proc.stderr[-2000:])
        assert "Traceback" not in proc.stderr, (tool, proc.stderr[-2000:])
        assert not victim.exists(), tool
    print({tool: proc.stderr.strip().splitlines()[-1] for tool, (proc, _) in runs.items()})


@pytest.fixture(scope="module")
def photo_items(tmp_path_factory) -> Path:
    from converseg_ros.data.demo import write_demo_dataset

    return write_demo_dataset(tmp_path_factory.mktemp("photos"), max_side=96, limit=2) / "items.json"
