"""The generated messages and service of this package, with a clear hint when they are not built/sourced."""

from __future__ import annotations

HINT = (
    "converseg_ros messages are not importable: build them with `bash scripts/build_interfaces.sh` and "
    "`. scripts/ros_env.sh` (pip set-up), or `colcon build` and `source install/setup.bash` (ROS workspace)"
)

try:
    from converseg_ros.msg import AffordanceRegion, AnswerFlag, ModelStatus, SegmentationQuery, SegmentationResult
    from converseg_ros.srv import Flag, Reground, Segment
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(f"{HINT} ({exc})") from exc

__all__ = ["AffordanceRegion", "AnswerFlag", "Flag", "ModelStatus", "Reground", "SegmentationQuery",
           "SegmentationResult", "Segment"]
