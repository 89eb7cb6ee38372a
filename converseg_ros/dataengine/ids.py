"""Input and sample ids: built from the source's full identity, and checked before they become paths.

An id is ``<kind>_<readable part>_<hash>``: the readable part (a file's relative path, a log and topic, a
lab, an episode) helps a person; the hash of the full identity (root + relative path, lab + uuid, shard
file + episode index, ...) keeps ids apart when the readable parts agree (two camera folders with the same
file names, two labs with the same timestamp folder). Every id read back from a run file passes
``check_id`` before it names a file or folder.
"""

from __future__ import annotations

import hashlib
import re

from converseg_ros.errors import ConverSegError

MAX_ID = 160
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


class IdError(ConverSegError, ValueError):
    """An id that cannot safely name a file."""


def slug(text: str, limit: int = 60) -> str:
    """Letters, digits and underscores only (at most ``limit`` characters, keeping the end)."""
    out = re.sub(r"[^A-Za-z0-9]+", "_", text).strip("_") or "x"
    return out[-limit:].strip("_") or "x"


def short_hash(identity: str, n: int = 10) -> str:
    return hashlib.sha1(identity.encode("utf-8", "surrogatepass")).hexdigest()[:n]


def make_id(kind: str, readable: list[str], identity: str) -> str:
    """``<kind>_<readable>_<hash of identity>`` (readable parts slugged and shortened)."""
    parts = [kind, *(slug(r, 48) for r in readable if r), short_hash(identity)]
    return check_id("_".join(parts))


def check_id(value: object, what: str = "id") -> str:
    """``value`` if it is a safe file name (letters, digits, ``._-``; no ``..``; bounded); IdError otherwise."""
    if not isinstance(value, str) or len(value) > MAX_ID or not _ID.fullmatch(value) or ".." in value:
        shown = repr(value)[:80]
        raise IdError(f"unsafe {what} {shown}: ids are letters, digits, '.', '_' and '-' (at most {MAX_ID})")
    return value
