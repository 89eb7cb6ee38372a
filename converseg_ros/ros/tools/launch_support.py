"""Plain helpers of launch/segment.launch.py (no ``launch`` import, so they are tested where launch is
missing): is rviz2 installed, the RViz layout for a namespace, which Fast DDS profile the node gets."""

from __future__ import annotations

import atexit
import os
import re
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from copy import deepcopy
from pathlib import Path

import yaml

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


def rviz_layout_for_cameras(text: str, namespace: str, cameras: Sequence[str]) -> str:
    """The RViz layout ``text`` for a node with ``cameras``: one unnamed camera as :func:`rviz_layout_for`;
    named cameras get one set of the camera displays (overlay, mask, markers) each, named ``... (<camera>)``
    and reading ``<namespace>/<camera>/...``; the other displays stay once."""
    if list(cameras) in ([], [""]):
        return rviz_layout_for(text, namespace)
    data = yaml.safe_load(text)
    manager, geometry = data["Visualization Manager"], data.get("Window Geometry", {})
    prefix = f"{LAYOUT_NAMESPACE}/"
    shown = [d for d in manager["Displays"] if str(d.get("Topic", {}).get("Value", "")).startswith(prefix)]
    copies = []
    for camera in cameras:
        for display in shown:
            copy = deepcopy(display)
            copy["Name"] = f"{display['Name']} ({camera})"
            suffix = display["Topic"]["Value"][len(LAYOUT_NAMESPACE) :]
            copy["Topic"]["Value"] = f"{normalize_namespace(namespace)}/{camera}{suffix}"
            copies.append(copy)
            if display["Name"] in geometry:  # image panels have a dock entry by display name
                geometry[copy["Name"]] = deepcopy(geometry[display["Name"]])
    for display in shown:
        geometry.pop(display["Name"], None)
    manager["Displays"] = copies + [d for d in manager["Displays"] if d not in shown]
    where = normalize_namespace(namespace) or "/"
    return f"# RViz 2 layout for converseg_node in {where}, cameras {', '.join(cameras)}\n" + yaml.safe_dump(
        data, sort_keys=False
    )


def write_rviz_layout(layout: Path, namespace: str, cameras: Sequence[str] = ("",)) -> Path:
    """``layout`` rewritten for ``namespace`` (and ``cameras``) into a new temporary file that RViz reads at
    start-up; the file and its folder are removed when this process (the launch) exits."""
    folder = Path(tempfile.mkdtemp(prefix="converseg-rviz-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    out = folder / layout.name
    out.write_text(rviz_layout_for_cameras(layout.read_text(), namespace, cameras))
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
