"""``python -m converseg_ros.node --ros-args --params-file config/segment.yaml``: runs converseg_node.

Thin entry point; the node lives in :mod:`converseg_ros.ros.node` (only that layer imports rclpy).
"""

from __future__ import annotations

import signal
import sys
from typing import Any


def _exit_quietly(signum: int, frame: Any) -> None:
    raise SystemExit(0)


def main(args: list[str] | None = None) -> int:
    """Start converseg_node (autostart: configure + activate) and spin until shutdown."""
    for sig in (signal.SIGINT, signal.SIGTERM):  # while importing torch & co.; the node installs its own
        signal.signal(sig, _exit_quietly)
    from converseg_ros.ros.node import main as node_main

    return node_main(args)


if __name__ == "__main__":
    sys.exit(main())
