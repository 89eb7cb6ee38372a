"""Type checks of model preset fields (YAML files and overrides such as the node's ``model_overrides``).

Each field has one rule; a value of the wrong type raises PresetError naming the preset and the field, so a
quoted ``trained: 'no'`` cannot pass as a truthy string and a YAML list where a mapping is expected is a
clear message, not a traceback.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from numbers import Real
from typing import Any

from converseg_ros.errors import PresetError

BUILDERS = ("tiny",)
RELEASE_KEYS = ("repo_id", "sam2_checkpoint", "plm_checkpoint", "lora")
SOURCE_KEYS = ("repo_id", "filename")
LORA_KEYS = ("r", "alpha", "dropout", "target_modules")


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    names = {bool: "a boolean", str: "a string", int: "an integer", float: "a number", list: "a list",
             dict: "a mapping"}
    return names.get(type(value), type(value).__name__)


def _fail(where: str, wanted: str, value: Any) -> PresetError:
    """``where`` is ``<preset>: <field path>``."""
    source, _, name = where.rpartition(": ")
    shown = repr(value)
    shown = shown if len(shown) <= 60 else shown[:57] + "..."
    return PresetError(f"{source}: field {name!r} must be {wanted}, not {shown} ({_kind(value)})")


def _field(where: str) -> str:
    source, _, name = where.rpartition(": ")
    return f"{source}: field {name!r}"


def text(value: Any, where: str) -> None:
    if not isinstance(value, str):
        raise _fail(where, "a string", value)


def path_text(value: Any, where: str) -> None:
    if not isinstance(value, str) or not value.strip():
        raise _fail(where, "a non-empty string", value)


def optional_path(value: Any, where: str) -> None:
    if value is not None:
        path_text(value, where)


def flag(value: Any, where: str) -> None:
    if not isinstance(value, bool):
        raise _fail(where, "true or false", value)


def builder(value: Any, where: str) -> None:
    if value is not None and value not in BUILDERS:
        raise _fail(where, f"one of {list(BUILDERS)} or absent", value)


def _text_mapping(required: tuple[str, ...], allowed: tuple[str, ...]) -> Callable[[Any, str], None]:
    def check(value: Any, where: str) -> None:
        if value is None:
            return
        if not isinstance(value, Mapping):
            raise _fail(where, f"a mapping with {', '.join(allowed)}", value)
        unknown = sorted(set(value) - set(allowed))
        if unknown:
            raise PresetError(f"{_field(where)}: unknown key(s) {unknown} (known: {list(allowed)})")
        for key in required:
            if key not in value:
                raise PresetError(f"{_field(where)}: {key} is missing")
        for key, item in value.items():
            path_text(item, f"{where}.{key}")

    return check


def paper(value: Any, where: str) -> None:
    """``{metric: {split: {group: number}}}`` (published percentages)."""
    if not isinstance(value, Mapping):
        raise _fail(where, "a mapping of metric -> split -> group -> number", value)
    for metric, splits in value.items():
        if not isinstance(splits, Mapping):
            raise _fail(f"{where}.{metric}", "a mapping of split -> group -> number", splits)
        for split, groups in splits.items():
            if not isinstance(groups, Mapping):
                raise _fail(f"{where}.{metric}.{split}", "a mapping of group -> number", groups)
            for group, number in groups.items():
                if isinstance(number, bool) or not isinstance(number, Real):
                    raise _fail(f"{where}.{metric}.{split}.{group}", "a number", number)


def lora_mapping(value: Any, where: str) -> None:
    """The YAML ``lora`` section: ``{r, alpha, dropout, target_modules}``, each optional."""
    if not isinstance(value, Mapping):
        raise _fail(where, f"a mapping with {', '.join(LORA_KEYS)}", value)
    unknown = sorted(set(value) - set(LORA_KEYS))
    if unknown:
        raise PresetError(f"{_field(where)}: unknown key(s) {unknown} (known: {list(LORA_KEYS)})")
    for key in ("r", "alpha"):
        item = value.get(key, 1)
        if isinstance(item, bool) or not isinstance(item, int) or item < 1:
            raise _fail(f"{where}.{key}", "a positive integer", item)
    dropout = value.get("dropout", 0.0)
    if isinstance(dropout, bool) or not isinstance(dropout, Real) or not 0.0 <= dropout < 1.0:
        raise _fail(f"{where}.dropout", "a number in [0, 1)", dropout)
    modules = value.get("target_modules", ["q_proj"])
    if not isinstance(modules, list) or not modules or not all(isinstance(m, str) and m for m in modules):
        raise _fail(f"{where}.target_modules", "a non-empty list of module names", modules)


# ModelSpec field -> rule (the YAML ``lora`` section is checked by lora_mapping; ``lora`` here is the path)
FIELD_RULES: dict[str, Callable[[Any, str], None]] = {
    "name": path_text,
    "description": text,
    "trained": flag,
    "vlm": path_text,
    "sam2_config": path_text,
    "sam2_checkpoint": optional_path,
    "sam2_base": optional_path,
    "plm_checkpoint": optional_path,
    "lora": optional_path,
    "release": _text_mapping(("repo_id",), RELEASE_KEYS),
    "sam2_base_source": _text_mapping(SOURCE_KEYS, SOURCE_KEYS),
    "builder": builder,
    "paper": paper,
}


def check_fields(values: Mapping[str, Any], where: str) -> None:
    """Apply each field's rule; ``where`` names the preset (file or name) in messages."""
    for key, value in values.items():
        rule = FIELD_RULES.get(key)
        if rule is not None:
            rule(value, f"{where}: {key}")
