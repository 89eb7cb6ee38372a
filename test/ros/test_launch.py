"""launch/segment.launch.py: its plain helpers here, and, where ROS 2 `launch`/`launch_ros` import (a ROS
workspace), the launch file itself run as `ros2 launch` runs it: frames and a query in, a result out, SIGINT,
nothing left; a failing node fails the launch; SIGTERM to the launch leaves no node. Also: a node started by
a parent that is killed outright stops (what the launch file asks for with CONVERSEG_EXIT_WITH_PARENT)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import yaml
from ros_env import INSTALL
from ros_helpers import call, image_msg, photo, spin_for, spin_until
from ros_nodes import REPO, start_node

from converseg_ros.ros.tools.launch_support import (
    camera_setup,
    fastdds_profile_env,
    normalize_namespace,
    rviz2_missing,
    rviz_layout_for,
    rviz_layout_for_cameras,
    write_rviz_layout,
)
from converseg_ros.ros.tools.node_command import FASTDDS_PROFILE, node_command, node_env

LAYOUT = REPO / "rviz" / "converseg.rviz"
NO_LAUNCH = (
    "ROS 2 'launch'/'launch_ros' are not installable from the package registries here (a ROS workspace has them)"
)


def rviz_topics(text: str) -> set[str]:
    displays = yaml.safe_load(text)["Visualization Manager"]["Displays"]
    return {d["Topic"]["Value"] for d in displays if "Topic" in d}


@pytest.mark.parametrize(
    ("namespace", "prefix"), [("converseg", "/converseg"), ("/robot/cam1/", "/robot/cam1"), ("", "")]
)
def test_rviz_layout_follows_the_namespace(namespace: str, prefix: str, tmp_path: Path) -> None:
    text = LAYOUT.read_text()
    moved = rviz_layout_for(text, namespace)
    assert rviz_topics(moved) == {f"{prefix}/overlay", f"{prefix}/mask", f"{prefix}/markers"}
    same_lines = [a == b for a, b in zip(text.splitlines(), moved.splitlines(), strict=True)]
    assert same_lines.count(False) == (0 if prefix == "/converseg" else 3)  # only the three topics change
    written = write_rviz_layout(LAYOUT, namespace)
    assert written.read_text() == moved and written.name == "converseg.rviz"
    assert normalize_namespace(namespace) == prefix


def test_rviz_layout_per_camera_and_removed_at_exit(tmp_path: Path) -> None:
    """cameras:=head,wrist: one overlay/mask/markers set per camera under <namespace>/<camera>/, the rest once;
    the temporary layout is gone when the (launch) process that wrote it exits."""
    text = rviz_layout_for_cameras(LAYOUT.read_text(), "/robot", ["head", "wrist"])
    displays = yaml.safe_load(text)["Visualization Manager"]["Displays"]
    assert rviz_topics(text) == {f"/robot/{c}/{t}" for c in ("head", "wrist") for t in ("overlay", "mask", "markers")}
    names = [d["Name"] for d in displays]
    assert len(names) == len(set(names)) == 7 and "ConverSeg overlay (wrist)" in names and "Camera frame" in names
    assert set(yaml.safe_load(text)["Window Geometry"]) >= {"ConverSeg overlay (head)", "ConverSeg mask (wrist)"}
    assert rviz_layout_for_cameras(LAYOUT.read_text(), "/robot", [""]) == rviz_layout_for(LAYOUT.read_text(), "/robot")
    code = (
        "from pathlib import Path\nfrom converseg_ros.ros.tools.launch_support import write_rviz_layout\n"
        f"print(write_rviz_layout(Path({str(LAYOUT)!r}), 'robot', ['head', 'wrist']))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    written = Path(out.stdout.strip())
    assert written.name == "converseg.rviz" and not written.exists() and not written.parent.exists()


def test_rviz2_found_through_the_ament_index_like_launch_ros(tmp_path: Path, monkeypatch) -> None:  # noqa: ANN001
    """A prefix that registers rviz2 but lacks the executable, then one that has it, then none at all."""
    prefix = tmp_path / "opt_ros"
    (prefix / "share" / "ament_index" / "resource_index" / "packages").mkdir(parents=True)
    (prefix / "share" / "ament_index" / "resource_index" / "packages" / "rviz2").write_text("")
    monkeypatch.setenv("AMENT_PREFIX_PATH", str(prefix))
    assert "lib/rviz2/rviz2 is missing" in rviz2_missing()
    exe = prefix / "lib" / "rviz2" / "rviz2"
    exe.parent.mkdir(parents=True)
    exe.write_text("#!/bin/sh\n")
    exe.chmod(0o755)
    assert rviz2_missing() is None
    monkeypatch.setenv("AMENT_PREFIX_PATH", str(tmp_path / "empty"))
    assert "not installed" in rviz2_missing()


def test_fastdds_profile_choice(tmp_path: Path) -> None:
    """The launch argument fastdds_profile -> the node's environment: both Fast DDS variables, and the choice."""
    config = REPO / "config"
    local, network = str(config / "fastdds_large_frames.xml"), str(config / "fastdds_large_frames_network.xml")
    both = ("FASTDDS_DEFAULT_PROFILES_FILE", "FASTRTPS_DEFAULT_PROFILES_FILE")
    localhost = {"ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST"}
    auto = {"CONVERSEG_FASTDDS_PROFILE": "auto"}
    assert fastdds_profile_env("", config, localhost) == {**auto, **dict.fromkeys(both, local)}
    assert fastdds_profile_env("auto", config, {}) == {**auto, **dict.fromkeys(both, network)}
    mine = tmp_path / "mine.xml"
    mine.write_text("<dds/>")
    for name in both:  # yours wins, whichever variable names it, and then names it for both Fast DDS versions
        assert fastdds_profile_env("", config, {name: str(mine)}) == {**auto, **dict.fromkeys(both, str(mine))}
    assert fastdds_profile_env("none", config, {both[0]: str(mine)}) == {"CONVERSEG_FASTDDS_PROFILE": "none"}
    assert fastdds_profile_env("network", config, localhost)[both[1]] == network
    assert fastdds_profile_env(str(mine), config, {})[both[0]] == str(mine)
    with pytest.raises(ValueError, match="no such file"):
        fastdds_profile_env("/no/such.xml", config, {})


@pytest.mark.timeout(150)
def test_camera_arguments() -> None:
    assert camera_setup("", "", "/cam/raw") == (
        [""], [("image", "/cam/raw"), ("image/compressed", "/cam/raw/compressed")]
    )
    assert camera_setup(" head, wrist ", "", "/cam/raw") == (["head", "wrist"], [])
    names, remaps = camera_setup("head,wrist", "/h/raw, /w/raw/", "/cam/raw")
    assert names == ["head", "wrist"]
    assert remaps == [("head/image", "/h/raw"), ("head/image/compressed", "/h/raw/compressed"),
                      ("wrist/image", "/w/raw/"), ("wrist/image/compressed", "/w/raw/compressed")]
    with pytest.raises(ValueError, match="1 topics for 2 cameras"):
        camera_setup("head,wrist", "/h/raw", "")


def test_launch_camera_list_reaches_the_node(ros, tmp_path: Path) -> None:  # noqa: ANN001
    """What the launch file makes of cameras:=head,wrist image_topics:=...: the node's parameter and remappings,
    given to a real node; a frame on the wrist's own topic is answered on <namespace>/wrist/result."""
    from sensor_msgs.msg import Image

    from converseg_ros.msg import SegmentationQuery, SegmentationResult
    from converseg_ros.ros.msgs import qos

    names, remaps = camera_setup("head,wrist", "/cs_lcam_raw/head,/cs_lcam_raw/wrist", "")
    extra = ["-p", f"cameras:=[{', '.join(names)}]"] + [a for f, t in remaps for a in ("-r", f"{f}:={t}")]
    node = start_node(ros, "/cs_lcam", extra, tmp_path / "node.log")
    try:
        results = []
        ros.create_subscription(SegmentationResult, "/cs_lcam/wrist/result", results.append, qos.output_qos(10))
        image = ros.create_publisher(Image, "/cs_lcam_raw/wrist", qos.output_qos(1))
        query = ros.create_publisher(SegmentationQuery, "/cs_lcam/query", qos.command_qos())
        assert spin_until(ros, lambda: image.get_subscription_count() and query.get_subscription_count(), 20.0)
        query.publish(SegmentationQuery(id="lq", text="the cup", mode=SegmentationQuery.MODE_ONCE, camera="wrist"))
        spin_for(ros, 0.3)
        image.publish(image_msg(ros, photo(96), "wrist_frame"))
        assert spin_until(ros, lambda: results, 20.0), node.output()[-2000:]
        assert results[0].success and results[0].camera == "wrist" and results[0].header.frame_id == "wrist_frame"
        assert "cameras: head, wrist" in node.output()
    finally:
        assert node.stop() in (0, -2)


def test_node_stops_when_its_parent_is_killed(ros, tmp_path: Path) -> None:  # noqa: ANN001
    """CONVERSEG_EXIT_WITH_PARENT=1 (set by the launch file): SIGKILL the parent, the node leaves cleanly."""
    from converseg_ros.srv import Segment

    log = tmp_path / "node.log"
    cmd = node_command("/cs_orphan", {"preset": "tiny", "device": "cpu"})
    parent_code = (
        "import subprocess, sys\n"
        f"p = subprocess.Popen({cmd!r}, stdout=open({str(log)!r}, 'w'), stderr=subprocess.STDOUT)\n"
        "print(p.pid, flush=True)\n"
        "p.wait()\n"
    )
    env = dict(os.environ, CONVERSEG_EXIT_WITH_PARENT="1")
    parent = subprocess.Popen([sys.executable, "-c", parent_code], stdout=subprocess.PIPE, text=True, env=env)
    node = psutil.Process(int(parent.stdout.readline()))
    try:
        client = ros.create_client(Segment, "/cs_orphan/segment")
        assert client.wait_for_service(timeout_sec=90.0), log.read_text()[-2000:]
        spin_until(ros, lambda: "]: active" in log.read_text(), 30.0)
        parent.kill()
        parent.wait(10)
        node.wait(30)  # raises psutil.TimeoutExpired if the node outlives its parent
        out = log.read_text()
        assert "SIGTERM: shutting down" in out and "Traceback" not in out, out[-2000:]
    finally:
        if node.is_running():
            node.kill()


# -- the launch file itself (needs launch + launch_ros) -------------------------------------------------
def _launch_available() -> str | None:
    try:
        import launch_ros  # noqa: F401

        import launch
    except ImportError as exc:
        return f"{NO_LAUNCH}: {exc}"
    if not hasattr(launch, "LaunchDescription"):  # only this repository's launch/ folder (namespace package)
        return NO_LAUNCH
    return None


RUNNER = """
import sys
try:  # what `ros2 launch <file> <args>` calls
    from ros2launch.api import launch_a_launch_file
    sys.exit(launch_a_launch_file(launch_file_path=sys.argv[1], launch_file_arguments=sys.argv[2:]))
except ImportError:
    from launch import LaunchService
    from launch.actions import IncludeLaunchDescription
    from launch.launch_description_sources import PythonLaunchDescriptionSource
    service = LaunchService(argv=sys.argv[2:])
    args = [tuple(a.split(":=", 1)) for a in sys.argv[2:]]
    service.include_launch_description(
        IncludeLaunchDescription(PythonLaunchDescriptionSource(sys.argv[1]), launch_arguments=args)
    )
    sys.exit(service.run())
"""


def start_launch(tmp_path: Path, args: list[str]) -> tuple[subprocess.Popen, Path]:
    """`ros2 launch converseg_ros segment.launch.py <args>` against the package installed in install/."""
    log = tmp_path / "launch.log"
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"  # the nodes' python3
    env["PYTHONUNBUFFERED"] = "1"
    launch_file = INSTALL / "share" / "converseg_ros" / "launch" / "segment.launch.py"
    proc = subprocess.Popen(
        [sys.executable, "-c", RUNNER, str(launch_file), *args],
        stdout=open(log, "w"),  # noqa: SIM115
        stderr=subprocess.STDOUT,
        env=env,
        start_new_session=True,
    )
    return proc, log


def stop_group(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)


@pytest.mark.timeout(240)
def test_launch_file_end_to_end_then_sigint_leaves_nothing(ros, tmp_path: Path) -> None:  # noqa: ANN001
    reason = _launch_available()
    if reason:
        pytest.skip(reason)
    from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image

    from converseg_ros.srv import Segment

    ns, camera = "/cs_launch", "/cs_launch_camera/image_raw"
    proc, log = start_launch(
        tmp_path,
        [f"namespace:={ns}", f"image_topic:={camera}", "preset:=tiny", "device:=cpu", "use_rviz:=true"],
    )
    try:
        launch = psutil.Process(proc.pid)
        client = ros.create_client(Segment, f"{ns}/segment")
        deadline = time.monotonic() + 150.0
        while not ("]: active" in log.read_text() and client.wait_for_service(timeout_sec=0.5)):
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
        children = launch.children(recursive=True)
        assert any("converseg_node" in " ".join(c.cmdline()) for c in children), children
        if rviz2_missing():
            assert "use_rviz: starting without RViz" in log.read_text()
        camera_qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=10, reliability=ReliabilityPolicy.RELIABLE)
        pub = ros.create_publisher(Image, camera, camera_qos)
        rgb = photo(160)
        future = client.call_async(Segment.Request(query="the cup", query_id="launched", frame_policy="next"))
        spin_for(ros, 0.5)
        frame = image_msg(ros, rgb, "launch_cam")
        assert spin_until(ros, future.done, 30.0, step=lambda: pub.publish(frame)), log.read_text()[-3000:]
        resp = future.result()
        assert resp.success, resp.message
        assert resp.result.header.frame_id == "launch_cam" and resp.result.mask.width == rgb.shape[1]
        assert call(ros, client, Segment.Request(query="  ")).message.startswith("bad query")
        os.kill(proc.pid, signal.SIGINT)  # as Ctrl-C on `ros2 launch`
        assert proc.wait(60) == 0, log.read_text()[-3000:]
        psutil.wait_procs(children, timeout=10)
        left = [c for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE]
        assert not left, f"still running after the launch ended: {left}"
        assert "Traceback" not in log.read_text(), log.read_text()[-3000:]
    finally:
        stop_group(proc)


@pytest.mark.timeout(120)
def test_launch_fails_when_the_node_fails(tmp_path: Path) -> None:
    """Unknown preset: configure fails, the node exits 2, the launch shuts down and exits non-zero."""
    reason = _launch_available()
    if reason:
        pytest.skip(reason)
    proc, log = start_launch(tmp_path, ["namespace:=/cs_launch_fail", "preset:=no_such_preset", "device:=cpu"])
    try:
        code = proc.wait(90)
        out = log.read_text()
        assert code != 0, out[-3000:]
        assert "converseg_node failed with exit code 2" in out, out[-3000:]
    finally:
        stop_group(proc)


@pytest.mark.timeout(180)
def test_launch_killed_with_sigterm_leaves_no_node(tmp_path: Path) -> None:
    """launch itself leaves its processes running on SIGTERM ("using SIGTERM can result in orphaned
    processes"); the node it started stops anyway (CONVERSEG_EXIT_WITH_PARENT from the launch file)."""
    reason = _launch_available()
    if reason:
        pytest.skip(reason)
    proc, log = start_launch(tmp_path, ["namespace:=/cs_launch_term", "preset:=tiny", "device:=cpu"])
    try:
        deadline = time.monotonic() + 150.0
        while "]: active" not in log.read_text():
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.2)
        children = psutil.Process(proc.pid).children(recursive=True)
        assert children
        os.kill(proc.pid, signal.SIGTERM)
        proc.wait(60)
        gone, alive = psutil.wait_procs(children, timeout=30)
        assert not [c for c in alive if c.status() != psutil.STATUS_ZOMBIE], alive
    finally:
        stop_group(proc)


def test_shipped_profile_is_the_one_the_node_gets() -> None:
    """node_env() (demo, benches, tests) gives the node what the launch file gives it."""
    assert FASTDDS_PROFILE == REPO / "config" / "fastdds_large_frames.xml" and FASTDDS_PROFILE.is_file()
    env = node_env({"ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST"})
    assert env["FASTDDS_DEFAULT_PROFILES_FILE"] == env["FASTRTPS_DEFAULT_PROFILES_FILE"] == str(FASTDDS_PROFILE)
    assert env["MALLOC_ARENA_MAX"] == "2" and env["CONVERSEG_FASTDDS_PROFILE"] == "auto"
