"""converseg_node leaves cleanly on SIGINT and SIGTERM at any moment: while it starts, while idle, and while a
segment call waits inside it. Real signals to a real node process; the output must hold no traceback."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from conftest import NodeProcess, start_node
from ros_helpers import spin_for, spin_until

from converseg_ros.srv import Segment

pytestmark = pytest.mark.timeout(150)
FAILURE_MARKS = ("Traceback", "RCLError", "Exception", "context is not valid")


def assert_clean_exit(node: NodeProcess, timeout: float = 30.0) -> None:
    try:
        code = node.proc.wait(timeout)
    except subprocess.TimeoutExpired:
        node.stop()
        raise AssertionError(f"node still running {timeout} s after the signal:\n{node.output()[-3000:]}") from None
    out = node.output()
    node.stop()
    assert code == 0, f"exit code {code}:\n{out[-3000:]}"
    found = [mark for mark in FAILURE_MARKS if mark in out]
    assert not found, f"{found} in the node's output:\n{out[-3000:]}"


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_while_a_service_call_waits(ros, tmp_path: Path, sig: signal.Signals) -> None:  # noqa: ANN001
    """The waiting call is answered ("node deactivated") before the node exits with code 0."""
    ns = f"/cs_sig_{sig.name.lower()}"
    node = start_node(ros, ns, [], tmp_path / "node.log")
    client = ros.create_client(Segment, f"{ns}/segment")
    future = client.call_async(Segment.Request(query="the cup", frame_policy="next", timeout_s=60.0))
    spin_for(ros, 1.5)  # the request reached the node and waits there for a camera frame
    assert not future.done(), future.result()
    os.kill(node.proc.pid, sig)
    assert spin_until(ros, future.done, 15.0), "the waiting call got no answer"
    resp = future.result()
    assert not resp.success and "deactivated" in resp.message, resp.message
    assert_clean_exit(node)
    ros.destroy_client(client)


def test_signal_while_starting(tmp_path: Path) -> None:
    """SIGINT while the model loads (or earlier) and SIGTERM right after the process starts."""
    node = NodeProcess("/cs_sig_start", [], tmp_path / "loading.log")
    deadline = time.monotonic() + 60.0
    while "activating" not in node.output() and time.monotonic() < deadline:
        assert node.alive(), node.output()
        time.sleep(0.02)
    os.kill(node.proc.pid, signal.SIGINT)
    assert_clean_exit(node)
    early = NodeProcess("/cs_sig_early", [], tmp_path / "early.log")
    time.sleep(0.3)  # Python is still importing
    os.kill(early.proc.pid, signal.SIGTERM)
    assert_clean_exit(early)
