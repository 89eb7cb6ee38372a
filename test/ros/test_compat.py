"""Distro differences: the rclpy compatibility helpers against this rclpy and against Humble's module layout
(faked: Humble has rclpy.qos_event instead of rclpy.event_handler and no Subscription.get_publisher_count),
the discovery range each distro reads, and the Fast DDS profile chosen from it before rclpy starts."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
import types
from pathlib import Path

import pytest
from ros_env import INSTALLED, REPO
from ros_helpers import spin_until
from std_msgs.msg import String

from converseg_ros import dds_profile
from converseg_ros.ros import compat
from converseg_ros.ros.msgs import qos


def test_event_callbacks_come_from_qos_event_on_humble(monkeypatch: pytest.MonkeyPatch) -> None:
    class HumbleCallbacks:  # stands for rclpy.qos_event.SubscriptionEventCallbacks
        pass

    monkeypatch.setitem(sys.modules, "rclpy.event_handler", None)  # `import rclpy.event_handler` fails
    humble = types.SimpleNamespace(SubscriptionEventCallbacks=HumbleCallbacks)
    monkeypatch.setitem(sys.modules, "rclpy.qos_event", humble)
    try:
        assert importlib.reload(compat).SubscriptionEventCallbacks is HumbleCallbacks
    finally:
        monkeypatch.undo()
        importlib.reload(compat)
    from rclpy.event_handler import SubscriptionEventCallbacks  # this rclpy (Jazzy, Kilted)

    assert compat.SubscriptionEventCallbacks is SubscriptionEventCallbacks


def test_publisher_count_with_and_without_get_publisher_count(ros) -> None:  # noqa: ANN001
    topic = "/cs_compat_count"
    sub = ros.create_subscription(String, topic, lambda msg: None, qos.output_qos())
    humble_sub = types.SimpleNamespace(topic_name=sub.topic_name)  # Humble: no get_publisher_count()
    assert compat.publisher_count(ros, sub) == compat.publisher_count(ros, humble_sub) == 0
    pub = ros.create_publisher(String, topic, qos.output_qos())
    try:
        assert spin_until(ros, lambda: compat.publisher_count(ros, sub) == 1, 10.0)
        assert sub.get_publisher_count() == compat.publisher_count(ros, humble_sub) == 1
    finally:
        ros.destroy_publisher(pub)
        ros.destroy_subscription(sub)


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({"ROS_DISTRO": "humble", "ROS_LOCALHOST_ONLY": "1"}, "LOCALHOST"),  # Humble reads only this one
        ({"ROS_DISTRO": "humble"}, "SUBNET"),
        ({"ROS_DISTRO": "jazzy", "ROS_LOCALHOST_ONLY": "1", "ROS_AUTOMATIC_DISCOVERY_RANGE": "SUBNET"}, "LOCALHOST"),
        ({"ROS_DISTRO": "kilted", "ROS_LOCALHOST_ONLY": "1"}, "SUBNET"),  # Kilted removed ROS_LOCALHOST_ONLY
        ({"ROS_DISTRO": "kilted", "ROS_AUTOMATIC_DISCOVERY_RANGE": "localhost"}, "LOCALHOST"),
        ({"ROS_AUTOMATIC_DISCOVERY_RANGE": "OFF"}, "OFF"),
        ({}, "SUBNET"),
    ],
)
def test_discovery_range_as_each_distro_reads_it(environ: dict[str, str], expected: str) -> None:
    assert dds_profile.discovery_range(environ) == expected


def test_profile_follows_the_discovery_range_and_sets_both_variables(tmp_path: Path) -> None:
    config = REPO / "config"
    env = {"ROS_DISTRO": "humble", "ROS_LOCALHOST_ONLY": "1"}
    profile = dds_profile.apply(None, env)
    assert profile.mode == "local" and "LOCALHOST" in profile.describe()
    assert env["FASTRTPS_DEFAULT_PROFILES_FILE"] == env["FASTDDS_DEFAULT_PROFILES_FILE"] == str(profile.path)
    assert profile.path == config / "fastdds_large_frames.xml"
    env = {"ROS_DISTRO": "jazzy"}
    assert dds_profile.apply(None, env).mode == "network"
    assert env["FASTRTPS_DEFAULT_PROFILES_FILE"].endswith("fastdds_large_frames_network.xml")
    env["CONVERSEG_FASTDDS_PROFILE"] = "none"  # removes a profile it inherited
    assert "none" in dds_profile.apply(None, env).describe()
    assert not {"FASTDDS_DEFAULT_PROFILES_FILE", "FASTRTPS_DEFAULT_PROFILES_FILE"} & set(env)
    mine = tmp_path / "mine.xml"
    mine.write_text("<dds/>")
    env = {"FASTRTPS_DEFAULT_PROFILES_FILE": str(mine), "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST"}
    assert dds_profile.apply(None, env).mode == "caller" and env["FASTDDS_DEFAULT_PROFILES_FILE"] == str(mine)
    with pytest.raises(ValueError, match="local, network, none"):
        dds_profile.choose("loopback", {})


def test_scripts_and_tests_keep_dds_local_for_every_distro() -> None:
    """scripts/ros_env.sh (both distros) and the test environment set both localhost variables."""
    assert os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] == "LOCALHOST" and os.environ["ROS_LOCALHOST_ONLY"] == "1"
    if INSTALLED:
        pytest.skip("colcon test: this repository's venvs (scripts/ros_env.sh) are not part of a ROS workspace")
    for distro in ("kilted", "jazzy"):
        out = subprocess.run(
            ["bash", "-c", f"export CONVERSEG_ROS_DISTRO={distro} && . {REPO}/scripts/ros_env.sh && "
             'echo "$ROS_AUTOMATIC_DISCOVERY_RANGE $ROS_LOCALHOST_ONLY $CONVERSEG_ROS_DISTRO $VIRTUAL_ENV"'],
            capture_output=True, text=True, check=True,
        ).stdout.split()
        assert out[:3] == ["LOCALHOST", "1", distro], out
        assert out[3].endswith(".venv" if distro == "kilted" else ".venv-jazzy"), out


def test_every_ros_library_and_module_comes_from_this_distro(ros) -> None:  # noqa: ANN001
    """Two distros side by side (.venv-jazzy shares .venv's non-ROS packages): with a node, publishers and our
    messages in use, every ROS shared library mapped into this process and every ROS Python module loaded
    comes from this interpreter's own venv or this distro's install folder, never the other distro's."""
    import re

    from ros_env import INSTALL

    from converseg_ros.msg import SegmentationResult  # noqa: F401 - loads our typesupport libraries

    own = (os.path.realpath(sys.prefix), os.path.realpath(INSTALL))
    ros_lib = re.compile(r"/(lib(rcl|rmw|rosidl|fastrtps|fastdds|fastcdr|rcutils|rcpputils|tracetools|"
                         r"ament_index|spdlog|yaml)[^/]*|lib[^/]*__rosidl_[^/]*)\.so[^/]*$|/ros_[^/]+\.libs/")
    mapped = {line.split()[-1] for line in Path("/proc/self/maps").read_text().splitlines() if "/" in line}
    libraries = sorted(p for p in mapped if ros_lib.search(p))
    assert libraries, "no ROS library mapped?"
    foreign = [p for p in libraries if not os.path.realpath(p).startswith(own)]
    assert not foreign, f"ROS libraries from elsewhere: {foreign[:10]}"
    ros_modules = ("rclpy", "rcl_interfaces", "rosidl_", "rmw", "std_msgs", "sensor_msgs", "builtin_interfaces",
                   "diagnostic_msgs", "lifecycle_msgs", "std_srvs", "geometry_msgs", "ament_index_python")
    files = {name: getattr(mod, "__file__", None) for name, mod in list(sys.modules.items())
             if name.split(".")[0].startswith(ros_modules)}
    foreign = {n: f for n, f in files.items() if f and not os.path.realpath(f).startswith(own)}
    assert "rclpy" in files and not foreign, foreign
