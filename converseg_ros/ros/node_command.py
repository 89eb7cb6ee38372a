"""The command line that starts converseg_node in its own process, without ``ros2 launch``."""

from __future__ import annotations

import sys
from pathlib import Path

DEFAULT_PARAMS_FILE = Path(__file__).resolve().parents[2] / "config" / "segment.yaml"


def node_command(
    namespace: str, parameters: dict[str, object] | None = None, extra: list[str] = (),
    params_file: Path = DEFAULT_PARAMS_FILE,
) -> list[str]:
    """``python -m converseg_ros.node --ros-args --params-file … -r __ns:=… -p name:=value …``."""
    cmd = [sys.executable, "-m", "converseg_ros.node", "--ros-args", "--params-file", str(params_file),
           "-r", f"__ns:={namespace}"]
    for name, value in (parameters or {}).items():
        cmd += ["-p", f"{name}:={value}"]
    return cmd + list(extra)
