"""QoS profiles of converseg_node (docs/ros.md "QoS"): camera inputs matched to their publishers, reliable
outputs."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from rclpy.qos import (
    DurabilityPolicy,
    HistoryPolicy,
    QoSProfile,
    ReliabilityPolicy,
)

_RELIABILITY = {
    "best_effort": ReliabilityPolicy.BEST_EFFORT,
    "reliable": ReliabilityPolicy.RELIABLE,
    "system_default": ReliabilityPolicy.SYSTEM_DEFAULT,
}
# What an `auto` input subscribes with while its topic has no publisher: best effort matches any publisher
# that appears; the re-check then moves to reliable when every publisher offers it.
AUTO_WITHOUT_PUBLISHERS = "best_effort"
RESULT_DEPTH = 200  # results kept for a slow reliable subscriber (a burst of once-queries is never cut)
COMMAND_DEPTH = 1000  # queries kept until the node's command callback takes them (100/s bursts are not lost)
CLIENT_RESULT_DEPTH = 1000  # a client's result subscription: keeps every answer of a burst until read


def image_qos(reliability: str = "best_effort", depth: int = 1) -> QoSProfile:
    """Camera inputs: keep only the newest frame (``reliability`` is never ``auto`` here)."""
    return QoSProfile(
        history=HistoryPolicy.KEEP_LAST,
        depth=depth,
        reliability=_RELIABILITY[reliability],
        durability=DurabilityPolicy.VOLATILE,
    )


def offered_reliability(publishers: Iterable[Any]) -> str | None:
    """The reliability that matches every publisher (``TopicEndpointInfo``s), as rosbag2 chooses it.

    ``reliable`` when all offer reliable (a reliable subscription repairs lost fragments of large frames),
    ``best_effort`` when any offers best effort (a reliable subscription would not match it), None when
    there is no publisher.
    """
    kinds = [p.qos_profile.reliability for p in publishers]
    if not kinds:
        return None
    return "reliable" if all(k == ReliabilityPolicy.RELIABLE for k in kinds) else "best_effort"


def command_qos() -> QoSProfile:
    """Queries: reliable, deep enough that a burst is never dropped (commands are small)."""
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=COMMAND_DEPTH, reliability=ReliabilityPolicy.RELIABLE)


def output_qos(depth: int = 10) -> QoSProfile:
    """Results, masks, overlays: reliable (matches reliable and best-effort subscribers)."""
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=depth, reliability=ReliabilityPolicy.RELIABLE)


def latched_qos() -> QoSProfile:
    """active_query: transient local, so a late subscriber still gets the current query."""
    return QoSProfile(
        history=HistoryPolicy.KEEP_LAST,
        depth=1,
        reliability=ReliabilityPolicy.RELIABLE,
        durability=DurabilityPolicy.TRANSIENT_LOCAL,
    )
