"""``converseg-query --swap DIR``: swap the model of a running converseg_node to the release folder DIR while
it keeps serving (DIR "" goes back to the preset's own files). Sets the node's ``release`` parameter and waits
on the latched ``model_status`` for the outcome; prints it (load time, memory, the gap) and exits 0 when the
new model serves, 1 when it failed (the old one still serves), 2 when the node is unreachable or refused."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import rclpy
from rclpy.node import Node
from rclpy.parameter import Parameter

from converseg_ros.ros.msgs import qos
from converseg_ros.ros.msgs.interfaces import ModelStatus

NODE_NAME = "converseg_node"


def describe_status(status: ModelStatus) -> str:
    """One line for a ModelStatus."""
    if status.state == ModelStatus.STATE_FAILED:
        still = f"; still serving {status.model}" if status.model else "; no model is served"
        return f"failed: {status.message}{still}"
    text = f"{status.state} {status.model or status.requested} (swap_mode {status.swap_mode}"
    if status.state == ModelStatus.STATE_SERVING:
        text += f", load {status.load_s:.1f} s, warm-up {status.warmup_s:.1f} s"
        if status.rss_peak_mb:
            text += f", RSS {status.rss_before_mb:.0f} -> peak {status.rss_peak_mb:.0f} -> {status.rss_after_mb:.0f} MB"
        if status.gpu_peak_mb:
            text += f", GPU peak {status.gpu_peak_mb:.0f} MB"
        if status.gap_frames >= 0:
            text += f", answers resumed after {status.gap_frames} frame(s) / {status.gap_ms:.0f} ms"
    return text + ")"


def _call(node: Node, client: Any, request: Any, timeout_s: float) -> Any:
    if not client.wait_for_service(timeout_sec=timeout_s):
        return None
    future = client.call_async(request)
    rclpy.spin_until_future_complete(node, future, timeout_sec=timeout_s)
    return future.result() if future.done() else None


def swap_model(node: Node, namespace: str, release: str, timeout_s: float = 300.0, wait_s: float = 30.0) -> int:
    """Swap the node in ``namespace`` to ``release``; the exit code (see the module docstring)."""
    from rcl_interfaces.srv import GetParameters, SetParameters

    target = f"{namespace.rstrip('/')}/{NODE_NAME}"
    release = str(Path(release).expanduser().resolve()) if release else ""
    statuses: list[ModelStatus] = []
    sub = node.create_subscription(ModelStatus, f"{namespace.rstrip('/')}/model_status", statuses.append,
                                   qos.latched_qos())
    got = _call(node, node.create_client(GetParameters, f"{target}/get_parameters"),
                GetParameters.Request(names=["release"]), wait_s)
    if got is None:
        print(f"{target} not reachable", file=sys.stderr)
        return 2
    if got.values and got.values[0].string_value == release:
        print(f"{target} already serves release {release or '(the preset)'}")
        return 0
    sent_ns = node.get_clock().now().nanoseconds
    result = _call(node, node.create_client(SetParameters, f"{target}/set_parameters"),
                   SetParameters.Request(parameters=[Parameter("release", value=release).to_parameter_msg()]),
                   wait_s)
    if result is None or not result.results[0].successful:
        print(f"swap refused: {result.results[0].reason if result else 'no answer'}", file=sys.stderr)
        return 2
    print(f"swapping {target} to {release or '(the preset)'} ...", flush=True)

    def after(s: ModelStatus) -> bool:
        return s.header.stamp.sec * 10**9 + s.header.stamp.nanosec >= sent_ns

    deadline, final = time.monotonic() + timeout_s, None
    while time.monotonic() < deadline:
        done = [s for s in statuses if after(s) and s.state != ModelStatus.STATE_LOADING]
        if done and (done[-1].state == ModelStatus.STATE_FAILED or done[-1].gap_frames >= 0):
            final = done[-1]
            break
        if done and final is None:  # serving; the gap follows the new model's first answer
            final, deadline = done[-1], min(deadline, time.monotonic() + 10.0)
        rclpy.spin_once(node, timeout_sec=0.1)
    node.destroy_subscription(sub)
    if final is None:
        print(f"no outcome on model_status within {timeout_s:.0f} s", file=sys.stderr)
        return 2
    print(describe_status(final))
    return 0 if final.state == ModelStatus.STATE_SERVING else 1
