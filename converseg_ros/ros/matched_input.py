"""Camera-input subscriptions whose reliability follows their publishers (``image_reliability: auto``).

A best-effort subscription matches every publisher but, over Fast DDS, loses most frames larger than
512 KiB that a reliable publisher sends (docs/ros.md "Camera set-up"); a reliable one does not match a
best-effort publisher at all. So, as ``ros2 topic echo`` and rosbag2 do, ``auto`` asks the graph what the
publishers offer and subscribes with that, and re-checks (:meth:`MatchedInput.refresh`, called from a
timer) so that publishers that appear later are matched too.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from converseg_ros.ros.compat import SubscriptionEventCallbacks
from converseg_ros.ros.msgs import qos


class MatchedInput:
    """One input subscription (image, image/compressed, depth, camera_info) of ``node``.

    ``reliability`` is ``auto`` or a fixed ``best_effort`` / ``reliable`` / ``system_default``.
    """

    def __init__(
        self,
        node: Any,
        msg_type: Any,
        topic: str,
        callback: Callable[[Any], None],
        reliability: str,
        depth: int,
        group: Any,
        log: Callable[[str], None],
    ) -> None:
        self._node, self._type, self._callback = node, msg_type, callback
        self._mode, self._depth, self._group, self._log = reliability, depth, group, log
        self.topic = node.resolve_topic_name(topic)  # namespace and remappings applied
        self.reliability = ""  # what the current subscription uses
        self.lost = 0  # messages the middleware reports lost: never complete here (e.g. best-effort fragments)
        self.sub: Any = None
        self.refresh()

    def refresh(self) -> bool:
        """Subscribe or re-subscribe when the publishers call for another reliability; True if it did."""
        if self._mode != "auto":
            want, why = self._mode, f"image_reliability: {self._mode}"
        else:
            publishers = self._node.get_publishers_info_by_topic(self.topic)
            offered = qos.offered_reliability(publishers)
            if offered is None:
                if self.sub is not None:  # keep the subscription while the camera is away
                    return False
                want, why = qos.AUTO_WITHOUT_PUBLISHERS, "no publisher yet; re-checked when one appears"
            else:
                want = offered
                kinds = sorted({str(p.qos_profile.reliability.name).lower() for p in publishers})
                why = f"{len(publishers)} publisher(s) offering {' + '.join(kinds)}"
        if want == self.reliability and self.sub is not None:
            return False
        if self.sub is not None:
            self._node.destroy_subscription(self.sub)
        events = SubscriptionEventCallbacks(message_lost=self._on_lost)
        if self._mode == "auto":  # replaces rclpy's "no messages will be received" warning: we re-subscribe
            events = SubscriptionEventCallbacks(incompatible_qos=self._on_incompatible, message_lost=self._on_lost)
        self.sub = self._node.create_subscription(
            self._type,
            self.topic,
            self._callback,
            qos.image_qos(want, self._depth),
            callback_group=self._group,
            event_callbacks=events,
        )
        self.reliability = want
        self._log(f"input {self.topic}: subscribed {want} ({why})")
        return True

    def _on_incompatible(self, info: Any) -> None:
        self._log(f"input {self.topic}: a new publisher does not match {self.reliability}; re-subscribing")

    def _on_lost(self, info: Any) -> None:
        self.lost += info.total_count_change

    def destroy(self) -> None:
        """Unsubscribe."""
        if self.sub is not None:
            self._node.destroy_subscription(self.sub)
            self.sub = None
            self.reliability = ""
