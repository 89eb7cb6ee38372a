"""The samples of one or more runs, with the human decisions from the review page.

A sample is kept for export when a person accepted it, or — without a decision — when the stage-5 verifier
accepted it (``require_review`` keeps only human-accepted ones). A person's Reject always wins.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from converseg_ros.dataengine import runfiles
from converseg_ros.dataengine.ids import IdError, check_id
from converseg_ros.dataengine.runfiles import RunFileError
from converseg_ros.dataengine.store import RunStore
from converseg_ros.errors import ConverSegError

DECISIONS = ("accept", "reject")


class RunError(ConverSegError, ValueError):
    """A run folder that does not exist or is not a data-engine run."""


def expand_runs(paths: list[str | Path]) -> list[RunStore]:
    """Run folders; a folder of shards (``shard-*``, as ``--ray`` writes) expands to its shards."""
    stores = []
    for path in map(Path, paths):
        if (path / "run.json").is_file():
            stores.append(RunStore(path))
            continue
        shards = sorted(p for p in path.glob("shard-*") if (p / "run.json").is_file())
        if not shards:
            raise RunError(f"{path}: not a converseg-data run (no run.json)")
        stores.extend(RunStore(p) for p in shards)
    return stores


@dataclass
class SampleRecord:
    """One stage-5 sample, located in its run."""

    store: RunStore
    image_id: str
    data: dict  # id, family, subtype, prompt, satisfying, negative, verdict, reason, mask

    @property
    def id(self) -> str:
        return self.data["id"]

    @property
    def mask_path(self) -> Path:
        """The sample's mask file; refuses a path that leaves the item's folder."""
        base = self.store.item_dir(self.image_id).resolve()
        path = (base / self.data["mask"]).resolve()
        if not path.is_relative_to(base):
            raise RunFileError(base / "stage5_verify_prompts.json", f"mask path {self.data['mask'][:80]!r} leaves "
                               "the item folder")
        return path

    def image_path(self, inputs: dict) -> Path:
        return self.store.image_path(inputs[self.image_id])


def collect_samples(stores: list[RunStore]) -> tuple[list[SampleRecord], dict[str, dict], list[str]]:
    """Every sample of finished images (first occurrence of an id wins), the inputs by id, and problems: an
    item whose files cannot be read, or a sample with an unsafe id or mask path, is skipped and named."""
    records, inputs, problems, seen = [], {}, [], set()
    for store in stores:
        for item in store.inputs() or []:
            inputs.setdefault(item.id, item)
            status = store.item_state(item.id)
            if status.get("quarantined"):
                problems.append(f"skipped {item.id}: {status['reason']}")
            if status.get("status") != "done":
                continue
            try:
                samples = store.samples(item.id)
                for data in samples:
                    check_id(data["id"], "sample id")
                    SampleRecord(store, item.id, data).mask_path  # noqa: B018 - checked before use
            except (RunFileError, IdError) as exc:
                problems.append(f"skipped {item.id}: {exc}")
                continue
            for data in samples:
                if data["id"] in seen:
                    problems.append(f"duplicate sample id {data['id']} in {store.root} (kept the first)")
                    continue
                seen.add(data["id"])
                records.append(SampleRecord(store, item.id, data))
    return records, inputs, problems


class Decisions:
    """Human Accept/Reject per sample id, kept in each run's ``review.json`` (atomic writes)."""

    def __init__(self, stores: list[RunStore]):
        self.stores = stores
        self._lock = threading.Lock()
        self._by_store: dict[Path, dict] = {}
        for store in stores:
            data = store.read("review.json", dict, runfiles.check_review) or {}
            self._by_store[store.root] = dict(data.get("decisions", {}))

    def get(self, record: SampleRecord) -> str | None:
        entry = self._by_store[record.store.root].get(record.id)
        return entry["decision"] if entry else None

    def set(self, record: SampleRecord, decision: str | None) -> None:
        if decision is not None and decision not in DECISIONS:
            raise ValueError(f"decision must be one of {DECISIONS} or null, got {decision!r}")
        with self._lock:
            table = self._by_store[record.store.root]
            if decision is None:
                table.pop(record.id, None)
            else:
                stamp = datetime.now(timezone.utc).isoformat(timespec="seconds")
                table[record.id] = {"decision": decision, "at": stamp}
            record.store.write_json("review.json", {"decisions": dict(sorted(table.items()))})

    def keep(self, record: SampleRecord, require_review: bool) -> bool:
        decision = self.get(record)
        if decision is not None:
            return decision == "accept"
        return not require_review and record.data["verdict"] == "accept"
