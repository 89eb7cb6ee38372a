"""Preset fields are type-checked: a wrong type is a PresetError naming the preset file and the field (a quoted
``trained: 'no'`` cannot pass as a truthy string and hide the UNTRAINED banner; a YAML list where a mapping or
a string belongs is a message, not a traceback). The shipped presets still load."""

from __future__ import annotations

from pathlib import Path

import pytest

from converseg_ros.errors import PresetError
from converseg_ros.modeling.presets import available_presets, load_preset

CASES = [
    ("trained: 'no'\nbuilder: tiny\n", "field 'trained' must be true or false, not 'no' (a string)"),
    ("trained: 1\n", "field 'trained' must be true or false, not 1 (an integer)"),
    ("- builder\n- tiny\n", "a preset must be a mapping of fields, not list"),
    ("description: [a, b]\n", "field 'description' must be a string, not ['a', 'b'] (a list)"),
    ("vlm: [Qwen/Qwen2.5-VL-3B-Instruct]\n", "field 'vlm' must be a non-empty string"),
    ("sam2_config: {name: sam2_hiera_l.yaml}\n", "field 'sam2_config' must be a non-empty string"),
    ("sam2_checkpoint: 3\n", "field 'sam2_checkpoint' must be a non-empty string, not 3 (an integer)"),
    ("builder: huge\n", "field 'builder' must be one of ['tiny'] or absent"),
    ("lora: [16, 32]\n", "field 'lora' must be a mapping with r, alpha, dropout, target_modules, not [16, 32]"),
    ("lora: {r: sixteen}\n", "field 'lora.r' must be a positive integer, not 'sixteen' (a string)"),
    ("lora: {dropout: 2}\n", "field 'lora.dropout' must be a number in [0, 1), not 2"),
    ("lora: {target_modules: q_proj}\n", "field 'lora.target_modules' must be a non-empty list of module names"),
    ("lora: {rank: 8}\n", "field 'lora': unknown key(s) ['rank']"),
    ("release: [aadarsh99/ConverSeg-Net-3B]\n", "field 'release' must be a mapping with repo_id"),
    ("release: {sam2_checkpoint: a.torch}\n", "field 'release': repo_id is missing"),
    ("release: {repo_id: [a]}\n", "field 'release.repo_id' must be a non-empty string"),
    ("sam2_base_source: {repo_id: facebook/sam2-hiera-large}\n", "field 'sam2_base_source': filename is missing"),
    ("paper: {giou: {all: 70.5}}\n", "field 'paper.giou.all' must be a mapping of group -> number"),
    ("paper: {giou: {s: {all: high}}}\n", "field 'paper.giou.s.all' must be a number, not 'high'"),
    ("lora_settings: {r: 4}\n", "unknown field(s) ['lora_settings']"),
    ("{unclosed\n", "invalid YAML"),
]


@pytest.mark.parametrize("text, message", CASES)
def test_wrong_types_name_the_field(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "preset.yaml"
    path.write_text(text)
    with pytest.raises(PresetError) as err:
        load_preset(str(path))
    assert str(err.value).startswith(f"{path}: ") and message in str(err.value), str(err.value)


def test_overrides_are_checked_like_the_file() -> None:
    """The node's model_overrides JSON and the CLIs' file options go through with_overrides."""
    spec = load_preset("tiny")
    with pytest.raises(PresetError, match="model option\\(s\\) for tiny: field 'trained' must be true or false"):
        spec.with_overrides(trained="no")
    with pytest.raises(PresetError, match="field 'plm_checkpoint' must be a non-empty string, not \\['a'\\]"):
        spec.with_overrides(plm_checkpoint=["a"])
    with pytest.raises(PresetError, match="unknown model option"):
        spec.with_overrides(lora_settings={"r": 4})
    assert spec.with_overrides(plm_checkpoint="/data/plm.torch", trained=False).plm_checkpoint == "/data/plm.torch"


def test_shipped_presets_load_with_their_types() -> None:
    names = available_presets()
    assert {"tiny", "converseg-3b", "converseg-7b"} <= set(names)
    for name in names:
        spec = load_preset(name)
        assert isinstance(spec.trained, bool) and isinstance(spec.lora_settings.r, int)
    assert load_preset("tiny").trained is False and load_preset("converseg-3b").trained is True
    assert load_preset("converseg-3b").paper["giou"]["sam_seeded"]["all"] == 70.5
