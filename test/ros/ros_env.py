"""Environment for ROS tests, set before rclpy is imported (mirrors scripts/ros_env.sh).

DDS discovery stays on localhost, each test session gets its own domain id and a temporary log folder,
and the interfaces built by scripts/build_interfaces.sh (install/) become importable.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
# The distro of this interpreter's venv (scripts/distro.sh): .venv = Kilted, .venv-jazzy = Jazzy.
DISTRO = "jazzy" if Path(sys.prefix).name == ".venv-jazzy" else "kilted"
INSTALL = REPO / ("install" if DISTRO == "kilted" else f"install-{DISTRO}")
# `colcon test` (CMakeLists.txt): the workspace's install prefix, already built; nothing to build here.
INSTALLED = os.environ.get("CONVERSEG_TEST_INSTALL", "")
if INSTALLED:
    INSTALL = Path(INSTALLED)
SITE = INSTALL / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages"


def _prepend(name: str, value: str) -> None:
    parts = [p for p in os.environ.get(name, "").split(os.pathsep) if p]
    if value not in parts:
        os.environ[name] = os.pathsep.join([value, *parts])


def setup() -> None:
    """Export the variables (idempotent) and build the interfaces if they are missing or outdated."""
    os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"  # hard rule: no traffic off this machine
    os.environ["ROS_LOCALHOST_ONLY"] = "1"  # the same for Humble (Jazzy honours it too; Kilted ignores it)
    os.environ["CONVERSEG_ROS_DISTRO"] = DISTRO  # scripts/build_interfaces.sh below builds this distro's install
    os.environ.setdefault("CONVERSEG_TEST_DOMAIN", str(os.getpid() % 100 + 1))
    os.environ["ROS_DOMAIN_ID"] = os.environ["CONVERSEG_TEST_DOMAIN"]
    if "CONVERSEG_TEST_ROS_LOG" not in os.environ:
        os.environ["CONVERSEG_TEST_ROS_LOG"] = tempfile.mkdtemp(prefix="converseg-roslog-")
    os.environ["ROS_LOG_DIR"] = os.environ["ROS_HOME"] = os.environ["CONVERSEG_TEST_ROS_LOG"]
    os.environ.setdefault("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp")
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    if not INSTALLED:
        subprocess.run(
            ["bash", str(REPO / "scripts" / "build_interfaces.sh")], check=True, stdout=subprocess.DEVNULL
        )
    _prepend("AMENT_PREFIX_PATH", sys.prefix)
    _prepend("AMENT_PREFIX_PATH", str(INSTALL))
    _prepend("LD_LIBRARY_PATH", str(INSTALL / "lib"))  # read by rcpputils when loading typesupports
    _prepend("PYTHONPATH", str(SITE))
    # The dynamic loader read LD_LIBRARY_PATH when this process started; rosidl's typesupport dispatch
    # dlopens our libraries by bare name, which finds them once they are loaded (subprocesses inherit
    # LD_LIBRARY_PATH normally).
    import ctypes

    for lib in (
        "generator_c",
        "typesupport_c",
        "typesupport_introspection_c",
        "typesupport_fastrtps_c",
        "typesupport_cpp",
        "typesupport_introspection_cpp",
        "typesupport_fastrtps_cpp",
        "generator_py",
    ):
        path = INSTALL / "lib" / f"libconverseg_ros__rosidl_{lib}.so"
        if path.exists():
            ctypes.CDLL(str(path), mode=ctypes.RTLD_GLOBAL)
    if str(SITE) not in sys.path:
        sys.path.insert(0, str(SITE))
    import converseg_ros

    if str(SITE / "converseg_ros") not in converseg_ros.__path__:  # already imported from the source tree
        converseg_ros.__path__.append(str(SITE / "converseg_ros"))
