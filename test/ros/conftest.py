"""Fixtures for ROS tests: a helper rclpy node in this process and converseg_node in another process."""

from __future__ import annotations

import signal
from collections.abc import Iterator

import pytest
import ros_env

ros_env.setup()

import rclpy  # noqa: E402
from rclpy.node import Node  # noqa: E402
from ros_nodes import NS, NodeProcess, start_node  # noqa: E402


@pytest.fixture(scope="session")
def ros() -> Iterator[Node]:
    """A helper node (this process) for publishing, subscribing and calling services."""
    rclpy.init()
    node = Node("converseg_test_helper")
    yield node
    node.destroy_node()
    rclpy.try_shutdown()


@pytest.fixture(scope="session")
def node_proc(ros: Node, tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    """One converseg_node (tiny preset, shipped params YAML) shared by the node tests."""
    log = tmp_path_factory.mktemp("node") / "converseg_node.log"
    node = start_node(ros, NS, ["-p", "use_depth:=true"], log)
    yield node
    code = node.stop()
    assert code in (0, -signal.SIGINT), f"node exit code {code}:\n{node.output()[-3000:]}"
