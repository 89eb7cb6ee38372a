"""Hugging Face hub access: the hub cache, progress bars, and a clear message when offline."""

from __future__ import annotations

import os
from pathlib import Path

from converseg_ros.errors import OfflineError


def hub_offline() -> bool:
    """True when the user asked huggingface_hub to stay offline (``HF_HUB_OFFLINE=1``)."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}


def fetch_snapshot(repo_id: str, patterns: list[str], allow_download: bool, what: str) -> Path:
    """Return a local snapshot directory of ``repo_id`` holding files matching ``patterns``.

    Uses the hub cache when the files are there; downloads them (with progress bars) only when
    ``allow_download`` is true and ``HF_HUB_OFFLINE`` is not set. Raises OfflineError otherwise.
    """
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    local_only = not allow_download or hub_offline()
    try:
        return Path(snapshot_download(repo_id=repo_id, allow_patterns=patterns, local_files_only=local_only))
    except LocalEntryNotFoundError as err:
        reason = "HF_HUB_OFFLINE is set" if hub_offline() else "downloads are disabled"
        if not local_only:
            reason = f"the hub could not be reached ({err.__class__.__name__})"
        raise OfflineError(
            f"{what}: files {patterns} of '{repo_id}' are not in the Hugging Face cache "
            f"({_cache_dir()}) and {reason}. Download them once on a connected machine "
            f"(allow downloads: `converseg-segment --preset ... --allow-download`, or the node's parameter "
            f"`ros2 run converseg_ros converseg_node --ros-args -p allow_download:=true`, or `allow_download: true` "
            f"in the launch file's params_file), copy the cache, "
            f"or pass local paths instead."
        ) from err
    except OSError as err:  # connection errors surface as OSError subclasses
        raise OfflineError(f"{what}: could not download '{repo_id}' ({err})") from err


def _cache_dir() -> str:
    from huggingface_hub import constants

    return str(constants.HF_HUB_CACHE)
