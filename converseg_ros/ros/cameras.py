"""The ROS side of one camera of converseg_node: its topic names, frame slot, input subscriptions, output
publishers, latest depth and intrinsics, and the queries the node keeps for it (re-applied when the model is
loaded again). One node serves several cameras with one model (parameter ``cameras``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from converseg_ros.ros.matched_input import MatchedInput
from converseg_ros.ros.msgs.depth import Intrinsics
from converseg_ros.serving.frame_slot import LatestSlot
from converseg_ros.serving.worker import Query


def camera_topic(camera: str, name: str) -> str:
    """``name`` under the camera's namespace: ``head/image``; the unnamed camera ("") keeps ``image``."""
    return f"{camera}/{name}" if camera else name


@dataclass
class CameraIO:
    """One camera (``name`` "" = the single unnamed camera with the plain topic names)."""

    name: str
    slot: LatestSlot
    inputs: list[MatchedInput] = field(default_factory=list)  # image (or image/compressed), depth, camera_info
    pubs: dict[str, Any] = field(default_factory=dict)  # result, mask, overlay, active_query, markers, ...
    depth: tuple[Any, int] | None = None  # (depth message, stamp ns)
    intrinsics: Intrinsics | None = None
    frames_received: int = 0
    continuous: Query | None = None
    tracked: dict[str, Query] = field(default_factory=dict)

    def topic(self, name: str) -> str:
        """This camera's topic ``name`` (relative: the node's namespace applies)."""
        return camera_topic(self.name, name)

    @property
    def image_topic(self) -> str:
        """The resolved image topic ("" before subscribing)."""
        return self.inputs[0].topic if self.inputs else ""

    @property
    def label(self) -> str:
        """How logs name the camera."""
        return f"camera {self.name}" if self.name else "camera"
