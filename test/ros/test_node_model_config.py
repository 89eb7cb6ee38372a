"""converseg_node refuses a SAM2 config that names code outside the SAM2 model package (``model_overrides``
pointing ``sam2_config`` at a hostile YAML): configure fails with the key and target in the log, nothing is
written, and the node configures once the file holds a real SAM2 config."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from lifecycle_msgs.msg import Transition
from lifecycle_msgs.srv import ChangeState, GetState
from rclpy.node import Node
from ros_helpers import call
from ros_nodes import start_node

from converseg_ros.modeling.presets import load_preset, resolve_files
from converseg_ros.ros.tools.node_command import node_command, node_env

pytestmark = pytest.mark.timeout(240)
NS = "/cs_model_config"
REFUSED = "is not allowed: only SAM2 model classes (torch modules defined in sam2.modeling) may be instantiated"


def tiny_config() -> Path:
    return Path(resolve_files(load_preset("tiny")).sam2_config)


def hostile_nested(tmp_path: Path) -> tuple[Path, Path]:
    """The tiny preset's real config with one module replaced by ``builtins.open(<victim>, 'w')``."""
    victim = tmp_path / "written_by_node"
    cfg = yaml.safe_load(tiny_config().read_text())
    cfg["model"]["memory_encoder"]["fuser"]["layer"] = {"_target_": "builtins.open", "file": str(victim), "mode": "w"}
    path = tmp_path / "sam2_hostile.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path, victim


def override(path: Path) -> list[str]:
    return ["-p", f"model_overrides:='{json.dumps({'sam2_config': str(path)})}'"]


def test_configure_refuses_a_hostile_sam2_config_then_accepts_a_real_one(ros: Node, tmp_path: Path) -> None:
    path, victim = hostile_nested(tmp_path)
    node = start_node(ros, NS, ["-p", "autostart:=false", *override(path)], tmp_path / "n.log", active=False)
    change = ros.create_client(ChangeState, f"{NS}/converseg_node/change_state")
    get = ros.create_client(GetState, f"{NS}/converseg_node/get_state")

    def transition(tid: int) -> tuple[bool, str]:
        resp = call(ros, change, ChangeState.Request(transition=Transition(id=tid)), timeout=90.0)
        return resp.success, call(ros, get, GetState.Request()).current_state.label

    try:
        assert transition(Transition.TRANSITION_CONFIGURE) == (False, "unconfigured")
        expected = (f"configure failed: model preset 'tiny': SAM2 config {path}: "
                    f"model.memory_encoder.fuser.layer._target_ = 'builtins.open' {REFUSED}")
        assert expected in node.output(), node.output()[-3000:]
        assert not victim.exists()

        shutil.copyfile(tiny_config(), path)  # the same path now holds the tiny preset's real config
        assert transition(Transition.TRANSITION_CONFIGURE) == (True, "inactive")
        assert transition(Transition.TRANSITION_ACTIVATE) == (True, "active")
        assert not victim.exists()
    finally:
        code = node.stop()
    assert code == 0, node.output()[-3000:]
    assert "Traceback" not in node.output(), node.output()[-3000:]


def test_autostart_with_a_hostile_top_level_target_exits_with_2(tmp_path: Path) -> None:
    victim = tmp_path / "copied_by_node"
    path = tmp_path / "sam2_copy.yaml"
    path.write_text(yaml.safe_dump({"model": {"_target_": "shutil.copyfile", "src": str(tiny_config()),
                                              "dst": str(victim)}}))
    cmd = node_command("/cs_model_config_auto", {"preset": "tiny", "device": "cpu"}, override(path))
    out = subprocess.run(cmd, cwd="/", capture_output=True, text=True, timeout=120, check=False, env=node_env())
    text = out.stdout + out.stderr
    assert out.returncode == 2, text[-3000:]
    assert f"SAM2 config {path}: model._target_ = 'shutil.copyfile' {REFUSED}" in text, text[-3000:]
    assert "configuration failed" in text and not victim.exists()
