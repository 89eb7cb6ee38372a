"""The command line and environment that start converseg_node in its own process, without ``ros2 launch``
(the demo, the soak benchmark, the tests); launch/segment.launch.py sets the same environment."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path

from converseg_ros import dds_profile
from converseg_ros.ros.tools.launch_support import fastdds_profile_env

CONFIG = Path(__file__).resolve().parents[3] / "config"
DEFAULT_PARAMS_FILE = CONFIG / "segment.yaml"
FASTDDS_PROFILE = CONFIG / "fastdds_large_frames.xml"


def node_command(
    namespace: str,
    parameters: dict[str, object] | None = None,
    extra: list[str] = (),
    params_file: Path = DEFAULT_PARAMS_FILE,
) -> list[str]:
    """``python -m converseg_ros.node --ros-args --params-file … -r __ns:=… -p name:=value …``."""
    cmd = [
        sys.executable,
        "-m",
        "converseg_ros.node",
        "--ros-args",
        "--params-file",
        str(params_file),
        "-r",
        f"__ns:={namespace}",
    ]
    for name, value in (parameters or {}).items():
        cmd += ["-p", f"{name}:={value}"]
    return cmd + list(extra)


def node_env(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """``base`` (default: this process's environment) plus what the launch file gives the node: the Fast DDS
    profile (both variables; CONVERSEG_FASTDDS_PROFILE or ``auto``: the one matching the discovery range,
    unless one is already named, see :mod:`converseg_ros.dds_profile`), so large best-effort camera frames
    arrive, and fewer glibc malloc arenas (flat memory under load; docs/ros.md)."""
    env = dict(os.environ if base is None else base)
    env.update(fastdds_profile_env(env.get(dds_profile.CHOICE_VARIABLE, ""), CONFIG, env))
    env.setdefault("MALLOC_ARENA_MAX", "2")
    return env
