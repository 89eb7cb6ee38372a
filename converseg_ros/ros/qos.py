"""QoS profiles of converseg_node (docs/ros.md "QoS"): best-effort sensor inputs, reliable outputs."""

from __future__ import annotations

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


def image_qos(reliability: str = "best_effort", depth: int = 1) -> QoSProfile:
    """Camera inputs: keep only the newest frame; best effort matches every publisher."""
    return QoSProfile(
        history=HistoryPolicy.KEEP_LAST,
        depth=depth,
        reliability=_RELIABILITY[reliability],
        durability=DurabilityPolicy.VOLATILE,
    )


def command_qos() -> QoSProfile:
    """Queries: reliable, a few queued (commands must not be dropped)."""
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=10, reliability=ReliabilityPolicy.RELIABLE)


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
