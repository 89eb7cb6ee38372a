"""Which Fast DDS profile converseg_node runs with: chosen, and set in the environment, before rclpy starts.

Two shipped profiles (config/, docs/ros.md "Camera set-up"); both move user data off Fast DDS's shared-memory
transport (512 KiB per writer: larger best-effort frames are lost) onto UDP with 4 MiB socket buffers:

- ``local`` (``fastdds_large_frames.xml``): user data on 127.0.0.1 only. For ROS_AUTOMATIC_DISCOVERY_RANGE
  LOCALHOST (or OFF), where nothing can come from another host anyway: the rmw then adds its own
  shared-memory transport, and only a 127.0.0.1 locator keeps cameras off it.
- ``network`` (``fastdds_large_frames_network.xml``): UDP on every interface, no shared memory. For the
  default range (SUBNET) and SYSTEM_DEFAULT: cameras on this host (over loopback) and on other hosts arrive.

The choice (launch argument ``fastdds_profile``, or CONVERSEG_FASTDDS_PROFILE for ``ros2 run`` /
``python -m``): ``auto`` or ``""`` = the profile matching the discovery range; ``local``; ``network``;
``none`` = no profile; or a file. A profile already named in FASTDDS_DEFAULT_PROFILES_FILE (Fast DDS 3.x,
Kilted) or FASTRTPS_DEFAULT_PROFILES_FILE (Fast DDS 2.x, Humble/Jazzy) wins over ``auto``. Whatever is
chosen is written to both variables, since each Fast DDS reads only its own.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass
from pathlib import Path

PROFILE_VARIABLES = ("FASTDDS_DEFAULT_PROFILES_FILE", "FASTRTPS_DEFAULT_PROFILES_FILE")
CHOICE_VARIABLE = "CONVERSEG_FASTDDS_PROFILE"
PROFILES = {"local": "fastdds_large_frames.xml", "network": "fastdds_large_frames_network.xml"}
CHOICES = ("auto", "local", "network", "none")  # or a file
_LOCALHOST_ONLY_DISTROS = ("humble", "iron", "jazzy")  # read ROS_LOCALHOST_ONLY; Kilted and later ignore it


@dataclass(frozen=True)
class Profile:
    """The chosen profile: ``mode`` (local, network, none, file, caller), the file or None, and why."""

    mode: str
    path: Path | None
    reason: str

    def env(self) -> dict[str, str]:
        """Both profile variables for this choice (empty for ``none``)."""
        return {name: str(self.path) for name in PROFILE_VARIABLES} if self.path is not None else {}

    def describe(self) -> str:
        """One log line: which profile and why (the node logs it at start)."""
        if self.path is None:
            return f"Fast DDS profile: none ({self.reason}); large best-effort frames may be lost"
        return f"Fast DDS profile: {self.mode} ({self.path}; {self.reason})"


def config_dir() -> Path:
    """The shipped config/: the source tree's, else the install's share/converseg_ros/config."""
    candidates = [Path(__file__).resolve().parents[1] / "config"]
    candidates.append(Path(sys.prefix) / "share" / "converseg_ros" / "config")
    try:
        from ament_index_python.packages import get_package_share_directory

        candidates.append(Path(get_package_share_directory("converseg_ros")) / "config")
    except Exception:  # noqa: BLE001 - no ament index (pip install): the other candidates
        pass
    for folder in candidates:
        if (folder / PROFILES["local"]).is_file():
            return folder
    return candidates[0]


def _honours_localhost_only(environ: Mapping[str, str]) -> bool:
    """Whether this distro's rmw reads ROS_LOCALHOST_ONLY (Humble, Iron, Jazzy; Kilted removed it)."""
    distro = environ.get("ROS_DISTRO", "").lower()
    if distro:
        return distro in _LOCALHOST_ONLY_DISTROS
    try:
        from importlib.metadata import version

        return int(version("rclpy").split(".")[0]) < 8  # 3.x Humble, 7.x Jazzy, 9.x Kilted
    except Exception:  # noqa: BLE001 - rclpy not installed as a distribution: assume the newer behaviour
        return False


def discovery_range(environ: Mapping[str, str] | None = None) -> str:
    """How far DDS discovery reaches, as the rmw will read it: LOCALHOST, SUBNET, OFF or SYSTEM_DEFAULT.

    ROS_LOCALHOST_ONLY=1 wins where the distro reads it (Humble only knows that variable; Jazzy still honours
    it); otherwise ROS_AUTOMATIC_DISCOVERY_RANGE, whose default is SUBNET.
    """
    environ = os.environ if environ is None else environ
    if environ.get("ROS_LOCALHOST_ONLY") == "1" and _honours_localhost_only(environ):
        return "LOCALHOST"
    value = environ.get("ROS_AUTOMATIC_DISCOVERY_RANGE", "").strip().upper()
    return value if value in ("LOCALHOST", "SUBNET", "OFF", "SYSTEM_DEFAULT") else "SUBNET"


def choose(choice: str = "", environ: Mapping[str, str] | None = None, config: Path | None = None) -> Profile:
    """The profile for ``choice`` (see the module docstring) in ``environ`` (default: this process's)."""
    environ = os.environ if environ is None else environ
    choice = choice.strip()
    config = config_dir() if config is None else config
    if choice in ("", "auto"):
        for name in PROFILE_VARIABLES:
            if environ.get(name):
                return Profile(_mode_of(Path(environ[name])), Path(environ[name]), f"{name} set by the caller")
        span = discovery_range(environ)
        mode = "local" if span in ("LOCALHOST", "OFF") else "network"
        scope = "127.0.0.1 only" if mode == "local" else "cameras on this and other hosts"
        return Profile(mode, config / PROFILES[mode], f"discovery range {span}: {scope}")
    if choice == "none":
        return Profile("none", None, "fastdds_profile none")
    if choice in PROFILES:
        return Profile(choice, config / PROFILES[choice], f"fastdds_profile {choice}")
    path = Path(choice).expanduser()
    if not path.is_file():
        raise ValueError(f"Fast DDS profile {choice!r}: not one of {', '.join(CHOICES)} and no such file")
    return Profile("file", path.resolve(), "fastdds_profile file")


def _mode_of(path: Path) -> str:
    """``local``/``network`` for the shipped files (wherever installed), else ``caller``."""
    for mode, name in PROFILES.items():
        if path.name == name:
            return mode
    return "caller"


def apply(choice: str | None = None, environ: MutableMapping[str, str] | None = None) -> Profile:
    """Choose (``choice`` default: CONVERSEG_FASTDDS_PROFILE) and write both profile variables into
    ``environ`` (default: this process's environment; call before rclpy creates its first node)."""
    environ = os.environ if environ is None else environ
    profile = choose(environ.get(CHOICE_VARIABLE, "") if choice is None else choice, environ)
    if profile.path is None:
        for name in PROFILE_VARIABLES:
            environ.pop(name, None)
    else:
        environ.update(profile.env())
    return profile
