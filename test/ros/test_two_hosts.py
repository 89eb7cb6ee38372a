"""A camera on another host: the camera publisher in one network namespace, converseg_node in another, a veth
pair between them and nothing else (netns.py). The node is started the documented ways with their defaults —
``python -m converseg_ros.node``; the executable ``ros2 run converseg_ros converseg_node`` runs
(lib/converseg_ros/converseg_node, with the environment ``ros2 run`` gives it: none of ours); and that
executable with the environment and parameters launch/segment.launch.py gives it (``ros2 launch`` itself
needs ``launch``/``launch_ros``, which are not installable here) — and ≥ 95 % of the frames of a reliable and
a best-effort camera, 640x480 rgb8 at 30 Hz and 1280x720 rgb8 at 2 Hz, must be delivered (complete at the
node: published minus what the node's middleware reports lost; the node's callback takes the newest of them,
see two_host_camera.py), and the node must have taken frames of every camera. Discovery uses the ROS
default range (SUBNET), which inside the namespaces reaches only the other namespace; a packet sniffer on
the host's own interfaces checks that no DDS packet of the test's domain appears there.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from netns import NamespacePair, RtpsSniffer, cannot_make_namespaces, domain_ports
from ros_env import INSTALL

from converseg_ros import dds_profile
from converseg_ros.ros.tools.launch_support import fastdds_profile_env
from converseg_ros.ros.tools.node_command import DEFAULT_PARAMS_FILE

CASES = [  # camera name: reliability, width, height, rate, frames
    "c640rel:reliable:640:480:30:60",
    "c640be:best_effort:640:480:30:60",
    "c720rel:reliable:1280:720:2:16",
    "c720be:best_effort:1280:720:2:16",
]
WAYS = ("python -m", "ros2 run", "launch")
REQUIRED = 0.95
NS = "/cs2h"


def _node(way: str, pair: NamespacePair, log: Path, namespace: str) -> subprocess.Popen:
    """converseg_node in the node host's namespace, started ``way`` with that way's environment."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("ROS_AUTOMATIC_DISCOVERY_RANGE", "ROS_LOCALHOST_ONLY", dds_profile.CHOICE_VARIABLE,
                        *dds_profile.PROFILE_VARIABLES)}  # a robot's shell: the ROS defaults
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"  # `python3` of the venv
    cameras = ", ".join(case.split(":")[0] for case in CASES)
    params = ["-p", "preset:=tiny", "-p", "device:=cpu", "-p", f"cameras:=[{cameras}]"]
    executable = INSTALL / "lib" / "converseg_ros" / "converseg_node"  # where `ros2 run` finds it
    if way == "python -m":
        cmd = [sys.executable, "-m", "converseg_ros.node"]
    else:
        cmd = [str(executable)]
    params_file = DEFAULT_PARAMS_FILE
    if way == "launch":  # what segment.launch.py's Node action sets, with its default arguments
        env.update({"MALLOC_ARENA_MAX": "2", "CONVERSEG_EXIT_WITH_PARENT": "1"})
        env.update(fastdds_profile_env("auto", INSTALL / "share" / "converseg_ros" / "config", env))
        params_file = INSTALL / "share" / "converseg_ros" / "config" / "segment.yaml"
        params += ["--log-level", "info"]
    if way == "no profile":  # for measuring the difference by hand (CONVERSEG_TWO_HOST_WAYS), not a default
        cmd = [sys.executable, "-m", "converseg_ros.node"]
        env[dds_profile.CHOICE_VARIABLE] = "none"
    cmd += ["--ros-args", "--params-file", str(params_file), "-r", f"__ns:={namespace}", *params]
    return subprocess.Popen(pair.prefix(pair.names[1]) + cmd, stdout=open(log, "w"),  # noqa: SIM115
                            stderr=subprocess.STDOUT, env=env, start_new_session=True)


def _camera(pair: NamespacePair, env: dict[str, str], namespace: str) -> subprocess.Popen:
    script = Path(__file__).with_name("two_host_camera.py")
    return subprocess.Popen(pair.prefix(pair.names[0]) + [sys.executable, str(script), namespace, *CASES],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)


@pytest.fixture(scope="module")
def hosts():
    reason = cannot_make_namespaces()
    if reason:
        pytest.skip(reason)
    pair = NamespacePair(f"cs{os.environ['ROS_DOMAIN_ID']}x{os.getpid() % 1000}")
    yield pair
    pair.close()


def test_namespaces_reach_each_other_and_nothing_else(hosts: NamespacePair) -> None:
    for name, link in zip(hosts.names, hosts.links, strict=True):
        links, routes = hosts.describe(name)
        assert sorted(links) == sorted(["lo", link]), links
        assert not [r for r in routes if r.startswith("default")], routes
        assert [r for r in routes if r.startswith("198.18.0.0/30")], routes
    host_links = {p.name for p in Path("/sys/class/net").iterdir()}
    assert not host_links & set(hosts.links), "an end of the pair is on the host"


@pytest.mark.timeout(900)
def test_remote_camera_reaches_the_node_started_the_documented_ways(hosts: NamespacePair, tmp_path: Path) -> None:
    ways = os.environ.get("CONVERSEG_TWO_HOST_WAYS", ",".join(WAYS)).split(",")
    env = {k: v for k, v in os.environ.items() if k not in ("ROS_AUTOMATIC_DISCOVERY_RANGE", "ROS_LOCALHOST_ONLY")}
    sniffer = RtpsSniffer(domain_ports(int(os.environ["ROS_DOMAIN_ID"])))
    table, failures = [], []
    # All nodes start at once (their start-up overlaps); the camera then serves one node after the other.
    nodes = {way: (_node(way, hosts, tmp_path / f"{way.replace(' ', '_')}.log", f"{NS}_{k}"), f"{NS}_{k}")
             for k, way in enumerate(ways)}
    try:
        for way, (node, namespace) in nodes.items():
            camera = _camera(hosts, env, namespace)
            try:
                out, _ = camera.communicate(timeout=300)
            finally:
                camera.kill()
                if node.poll() is None:
                    os.killpg(node.pid, signal.SIGINT)
                code = node.wait(30)
            text = (tmp_path / f"{way.replace(' ', '_')}.log").read_text()
            assert code == 0 and "Traceback" not in text, f"{way}: exit {code}\n{text[-3000:]}"
            assert "Fast DDS profile: network" in text or way == "no profile", f"{way}: {text[-3000:]}"
            rows = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
            assert len(rows) == len(CASES), f"{way}: camera output\n{out[-3000:]}\nnode\n{text[-3000:]}"
            for row in rows:
                delivered = row["published"] - row["lost"]
                share = delivered / row["published"] if row["published"] and row["received"] else 0.0
                line = (f"| {way} | {row['reliability']} | {row['size']} | {row['hz']:.0f} Hz | {row['published']} | "
                        f"{row['received']} | {row['lost']} | {delivered} ({100 * share:.0f} %) |")
                table.append(line)
                if share < REQUIRED and way != "no profile":
                    failures.append(line)
    finally:
        for node, _ in nodes.values():
            if node.poll() is None:
                os.killpg(node.pid, signal.SIGKILL)
                node.wait(10)
        leaked = sniffer.stop()
    report = "\n".join(["| start | camera QoS | frame | rate | published | taken by the node | lost | delivered |",
                         "|---|---|---|---|---|---|---|---|", *table])
    print(f"\ntwo hosts (camera and node in separate network namespaces), delivered per case:\n{report}")
    if os.environ.get("CONVERSEG_TWO_HOST_REPORT"):
        Path(os.environ["CONVERSEG_TWO_HOST_REPORT"]).write_text(report + "\n")
    assert not leaked, f"DDS packets of this test on the host's own interfaces: {leaked[:10]}"
    assert not failures, f"below {REQUIRED:.0%}:\n" + "\n".join(failures)
