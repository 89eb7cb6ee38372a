"""rclpy API differences between the distros this package supports (README "Support"), behind small helpers.

- ``SubscriptionEventCallbacks`` lives in ``rclpy.event_handler`` from Iron on and in ``rclpy.qos_event`` in
  Humble (rclpy 3.x).
- ``Subscription.get_publisher_count()`` exists from Iron on; Humble has ``Node.count_publishers(topic)``.
- Discovery kept on this host: ``ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST`` from Iron on, ``ROS_LOCALHOST_ONLY=1``
  in Humble (Jazzy still honours it, with a deprecation warning; Kilted ignores it): :data:`LOCALHOST_ENV`.
"""

from __future__ import annotations

import importlib
from typing import Any

LOCALHOST_ENV = {"ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST", "ROS_LOCALHOST_ONLY": "1"}


def _event_callbacks_class() -> type:
    """rclpy's SubscriptionEventCallbacks, from whichever module this rclpy has it in."""
    try:
        module = importlib.import_module("rclpy.event_handler")
    except ImportError:  # Humble
        module = importlib.import_module("rclpy.qos_event")
    return module.SubscriptionEventCallbacks


SubscriptionEventCallbacks = _event_callbacks_class()


def publisher_count(node: Any, subscription: Any) -> int:
    """How many publishers ``subscription`` (of ``node``) is matched with... on Humble: how many publish its
    topic (Humble's rclpy has no matched count; the graph's count is the closest it offers)."""
    get = getattr(subscription, "get_publisher_count", None)
    if get is not None:
        return get()
    return node.count_publishers(subscription.topic_name)
