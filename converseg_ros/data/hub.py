"""The ConverSeg benchmark from the Hugging Face hub: ``aadarsh99/ConverSeg``, splits sam_seeded and
human_annotated.

The ``datasets`` cache is used as is: with ``HF_HUB_OFFLINE=1`` (or no network) a cached copy loads and a
missing one raises ``HubUnavailableError`` with what to do instead. A local folder in the hub layout
(``data/<split>-00000-of-00001.parquet``) is accepted in place of the id.
"""

from __future__ import annotations

import os

from converseg_ros.data.readers import DEFAULT_PROMPT
from converseg_ros.data.samples import ReadResult, Sample
from converseg_ros.errors import OfflineError
from converseg_ros.modeling.hub import hub_offline

HUB_DATASET = "aadarsh99/ConverSeg"
HUB_SPLITS: tuple[str, ...] = ("sam_seeded", "human_annotated")


class HubUnavailableError(OfflineError):
    """The benchmark is neither reachable nor in the local cache."""


def load_hub_split(
    split: str, dataset: str = HUB_DATASET, cache_dir: str | None = None, limit: int | None = None
) -> ReadResult:
    """Load one split as Samples holding the encoded image/mask bytes (decoded later, in workers)."""
    import datasets

    try:
        ds = datasets.load_dataset(dataset, split=split, cache_dir=cache_dir)
    except ValueError as exc:
        if "split" in str(exc).lower():
            raise HubUnavailableError(f"{dataset} has no split {split!r}: {exc}") from exc
        raise
    except Exception as exc:  # datasets/huggingface_hub raise many types for "not reachable, not cached"
        offline = hub_offline()
        raise HubUnavailableError(
            f"cannot load {dataset} split {split!r} ({type(exc).__name__}: {exc}).\n"
            f"{'HF_HUB_OFFLINE is set and ' if offline else ''}the dataset is not in the cache"
            f"{f' {cache_dir}' if cache_dir else ''}. Download it once on a machine with access "
            "(python -c \"import datasets; datasets.load_dataset('aadarsh99/ConverSeg')\") and copy "
            "the cache (HF_HOME / --hf-cache), pass a local copy with --hf-dataset DIR, or evaluate an "
            "items.json with --items."
        ) from exc
    missing = {"image", "mask", "prompt"} - set(ds.column_names)
    if missing:
        raise HubUnavailableError(f"{dataset}[{split}] lacks columns {sorted(missing)}")
    for column in ("image", "mask"):
        ds = ds.cast_column(column, datasets.Image(decode=False))
    if limit is not None:
        ds = ds.select(range(min(limit, len(ds))))
    result = ReadResult([])
    for index, row in enumerate(ds):
        item_id = str(row.get("id", index))
        image, mask = _payload(row["image"]), _payload(row["mask"])
        if image is None or mask is None:
            result.problems.append(f"{split}/{item_id}: image or mask has no data")
            continue
        prompt = (row.get("prompt") or "").strip() or DEFAULT_PROMPT
        result.samples.append(Sample(item_id, image, prompt, mask=mask, concept=row.get("concept")))
    return result


def _payload(cell: dict | None) -> bytes | None:
    """Encoded bytes of a ``datasets.Image(decode=False)`` cell (inline bytes or a cached file)."""
    if not cell:
        return None
    if cell.get("bytes"):
        return cell["bytes"]
    path = cell.get("path")
    if path and os.path.isfile(path):
        with open(path, "rb") as fh:
            return fh.read()
    return None
