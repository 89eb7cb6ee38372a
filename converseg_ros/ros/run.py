"""Runs converseg_node in this process: autostart, an executor thread, and a clean exit on SIGINT/SIGTERM.

Exit codes: 0 after SIGINT/SIGTERM (at any moment; a waiting service call is answered first), 2 when
configuration fails, 3 when activation fails. rclpy's own signal handlers are off: they invalidate the
context under running executor threads (``RCLError: failed to initialize wait set``).
"""

from __future__ import annotations

import signal
import threading
import traceback
from collections.abc import Sequence
from typing import Any

import rclpy
from rclpy.exceptions import InvalidHandle
from rclpy.executors import MultiThreadedExecutor
from rclpy.lifecycle import TransitionCallbackReturn
from rclpy.signals import SignalHandlerOptions

from converseg_ros.ros.node import EXECUTOR_THREADS, ConverSegNode
from converseg_ros.serving.queries import clip

# On SIGINT/SIGTERM, wait this long for a running inference before leaving it to the process exit (ros2
# launch escalates to SIGTERM after 5 s, then SIGKILL).
EXIT_WAIT_S = 3.0


class ShutdownRequested(BaseException):
    """Raised in the main thread by SIGINT/SIGTERM to leave start-up or the wait (not an ``Exception``, so
    model-loading code that catches errors does not swallow it)."""


def main(args: list[str] | None = None, startup_log: Sequence[str] = ()) -> int:
    """Configure and activate the node (with ``autostart``), spin until a signal; the exit code.
    ``startup_log``: lines logged once the node exists (e.g. the Fast DDS profile chosen before rclpy)."""
    stopping = threading.Event()

    def on_signal(signum: int, frame: Any) -> None:
        if not stopping.is_set():  # later signals: the clean-up below is already running
            stopping.set()
            raise ShutdownRequested(signal.Signals(signum).name)

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, on_signal)
    node: ConverSegNode | None = None
    executor: MultiThreadedExecutor | None = None
    spinner: threading.Thread | None = None
    try:
        rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
        node = ConverSegNode()
        for line in startup_log:
            node.get_logger().info(line)
        executor = MultiThreadedExecutor(num_threads=EXECUTOR_THREADS)
        executor.add_node(node)
        if node.cfg.autostart:
            for transition, step, code in (
                (node.trigger_configure, "configuration", 2),
                (node.trigger_activate, "activation", 3),
            ):
                if transition() != TransitionCallbackReturn.SUCCESS:
                    if stopping.is_set():  # the signal broke it (e.g. mid-way through a library's cleanup)
                        raise ShutdownRequested("signal during start-up")
                    node.get_logger().fatal(f"{step} failed (see above); exiting")
                    return code
        spinner = threading.Thread(
            target=_spin, args=(executor, stopping, node.get_logger()), name="converseg-executor"
        )
        spinner.start()
        # A timed wait: a signal delivered to another thread (DDS's, the executor's) only flags it for the
        # main thread, which runs the handler when it next wakes; an untimed wait never would.
        while not stopping.wait(0.2):
            pass
    except ShutdownRequested as exc:
        if node is not None:
            node.get_logger().info(f"{exc}: shutting down")
    finally:
        stopping.set()
        _shut_down(node, executor, spinner)
    return 0


def _spin(executor: MultiThreadedExecutor, stopping: threading.Event, logger: Any) -> None:
    """Executor loop of the spinner thread; returns within 0.2 s of ``stopping``. A callback's exception
    (rclpy re-raises it from ``spin_once``) is logged and spinning goes on: one failed callback must not
    leave the node deaf to every later query, call and transition (as it did on Jazzy, whose executor
    raises InvalidHandle when an input is re-subscribed while it builds the wait set)."""
    while not stopping.is_set():
        try:
            executor.spin_once(timeout_sec=0.2)
        except InvalidHandle as exc:
            if not _building_wait_set(exc):  # (else: the next turn builds the wait set again)
                _log_failure(logger, exc)
        except Exception as exc:  # noqa: BLE001
            _log_failure(logger, exc)


def _building_wait_set(exc: BaseException) -> bool:
    """Whether ``exc`` came from rclpy building its wait set (an entity destroyed meanwhile by a callback on
    another executor thread: rclpy's race when an input is re-subscribed, e.g. ``image_reliability: auto``),
    not from a callback."""
    return any(frame.name == "_wait_for_ready_callbacks" for frame in traceback.extract_tb(exc.__traceback__))


def _log_failure(logger: Any, exc: BaseException) -> None:
    """One failed callback in the log, with its traceback (bounded)."""
    logger.error(
        f"a callback failed: {type(exc).__name__}: {clip(str(exc), 500)}\n"
        + clip("".join(traceback.format_exception(exc)), 4000)
    )


def _shut_down(
    node: ConverSegNode | None, executor: MultiThreadedExecutor | None, spinner: threading.Thread | None
) -> None:
    """Stop spinning, answer waiting calls (deactivate), let running callbacks send them, then free all."""
    if spinner is not None:
        spinner.join()
    if node is not None:
        node.release(EXIT_WAIT_S, free_model=False)  # waiting segment calls return "node deactivated"
    if executor is not None:
        executor.shutdown(timeout_sec=10.0)  # joins the callback threads: their responses are sent
    if node is not None:
        node.destroy_node()
    rclpy.try_shutdown()
