"""Plain helpers of launch/segment.launch.py (no ``launch`` import, so they are tested where launch is
missing): is rviz2 installed, the RViz layout for a namespace, which Fast DDS profile the node gets."""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Mapping
from pathlib import Path

from converseg_ros import dds_profile

LAYOUT_NAMESPACE = "/converseg"  # the namespace rviz/converseg.rviz is written for
_TOPIC_LINE = re.compile(r"^(\s*Value:\s*)" + re.escape(LAYOUT_NAMESPACE) + r"/", re.MULTILINE)


def rviz2_missing() -> str | None:
    """Why launch_ros cannot start rviz2 (it resolves executables through the ament index), or None."""
    try:
        from ament_index_python.packages import PackageNotFoundError, get_package_prefix
    except ImportError as exc:
        return f"ament_index_python is not importable ({exc})"
    try:
        prefix = Path(get_package_prefix("rviz2"))
    except (PackageNotFoundError, KeyError, ValueError, OSError):
        return "package rviz2 is not installed (not in the ament index)"
    executable = prefix / "lib" / "rviz2" / "rviz2"
    if not os.access(executable, os.X_OK):
        return f"{executable} is missing"
    return None


def normalize_namespace(namespace: str) -> str:
    """``converseg`` -> ``/converseg``, ``/a/b/`` -> ``/a/b``, ``""`` or ``/`` -> ``""`` (the root)."""
    return "/" + namespace.strip("/") if namespace.strip("/") else ""


def rviz_layout_for(text: str, namespace: str) -> str:
    """The RViz layout ``text`` with its topics (``Value: /converseg/...``) moved to ``namespace``."""
    return _TOPIC_LINE.sub(lambda m: f"{m.group(1)}{normalize_namespace(namespace)}/", text)


def write_rviz_layout(layout: Path, namespace: str) -> Path:
    """``layout`` rewritten for ``namespace`` into a new temporary file (RViz reads it at start-up)."""
    folder = Path(tempfile.mkdtemp(prefix="converseg-rviz-"))
    out = folder / layout.name
    out.write_text(rviz_layout_for(layout.read_text(), namespace))
    return out


def fastdds_profile_env(choice: str, config: Path, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """Environment entries for the node's Fast DDS profile (launch argument ``fastdds_profile``; the choice
    itself is :func:`converseg_ros.dds_profile.choose`'s, with the shipped profiles in ``config``).

    ``""``/``auto`` (default): a profile already named in the environment, else ``local`` when discovery stays on
    this host and ``network`` otherwise; ``local``; ``network``; ``none``; or a file. Both Fast DDS variables
    are set (Fast DDS 2.x reads FASTRTPS_..., 3.x FASTDDS_...), and the choice is handed on so that the node
    does not apply another one (with ``none`` it removes an inherited profile).
    """
    profile = dds_profile.choose(choice, environ, config)
    return {dds_profile.CHOICE_VARIABLE: choice or "auto", **profile.env()}


def camera_setup(cameras: str, image_topics: str, image_topic: str) -> tuple[list[str], list[tuple[str, str]]]:
    """Launch arguments ``cameras`` (comma-separated names; empty: one unnamed camera), ``image_topics`` (one
    topic per camera, comma-separated; empty: ``<namespace>/<camera>/image`` as is) and ``image_topic`` (the
    unnamed camera's) -> the node's ``cameras`` parameter and its image remappings. ValueError on a mismatch."""
    names = [n.strip() for n in cameras.split(",") if n.strip()]
    if not names:
        return [""], [("image", image_topic), ("image/compressed", image_topic.rstrip("/") + "/compressed")]
    topics = [t.strip() for t in image_topics.split(",") if t.strip()]
    if topics and len(topics) != len(names):
        raise ValueError(f"image_topics names {len(topics)} topics for {len(names)} cameras ({', '.join(names)})")
    remappings = []
    for name, topic in zip(names, topics, strict=False):
        remappings += [(f"{name}/image", topic), (f"{name}/image/compressed", topic.rstrip("/") + "/compressed")]
    return names, remappings
