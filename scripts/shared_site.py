"""Give a second distro's venv (Jazzy) the first venv's (Kilted) non-ROS packages without a second copy.

    python scripts/shared_site.py SOURCE_SITE_PACKAGES TARGET_VENV

Writes ``TARGET_VENV/converseg-shared-site/``: one symlink per top-level entry of SOURCE_SITE_PACKAGES that
belongs to a distribution *not* named ``ros-*`` (torch, numpy, transformers ... and their metadata), and a
``.pth`` in TARGET_VENV's site-packages that appends that folder to ``sys.path`` after the target's own
site-packages. Left out: every file of every ``ros-*`` distribution (rclpy, rosidl_*, the ``ros_*.libs``
library folders, ``ros_wheels_bootstrapper`` and its ``.pth``), this project's editable install, caches and
anything no distribution claims, so nothing of the source distro's ROS can be imported from the target.
ROS shared libraries and ament resources live in SOURCE_VENV/lib and SOURCE_VENV/share, which the target
never puts on LD_LIBRARY_PATH or AMENT_PREFIX_PATH (scripts/ros_env.sh). Idempotent: the folder is rebuilt.
"""

from __future__ import annotations

import shutil
import sys
from importlib import metadata
from pathlib import Path

LAYER = "converseg-shared-site"
PTH = "zz_converseg_shared_site.pth"  # sorts last; a plain path line is appended to sys.path
OWN = "converseg_ros"  # this project: each venv has its own editable install


def _tops(dist: metadata.Distribution) -> set[str]:
    """Top-level names in site-packages that ``dist`` installed (files outside it, ``../``, ignored)."""
    return {str(f).split("/")[0] for f in dist.files or [] if not str(f).startswith("..")}


def shared_entries(site: Path) -> tuple[list[str], list[str]]:
    """(entries to share, ROS entries left out) of ``site``; ValueError if an entry is claimed by both."""
    dists = list(metadata.distributions(path=[str(site)]))
    ros: set[str] = set()
    for dist in dists:
        if dist.metadata["Name"].lower().replace("_", "-").startswith("ros-"):
            ros |= _tops(dist)
    shared: set[str] = set()
    for dist in dists:
        name = dist.metadata["Name"].lower().replace("_", "-")
        meta_dir = Path(str(dist._path)).name  # noqa: SLF001 - importlib.metadata has no public accessor
        if name.startswith("ros-") or meta_dir in ros or name == OWN.replace("_", "-"):
            continue  # (the ROS packages' own egg-info distributions are files of a ros-* wheel)
        shared |= _tops(dist)
    both = sorted(shared & ros)
    if both:
        raise ValueError(f"claimed by a ROS and a non-ROS distribution: {', '.join(both)}")
    shared = {e for e in shared if (site / e).exists() and not e.endswith(".pth") and e != "__pycache__"}
    shared = {e for e in shared if not e.startswith(("__editable__", OWN))}
    return sorted(shared), sorted(ros)


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    site, venv = Path(argv[0]).resolve(), Path(argv[1]).resolve()
    shared, ros = shared_entries(site)
    layer = venv / LAYER
    if layer.exists():
        shutil.rmtree(layer)
    layer.mkdir(parents=True)
    for entry in shared:
        (layer / entry).symlink_to(site / entry)
    target_site = venv / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages"
    (target_site / PTH).write_text(f"{layer}\n")
    print(f"[shared_site] {len(shared)} entries of {site} shared into {layer}; {len(ros)} ROS entries left out")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
