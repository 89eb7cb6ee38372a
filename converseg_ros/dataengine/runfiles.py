"""The one way run files are read: bounded, UTF-8, JSON, the expected shape — or an error naming the file.

``read_run_file`` is used for every file of a run folder (run.json, inputs.json, items/*/status.json, the
stage outputs, review.json, summary.json). A bad item file makes only that item fail (stage ``read``, the
reason naming the file) and is moved to ``items/<id>/quarantine/`` by ``converseg-data run``; a bad run-level
file stops the command with its name. A full disk is reported as ``no space left on <dir>``.
"""

from __future__ import annotations

import errno
import json
from collections.abc import Callable
from pathlib import Path

from converseg_ros.errors import ConverSegError

MAX_FILE_BYTES = 64 << 20  # an item or settings file
MAX_LIST_BYTES = 1 << 30  # inputs.json of a very large run


class RunFileError(ConverSegError, ValueError):
    """A run file that cannot be used; the message names it."""

    def __init__(self, path: Path, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path, self.reason = Path(path), reason


class DiskFullError(ConverSegError, OSError):
    """The disk (or quota) is full: nothing finished is lost; free space and ``--resume``."""


def is_disk_full(exc: BaseException) -> bool:
    return isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)


def disk_full(exc: OSError, where: Path) -> DiskFullError:
    folder = Path(getattr(exc, "filename", None) or where)
    folder = folder if folder.is_dir() else folder.parent
    return DiskFullError(f"no space left on {folder}; finished work is kept: free space, then run again with "
                         "--resume")


def read_run_file(path: str | Path, shape: type = dict, check: Callable[[object], str | None] | None = None,
                  max_bytes: int = MAX_FILE_BYTES):
    """The JSON value of ``path`` (None when the file does not exist); RunFileError when it is unusable."""
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > max_bytes:
            raise RunFileError(path, f"{size} bytes, more than the {max_bytes} allowed")
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    except IsADirectoryError:
        raise RunFileError(path, "is a folder, not a file") from None
    except OSError as exc:
        raise RunFileError(path, f"cannot be read ({exc.strerror})") from exc
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RunFileError(path, f"not UTF-8 (byte 0x{raw[exc.start]:02x} at offset {exc.start})") from None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise RunFileError(path, f"not JSON ({exc.msg} at line {exc.lineno} column {exc.colno})") from None
    except RecursionError:
        raise RunFileError(path, "JSON nested too deeply") from None
    if not isinstance(value, shape):
        wanted = {"dict": "object", "list": "array"}.get(shape.__name__, shape.__name__)
        raise RunFileError(path, f"expected a JSON {wanted}, found {type(value).__name__}")
    problem = check(value) if check else None
    if problem:
        raise RunFileError(path, problem)
    return value


# --- shape checks of the item files ------------------------------------------------------------------------
def missing(value: dict, keys: dict[str, type | tuple]) -> str | None:
    """The first key of ``keys`` that is absent or of the wrong type, described; None when all fit."""
    for key, kind in keys.items():
        if key not in value:
            return f"missing key {key!r}"
        if not isinstance(value[key], kind):
            return f"key {key!r} has the wrong type ({type(value[key]).__name__})"
    return None


def check_status(value: dict) -> str | None:
    problem = missing(value, {"status": str})
    if problem:
        return problem
    if value["status"] not in ("done", "failed"):
        return f"unknown status {value['status']!r}"
    if value["status"] == "done":
        return missing(value, {"samples": int})
    return None


SAMPLE_KEYS = {"id": str, "family": str, "subtype": str, "prompt": str, "satisfying": list, "negative": bool,
               "verdict": str, "reason": str, "mask": str}
STAGE_KEYS = {"captions": {"regions": list}, "masks": {"regions": list}, "verify_masks": {"regions": list},
              "prompts": {"families": dict}, "verify_prompts": {"samples": list}}


def stage_check(key: str) -> Callable[[object], str | None]:
    def check(value: dict) -> str | None:
        problem = missing(value, STAGE_KEYS.get(key, {}))
        if problem or key != "verify_prompts":
            return problem
        for k, sample in enumerate(value["samples"]):
            if not isinstance(sample, dict):
                return f"sample {k} is not an object"
            problem = missing(sample, SAMPLE_KEYS)
            if problem:
                return f"sample {k}: {problem}"
        return None

    return check


def check_inputs(rows: list) -> str | None:
    for k, row in enumerate(rows):
        if not isinstance(row, dict):
            return f"entry {k} is not an object"
        problem = missing(row, {"id": str, "path": str})
        if problem:
            return f"entry {k}: {problem}"
    return None


def check_review(value: dict) -> str | None:
    decisions = value.get("decisions", {})
    if not isinstance(decisions, dict):
        return "'decisions' is not an object"
    for sid, entry in decisions.items():
        if not isinstance(entry, dict) or entry.get("decision") not in ("accept", "reject"):
            return f"decision for {sid[:80]!r} is not accept/reject"
    return None


def check_run(value: dict) -> str | None:
    return missing(value, {"config": dict})
