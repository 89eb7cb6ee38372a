"""converseg_node in its own process, and the namespace the ROS tests share (imported by the tests by
this module's own name, so that each test folder's conftest stays private to it)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import ros_env

from converseg_ros.ros.tools.node_command import node_command, node_env

if TYPE_CHECKING:
    from rclpy.node import Node

REPO = ros_env.REPO
NS = "/cs_test"


def _die_with_parent() -> None:
    """In the child: get SIGTERM when the test process dies (even if pytest is killed), so no node is left."""
    import ctypes

    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class NodeProcess:
    """converseg_node running as ``python -m converseg_ros.node`` in its own process."""

    def __init__(self, namespace: str, extra: list[str], log: Path) -> None:
        self.namespace = namespace
        self.log_path = log
        cmd = node_command(namespace, {"preset": "tiny", "device": "cpu"}, extra)
        self._log = open(log, "w")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            cmd,
            cwd="/",
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_die_with_parent,
            env=node_env(),  # as the launch file: the shipped Fast DDS profile
        )

    def output(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text()

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stacks(self, tail: int = 12000) -> str:
        """Every thread's stack (SIGUSR1, the node's faulthandler) and the end of the log: for a failure
        message when the node stops answering."""
        if self.alive():
            os.kill(self.proc.pid, signal.SIGUSR1)
            time.sleep(1.0)
        return self.output()[-tail:]

    def stop(self) -> int:
        if self.alive():
            os.killpg(self.proc.pid, signal.SIGINT)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:  # a hang: its threads' stacks go to the log, then kill it
                os.kill(self.proc.pid, signal.SIGUSR1)
                time.sleep(1.0)
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
                print(f"converseg_node did not exit within 20 s of SIGINT:\n{self.log_path.read_text()[-8000:]}")
        self._log.close()
        return self.proc.returncode


def start_node(
    ros: Node, namespace: str, extra: list[str], log: Path, timeout: float = 90.0, active: bool = True
) -> NodeProcess:
    """Start a node and wait until its segment service answers (i.e. it is configured and active), or with
    ``active=False`` (``autostart: false``) until its lifecycle services answer."""
    from lifecycle_msgs.srv import GetState

    from converseg_ros.srv import Segment

    node = NodeProcess(namespace, extra, log)
    if active:
        client = ros.create_client(Segment, f"{namespace}/segment")
    else:
        client = ros.create_client(GetState, f"{namespace}/converseg_node/get_state")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert node.alive(), f"converseg_node exited early:\n{node.output()}"
        if client.wait_for_service(timeout_sec=0.5) and (not active or "]: active" in node.output()):
            ros.destroy_client(client)
            return node
    node.stop()
    raise AssertionError(f"converseg_node not {'active' if active else 'up'} after {timeout} s:\n{node.output()}")


def start_camera(
    source: list[str], topic: str, rate_hz: float, output: int | None = subprocess.PIPE
) -> subprocess.Popen:
    """A camera in its own process: the replay tool looping ``source`` (``["--bag", path]`` or
    ``["--skimage", "coffee", "--max-width", "160"]``) on ``topic`` at ``rate_hz`` once a subscriber is there;
    its output piped as text (``output``: e.g. ``subprocess.DEVNULL`` to drop it)."""
    cmd = [sys.executable, "-m", "converseg_ros.ros.tools.replay", *source, "--rate", str(rate_hz), "--loop",
           "--topic", topic, "--wait-subscriber", "20"]
    err = subprocess.STDOUT if output == subprocess.PIPE else output
    return subprocess.Popen(cmd, cwd="/", stdout=output, stderr=err, text=True)
