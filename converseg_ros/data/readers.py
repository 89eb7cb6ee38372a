"""Readers for the on-disk dataset formats.

- reference training file ``dataset.jsonl``: one ``{"image", "mask_merged", "prompt"}`` object per line;
- evaluation ``items.json``: ``{"dataset", "count", "items": [{"id", "image", "mask", "prompt",
  "concept"}]}``;
- image folders: ``images/<stem>.<ext>`` and ``masks/<stem>[__<tag>].png`` with the prompt in
  ``masks/<stem>[__<tag>].txt``;
- ReasonSeg-style annotations: ``<stem>.jpg`` next to ``<stem>.json`` holding ``"text"`` (one or more queries)
  and labelme ``"shapes"`` (polygons labelled ``target`` or ``ignore``).

Relative paths resolve against the annotation file's folder. Entries whose files are missing are skipped and
reported in ``ReadResult.problems``; a malformed file raises ``DatasetError``.
"""

from __future__ import annotations

import json
from pathlib import Path

from converseg_ros.data.samples import ReadResult, Sample
from converseg_ros.errors import ConverSegError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff")
DEFAULT_PROMPT = "segment"


class DatasetError(ConverSegError, ValueError):
    """A dataset file or folder cannot be read."""


def _resolve(root: Path, value: str) -> Path:
    path = Path(value).expanduser()
    return path if path.is_absolute() else root / path


def read_jsonl(path: str | Path) -> ReadResult:
    """Read the reference ``dataset.jsonl`` (keys image, mask_merged, optional prompt)."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"dataset file not found: {path}")
    result = ReadResult([])
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            image, mask = row["image"], row["mask_merged"]
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise DatasetError(
                f"{path}:{lineno}: expected a JSON object with image and mask_merged ({exc})"
            ) from exc
        _add_sample(result, path.parent, f"{path.stem}_{lineno:06d}", image, mask, row, f"{path.name}:{lineno}")
    return result


def _add_sample(
    result: ReadResult, base: Path, sample_id: str, image: str, mask: str, record: dict, where: str
) -> None:
    """Append a sample whose image and mask exist (paths relative to ``base``), else note the problem."""
    image_path, mask_path = _resolve(base, image), _resolve(base, mask)
    missing = [str(p) for p in (image_path, mask_path) if not p.is_file()]
    if missing:
        result.problems.append(f"{where}: missing {', '.join(missing)}")
        return
    prompt = (record.get("prompt") or "").strip() or DEFAULT_PROMPT
    result.samples.append(Sample(sample_id, image_path, prompt, mask=mask_path, concept=record.get("concept")))


def read_items_json(path: str | Path) -> ReadResult:
    """Read an evaluation ``items.json`` (the reference exporter's format)."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"items file not found: {path}")
    try:
        items = json.loads(path.read_text(encoding="utf-8"))["items"]
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise DatasetError(f"{path}: expected a JSON object with an 'items' list ({exc})") from exc
    result = ReadResult([])
    seen: set[str] = set()
    for index, item in enumerate(items):
        try:
            item_id, image, mask = str(item.get("id", index)), item["image"], item["mask"]
        except (KeyError, TypeError, AttributeError) as exc:
            raise DatasetError(f"{path}: item {index} lacks image/mask ({exc})") from exc
        if item_id in seen:
            raise DatasetError(f"{path}: duplicate item id {item_id!r}")
        seen.add(item_id)
        _add_sample(result, path.parent, item_id, image, mask, item, item_id)
    return result


def read_image_folder(root: str | Path) -> ReadResult:
    """Read ``images/`` + ``masks/`` (+ prompt ``.txt`` sidecars) below ``root``."""
    root = Path(root)
    images_dir, masks_dir = root / "images", root / "masks"
    if not images_dir.is_dir() or not masks_dir.is_dir():
        raise DatasetError(f"{root}: expected sub-folders images/ and masks/")
    images = {p.stem: p for p in sorted(images_dir.iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES}
    result = ReadResult([])
    for mask_path in sorted(masks_dir.glob("*.png")):
        stem = mask_path.stem.split("__")[0]
        if stem not in images:
            result.problems.append(f"{mask_path.name}: no image images/{stem}.*")
            continue
        prompt_file = mask_path.with_suffix(".txt")
        if not prompt_file.is_file():
            result.problems.append(f"{mask_path.name}: no prompt file {prompt_file.name}")
            continue
        prompt = prompt_file.read_text(encoding="utf-8").strip() or DEFAULT_PROMPT
        result.samples.append(Sample(mask_path.stem, images[stem], prompt, mask=mask_path))
    return result


def read_reasonseg(root: str | Path) -> ReadResult:
    """Read ReasonSeg-style ``<stem>.json`` polygon annotations (one sample per query text)."""
    root = Path(root)
    files = sorted(root.glob("*.json")) if root.is_dir() else [root]
    if not files or not files[0].is_file():
        raise DatasetError(f"no ReasonSeg annotations (*.json) at {root}")
    result = ReadResult([])
    for ann_path in files:
        try:
            ann = json.loads(ann_path.read_text(encoding="utf-8"))
            texts = ann["text"] if isinstance(ann["text"], list) else [ann["text"]]
            shapes = ann["shapes"]
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            result.problems.append(f"{ann_path.name}: not a ReasonSeg annotation ({exc})")
            continue
        image_path = next((p for p in (ann_path.with_suffix(s) for s in IMAGE_SUFFIXES) if p.is_file()), None)
        if image_path is None:
            result.problems.append(f"{ann_path.name}: no image next to it")
            continue
        target = tuple(_polygon(s) for s in shapes if s.get("label", "target") != "ignore")
        ignore = tuple(_polygon(s) for s in shapes if s.get("label") == "ignore")
        for k, text in enumerate(texts):
            prompt = str(text).strip() or DEFAULT_PROMPT
            result.samples.append(
                Sample(f"{ann_path.stem}_{k}", image_path, prompt, polygons=target, ignore=ignore)
            )
    return result


def _polygon(shape: dict) -> list[tuple[float, float]]:
    return [(float(x), float(y)) for x, y in shape["points"]]


def read_dataset(path: str | Path) -> ReadResult:
    """Pick the reader by form: ``*.jsonl``, ``items.json``-style ``*.json``, an image folder or ReasonSeg."""
    path = Path(path)
    if path.suffix == ".jsonl":
        return read_jsonl(path)
    if path.is_file() and path.suffix == ".json":
        head = json.loads(path.read_text(encoding="utf-8"))
        return read_items_json(path) if isinstance(head, dict) and "items" in head else read_reasonseg(path)
    if path.is_dir():
        if (path / "images").is_dir() and (path / "masks").is_dir():
            return read_image_folder(path)
        if (path / "dataset.jsonl").is_file():
            return read_jsonl(path / "dataset.jsonl")
        if (path / "items.json").is_file():
            return read_items_json(path / "items.json")
        return read_reasonseg(path)
    raise DatasetError(f"dataset not found or format not recognised: {path}")
