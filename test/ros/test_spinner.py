"""The node's executor loop (converseg_ros.ros.run) outlives a failing callback: rclpy re-raises a callback's
exception from ``spin_once``, which used to end the spinner thread and leave the node deaf to every later
query, service call and lifecycle transition while the process stayed up. Real rclpy executor and timers."""

from __future__ import annotations

import threading
import time

import rclpy
from rclpy.exceptions import InvalidHandle
from rclpy.executors import MultiThreadedExecutor
from rclpy.node import Node

from converseg_ros.ros.run import _spin


class Logged:
    """A logger that keeps what was logged as an error."""

    def __init__(self) -> None:
        self.errors: list[str] = []

    def error(self, text: str) -> None:
        self.errors.append(text)


def test_a_raising_callback_is_logged_and_the_executor_keeps_spinning(ros: Node) -> None:  # noqa: ARG001
    node = Node("converseg_spinner_probe")
    ticks: list[float] = []

    def fail_once() -> None:
        timer.cancel()
        raise ValueError("boom in a callback")

    timer = node.create_timer(0.01, fail_once)
    node.create_timer(0.02, lambda: ticks.append(time.monotonic()))
    executor = MultiThreadedExecutor(num_threads=2)
    executor.add_node(node)
    stopping, logger = threading.Event(), Logged()
    spinner = threading.Thread(target=_spin, args=(executor, stopping, logger))
    spinner.start()
    try:
        deadline = time.monotonic() + 20.0
        while time.monotonic() < deadline and not (logger.errors and len(ticks) > 20):
            time.sleep(0.05)
        first_error = len(ticks)
        time.sleep(0.5)
        assert spinner.is_alive()
        assert logger.errors and "ValueError: boom in a callback" in logger.errors[0], logger.errors
        assert "Traceback" in logger.errors[0] and len(logger.errors) == 1
        assert len(ticks) > first_error, "the other timer stopped after the failing callback"
    finally:
        stopping.set()
        spinner.join(5.0)
        executor.shutdown(timeout_sec=5.0)
        node.destroy_node()
    assert not spinner.is_alive()
    assert rclpy.ok()


class RacingExecutor:
    """An executor whose ``spin_once`` raises InvalidHandle first as rclpy's wait-set building does when a
    callback on another thread destroys an entity meanwhile (seen on Jazzy when `image_reliability: auto`
    re-subscribes an input), then as a callback using a destroyed entity would, then spins quietly."""

    def __init__(self) -> None:
        self.turns = 0

    def spin_once(self, timeout_sec: float) -> None:  # noqa: ARG002
        self.turns += 1
        if self.turns == 1:
            self._wait_for_ready_callbacks()
        if self.turns == 2:
            raise InvalidHandle("a callback used a destroyed publisher")
        time.sleep(0.01)

    def _wait_for_ready_callbacks(self) -> None:
        raise InvalidHandle("cannot use Destroyable because destruction was requested")


def test_the_wait_set_race_is_spun_past_quietly_and_a_callback_s_invalid_handle_is_logged() -> None:
    executor, stopping, logger = RacingExecutor(), threading.Event(), Logged()
    spinner = threading.Thread(target=_spin, args=(executor, stopping, logger))
    spinner.start()
    deadline = time.monotonic() + 10.0
    while executor.turns < 10 and time.monotonic() < deadline:
        time.sleep(0.01)
    stopping.set()
    spinner.join(5.0)
    assert executor.turns >= 10 and not spinner.is_alive()
    assert len(logger.errors) == 1 and "a callback used a destroyed publisher" in logger.errors[0], logger.errors
