"""Helpers of the multi-camera and tracking node tests: setting parameters at run time, a camera's own
diagnostics, malformed frames (imported by this module's own name, as ros_helpers)."""

from __future__ import annotations

import array
from typing import Any

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.node import Node
from rclpy.parameter import Parameter
from ros_helpers import call, image_msg, spin_until
from sensor_msgs.msg import Image


def set_parameters(ros: Node, node_name: str, **values: Any) -> None:
    """Set parameters of ``node_name`` (fully qualified) and assert that the node accepted them."""
    from rcl_interfaces.srv import SetParameters

    client = ros.create_client(SetParameters, f"{node_name}/set_parameters")
    request = SetParameters.Request(
        parameters=[Parameter(name, value=value).to_parameter_msg() for name, value in values.items()]
    )
    resp = call(ros, client, request)
    ros.destroy_client(client)
    for name, result in zip(values, resp.results, strict=True):
        assert result.successful, f"{name}: {result.reason}"


def camera_diagnostics(diagnostics: list[DiagnosticArray], status_name: str) -> dict[str, str]:
    """Keys of the newest status called ``status_name`` ({} if none yet)."""
    for msg in reversed(diagnostics):
        for status in msg.status:
            if status.name == status_name:
                return {kv.key: kv.value for kv in status.values}
    return {}


def wait_for_camera_diagnostics(ros: Node, diagnostics: list[DiagnosticArray], status_name: str, key: str,
                                pred: Any, timeout: float = 10.0) -> dict[str, str] | None:
    """Spin until the status ``status_name`` has ``pred(value of key)``; its keys, or None."""
    def check() -> dict[str, str] | None:
        values = camera_diagnostics(diagnostics, status_name)
        return values if key in values and pred(values[key]) else None

    return spin_until(ros, check, timeout)


def malformed_frames(ros: Node, rgb: np.ndarray, prefix: str) -> list[Image]:
    """Eight broken frames (short step, truncated data, unknown or compressed encoding, zero size)."""
    height, width = rgb.shape[:2]
    bad = []
    for k in range(2):
        m = image_msg(ros, rgb, f"{prefix}_step_{k}")
        m.step = width * 3 - 1 - k
        bad.append(m)
        m = image_msg(ros, rgb, f"{prefix}_trunc_{k}")
        m.data = array.array("B", bytes(m.data)[: (k + 1) * 100])
        bad.append(m)
        m = image_msg(ros, rgb, f"{prefix}_enc_{k}")
        m.encoding = ["rgb9", "jpeg"][k]
        bad.append(m)
        m = image_msg(ros, rgb, f"{prefix}_zero_{k}")
        m.height = 0
        bad.append(m)
    return bad
