"""RLDS / TFDS episode datasets (DROID's ``droid`` and ``droid_100`` releases, Open X-Embodiment) without TensorFlow.

On disk (a prepared TFDS dataset): ``<name>/<version>/`` with ``features.json`` (the feature tree),
``dataset_info.json`` (name, splits) and shards ``<name>-<split>.tfrecord-NNNNN-of-MMMMM``. Each record is one
episode as a ``tf.train.Example`` in which TFDS flattened the nested features with ``/``: the per-step
``steps`` dataset becomes ``steps/observation/exterior_image_1_left`` (one encoded image per step),
``steps/language_instruction`` (one string per step), ``steps/is_first`` (int64 0/1) ...; episode-level
fields such as ``episode_metadata/file_path`` hold one value.

Cameras are the ``Image`` features under ``steps`` (named by their last path part); instructions are the
step text features whose name starts with ``language_instruction``. An episode's key is its shard file and
index, so shards of a run can claim episodes before anything is parsed.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from converseg_ros.data.tfrecord import TFRecordError, index_records, parse_example, read_record_at

IMAGE_CLASS = "image_feature.Image"
TEXT_CLASSES = ("text_feature.Text",)
SHARD_PATTERN = re.compile(r".+\.tfrecord-\d+-of-\d+$")


class RLDSError(TFRecordError):
    """An RLDS dataset folder that cannot be read."""


@dataclass(frozen=True)
class RLDSLayout:
    """What ``features.json`` says about one prepared dataset folder."""

    dataset: str
    folder: Path
    shards: tuple[Path, ...]
    images: dict[str, str]  # camera name -> flat feature key
    instructions: tuple[str, ...]  # flat keys of the step instruction texts, in name order
    metadata: tuple[str, ...]  # flat keys of episode-level text fields


@dataclass
class RLDSEpisode:
    """One parsed episode: its features plus where it came from."""

    layout: RLDSLayout
    shard: Path
    index: int
    features: dict = field(repr=False)

    @property
    def key(self) -> str:
        return episode_key(self.layout, self.shard, self.index)

    @property
    def steps(self) -> int:
        first = self.features.get("steps/is_first")
        if first is not None:
            return len(first)
        return max((len(self.features.get(k, [])) for k in self.layout.images.values()), default=0)

    def image(self, camera: str, step: int) -> bytes:
        values = self.features.get(self.layout.images[camera], [])
        if len(values) != self.steps:
            raise RLDSError(f"{self.shard}: episode {self.index} has {len(values)} {camera} images for "
                            f"{self.steps} steps")
        return values[step]

    def instructions(self, step: int) -> list[str]:
        """The step's instruction texts (non-empty, without repeats)."""
        out: list[str] = []
        for key in self.layout.instructions:
            values = self.features.get(key, [])
            text = values[step].decode("utf-8", "replace").strip() if step < len(values) else ""
            if text and text not in out:
                out.append(text)
        return out

    def metadata(self) -> dict[str, str]:
        out = {}
        for key in self.layout.metadata:
            values = self.features.get(key) or []
            if values and isinstance(values[0], bytes):
                out[key.split("/", 1)[-1]] = values[0].decode("utf-8", "replace")
        return out


def episode_key(layout: RLDSLayout, shard: Path, index: int) -> str:
    return f"{layout.dataset}/{shard.name}#{index}"


def find_rlds(root: str | Path) -> list[Path]:
    """Prepared dataset folders at or below ``root`` (a ``features.json`` next to TFRecord shards)."""
    root = Path(root)
    found = sorted({p.parent for p in root.rglob("features.json")} | ({root} if (root / "features.json").is_file()
                                                                     else set()))
    return [d for d in found if any(SHARD_PATTERN.match(p.name) for p in d.iterdir())]


def _walk(node: dict, prefix: str, out: dict[str, str], where: Path) -> None:
    """Flatten a features.json tree into {flat key: feature class}."""
    if not isinstance(node, dict) or "pythonClassName" not in node:
        raise RLDSError(f"{where}: unexpected feature entry at {prefix or '(top)'}")
    cls = node["pythonClassName"]
    if cls.endswith("features_dict.FeaturesDict"):
        for name, child in node["featuresDict"]["features"].items():
            _walk(child, f"{prefix}/{name}" if prefix else name, out, where)
    elif cls.endswith("dataset_feature.Dataset") or cls.endswith("sequence_feature.Sequence"):
        _walk(node["sequence"]["feature"], prefix, out, where)
    else:
        out[prefix] = cls


def load_layout(folder: str | Path) -> RLDSLayout:
    """Read ``features.json`` (+ ``dataset_info.json`` for the name) of a prepared dataset folder."""
    folder = Path(folder)
    try:
        tree = json.loads((folder / "features.json").read_text(encoding="utf-8"))
        flat: dict[str, str] = {}
        _walk(tree, "", flat, folder / "features.json")
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as exc:
        raise RLDSError(f"{folder / 'features.json'}: not a TFDS feature description ({exc})") from exc
    name = folder.parent.name if re.fullmatch(r"\d+\.\d+\.\d+", folder.name) else folder.name
    info_file = folder / "dataset_info.json"
    if info_file.is_file():
        try:
            name = str(json.loads(info_file.read_text(encoding="utf-8")).get("name") or name)
        except (UnicodeDecodeError, json.JSONDecodeError, AttributeError) as exc:
            raise RLDSError(f"{info_file}: unreadable ({exc})") from exc
    images = {k.rsplit("/", 1)[-1]: k for k, c in flat.items() if k.startswith("steps/") and c.endswith(IMAGE_CLASS)}
    if not images:
        raise RLDSError(f"{folder / 'features.json'}: no image feature under steps")
    instructions = tuple(sorted(k for k, c in flat.items() if k.startswith("steps/")
                                and k.rsplit("/", 1)[-1].startswith("language_instruction")))
    metadata = tuple(sorted(k for k, c in flat.items() if not k.startswith("steps/") and c.endswith(TEXT_CLASSES)))
    shards = tuple(sorted(p for p in folder.iterdir() if SHARD_PATTERN.match(p.name)))
    return RLDSLayout(name, folder, shards, images, instructions, metadata)


def episode_refs(layout: RLDSLayout) -> list[tuple[Path, int, int]]:
    """(shard file, index in the shard, byte offset) of every episode: headers only, nothing parsed."""
    return [(shard, i, offset) for shard in layout.shards for i, (offset, _n) in enumerate(index_records(shard))]


def read_episode(layout: RLDSLayout, shard: Path, index: int, offset: int) -> RLDSEpisode:
    """Parse the one episode at ``offset`` of ``shard``."""
    features = parse_example(read_record_at(shard, offset, index), f"{shard} record {index}")
    return RLDSEpisode(layout, shard, index, features)


def iter_episodes(layout: RLDSLayout, owns: Callable[[str], bool] = lambda _k: True) -> Iterator[RLDSEpisode]:
    """The episodes ``owns(key)`` accepts, in shard order; others are skipped unread."""
    for shard, index, offset in episode_refs(layout):
        if owns(episode_key(layout, shard, index)):
            yield read_episode(layout, shard, index, offset)
