"""``python -m converseg_ros.node --ros-args --params-file config/segment.yaml``: runs converseg_node.

Thin entry point; the node lives in :mod:`converseg_ros.ros.node`, its process loop in
:mod:`converseg_ros.ros.run` (only that layer imports rclpy).
"""

from __future__ import annotations

import faulthandler
import os
import signal
import sys
from typing import Any, NoReturn

from converseg_ros import dds_profile

PR_SET_PDEATHSIG = 1
M_MMAP_THRESHOLD, M_ARENA_MAX = -3, -8  # glibc mallopt parameters


def _exit_quietly(signum: int, frame: Any) -> None:
    """SIGINT/SIGTERM before the node's own handlers (imports, profile choice): nothing to clean up yet, so
    leave at once with 0. A SystemExit raised inside an import could be swallowed by the imported code, and
    the interpreter's teardown of a half-imported torch takes seconds (past launch's 5 s before SIGTERM)."""
    os._exit(0)


def _exit_with_parent() -> None:
    """With CONVERSEG_EXIT_WITH_PARENT=1 (the launch file sets it): SIGTERM when the parent dies (Linux), so
    the node never outlives a launch that was killed outright."""
    if os.environ.get("CONVERSEG_EXIT_WITH_PARENT") != "1" or not sys.platform.startswith("linux"):
        return
    import ctypes

    parent = os.getppid()
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent:  # the parent died before prctl took effect
        os.kill(os.getpid(), signal.SIGTERM)


def _tune_malloc() -> None:
    """glibc: at most 2 malloc arenas and a fixed 128 KiB mmap threshold, however the node is started, so
    frames and models freed are handed back to the OS and RSS stays flat under load and across model
    loads (measured: 20 activate/deactivate cycles grew it 2.3 MiB a cycle before, 0.1 after)."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(M_ARENA_MAX, 2)
        libc.mallopt(M_MMAP_THRESHOLD, 128 * 1024)
    except (OSError, AttributeError):  # not glibc
        pass


def main(args: list[str] | None = None) -> NoReturn:
    """Start converseg_node (autostart: configure + activate), spin until shutdown, exit with its code."""
    for sig in (signal.SIGINT, signal.SIGTERM):  # while importing torch & co.; the node installs its own
        signal.signal(sig, _exit_quietly)
    _exit_with_parent()
    _tune_malloc()
    faulthandler.register(signal.SIGUSR1, all_threads=True)  # `kill -USR1 <pid>`: every thread's stack
    try:  # before rclpy starts: Fast DDS reads its profile when the first participant is created
        profile = dds_profile.apply()
    except ValueError as exc:
        print(f"converseg_node: {exc}", file=sys.stderr)
        os._exit(2)
    from converseg_ros.ros.run import main as node_main

    code = node_main(args, startup_log=[profile.describe()])
    # The node has shut down cleanly; skip the interpreter's teardown of torch & co. (seconds on a loaded
    # CPU, long enough for `ros2 launch` to escalate to SIGTERM and report a failure).
    sys.stdout.flush()
    sys.stderr.flush()
    if sys.platform.startswith("linux"):
        import ctypes

        ctypes.CDLL(None).fflush(None)  # C stdio (rcutils logging) too
    os._exit(code)


if __name__ == "__main__":
    main()
