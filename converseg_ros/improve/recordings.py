"""The recording sessions under a folder (what the node's hard-case recorder wrote): each session is one rosbag2
(``metadata.yaml`` + MCAP chunks) with its camera image topics under ``/record/`` and the queries on
``/record/query``. Folder-format sessions are found and reported but not used (they carry no instruction
topic the data engine reads)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from converseg_ros.errors import ConverSegError
from converseg_ros.serving.recording.bag import QUERY_TOPIC

IMAGE_TYPE = "sensor_msgs/msg/Image"


@dataclass(frozen=True)
class Session:
    """One recording session: its bag folder, its image topics, how many frames it holds."""

    path: Path
    topics: tuple[str, ...]
    frames: int


def find_sessions(root: str | Path) -> tuple[list[Session], list[Path]]:
    """The MCAP sessions below ``root`` (sorted by name: by start time) and the folder-format ones skipped."""
    root = Path(root)
    if not root.is_dir():
        raise ConverSegError(f"--recordings: {root} is not a folder")
    sessions, skipped = [], []
    for meta in sorted(root.rglob("metadata.yaml")):
        try:
            info = yaml.safe_load(meta.read_text())["rosbag2_bagfile_information"]
        except (OSError, yaml.YAMLError, KeyError, TypeError) as exc:
            raise ConverSegError(f"{meta}: not a rosbag2 metadata file ({exc})") from exc
        entries = [t for t in info.get("topics_with_message_count") or []]
        images = {t["topic_metadata"]["name"]: t["message_count"] for t in entries
                  if t["topic_metadata"]["type"] == IMAGE_TYPE and t["topic_metadata"]["name"].startswith("/record/")}
        queries = any(t["topic_metadata"]["name"] == QUERY_TOPIC for t in entries)
        if images and queries:
            sessions.append(Session(meta.parent.resolve(), tuple(sorted(images)), sum(images.values())))
    skipped = sorted({p.parent.parent for p in root.rglob("record.json")})
    return sessions, skipped


def groups(sessions: list[Session]) -> list[tuple[tuple[str, ...], list[Session]]]:
    """Sessions with the same image topics together (one data-engine run reads every topic of each of its
    bags), in a stable order."""
    by_topics: dict[tuple[str, ...], list[Session]] = {}
    for session in sessions:
        by_topics.setdefault(session.topics, []).append(session)
    return sorted(by_topics.items())
