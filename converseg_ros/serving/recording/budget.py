"""The recorder's disk budget: closed units (MCAP chunks or record folders), oldest dropped first. Plain Python."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path


class BudgetError(Exception):
    """A record cannot fit in the budget even with every older record dropped."""


@dataclass(frozen=True)
class Unit:
    """Something the budget can drop as a whole: a closed chunk or a record folder."""

    key: tuple  # sorts oldest first
    path: Path
    bytes: int


def make_room(units: list[Unit], drop: Callable[[Unit], None], open_bytes: int, needed: int, max_bytes: int) -> int:
    """Drop the oldest ``units`` until they, the open chunk (``open_bytes``) and ``needed`` more bytes fit in
    ``max_bytes``; how many were dropped (BudgetError when even dropping all would not do)."""
    used = sum(u.bytes for u in units) + open_bytes
    if open_bytes + needed > max_bytes:
        raise BudgetError(f"a record of {needed / 2**20:.1f} MB does not fit in record.max_mb="
                          f"{max_bytes / 2**20:g} MB")
    dropped = 0
    for unit in sorted(units, key=lambda u: u.key):
        if used + needed <= max_bytes:
            break
        drop(unit)
        used -= unit.bytes
        dropped += 1
    return dropped
