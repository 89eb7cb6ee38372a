"""Stage templates and schemas: valid JSON Schema, the families' sub-types are the benchmark's, prompt rules,
the schema sent to strict APIs, and SAM2 box masks from the tiny preset at the image's own size."""

from __future__ import annotations

import jsonschema
import numpy as np
import pytest
from dataengine_inputs import photo

from converseg_ros.data.concepts import FAMILIES, SUBTYPES, concept_family
from converseg_ros.dataengine.models import load_box_sam2
from converseg_ros.dataengine.segmenter import BoxSegmenter
from converseg_ros.dataengine.stages import captions, prompts, verify_masks, verify_prompts
from converseg_ros.dataengine.vlm.base import wire_schema
from converseg_ros.dataengine.vlm.gemini import gemini_schema

SCHEMAS = [captions.schema(8), verify_masks.CHECK_SCHEMA, verify_masks.CHOICE_SCHEMA, verify_prompts.SCHEMA,
           *(prompts.schema(f, 3) for f in FAMILIES)]


@pytest.mark.parametrize("schema", SCHEMAS)
def test_schemas_are_strict_json_schema(schema):
    jsonschema.Draft202012Validator.check_schema(schema)

    def objects(node):
        if isinstance(node, dict):
            if node.get("type") == "object":
                yield node
            for value in node.values():
                yield from objects(value)
        elif isinstance(node, list):
            for value in node:
                yield from objects(value)

    for obj in objects(schema):  # what OpenAI's strict mode demands of every object
        assert obj["additionalProperties"] is False and sorted(obj["required"]) == sorted(obj["properties"])
    sent = wire_schema(schema)
    assert "maxItems" not in str(sent) and "minItems" not in str(sent)
    assert "additionalProperties" not in str(gemini_schema(schema))


def test_families_are_the_benchmarks():
    assert tuple(prompts.FAMILY_GUIDES) == FAMILIES
    for family, (_, _, _, subtypes) in prompts.FAMILY_GUIDES.items():
        assert tuple(subtypes) == SUBTYPES[family]
        assert all(concept_family(s) == family for s in subtypes)


def test_prompt_rules():
    ok = {"prompt": "Segment the mug left of the laptop", "candidates": [0, 1], "satisfying": [0]}
    assert prompts.soft_problem(ok, 10, negatives=False) is None
    assert "strict subset" in prompts.soft_problem({**ok, "satisfying": [0, 1]}, 10, False)
    assert "not a subset" in prompts.soft_problem({**ok, "satisfying": [2]}, 10, False)
    assert "longer than 5 words" == prompts.soft_problem(ok, 5, False)
    assert "hard negatives are off" in prompts.soft_problem({**ok, "satisfying": []}, 10, False)
    assert prompts.soft_problem({**ok, "satisfying": []}, 10, True) is None
    text = prompts.PROMPT.format(
        title="T", probe="p", pitfall="x", count=3, max_words=10, subtypes_list="a", negatives_rule="",
        subtypes="- a: b", captions="0: cup\n1: plate", robot_context="")
    assert "STRICT subset" in text and text.endswith("0: cup\n1: plate") and "robot" not in text
    context = prompts.robot_context(["put the marker in the pot", "marker to pot"])
    assert '"put the marker in the pot" / "marker to pot"' in context and prompts.robot_context([]) == ""


def test_box_masks_from_the_tiny_preset():
    segmenter = BoxSegmenter(load_box_sam2("tiny", device="cpu"))
    rgb = photo("coffee", side=150)  # 150 x 100: letterboxed into the tiny SAM2's 128-px input
    boxes = [[10, 10, 70, 60], [80, 20, 140, 90]]
    first = segmenter.segment(rgb, boxes)
    again = segmenter.segment(rgb, boxes)
    assert len(first) == 2
    for masks, repeat in zip(first, again, strict=True):
        assert masks.initial.shape == masks.refined.shape == rgb.shape[:2]
        assert masks.initial.dtype == bool
        assert np.array_equal(masks.initial, repeat.initial)
    assert not np.array_equal(first[0].initial, first[1].initial)  # the box prompt changes the mask
    assert segmenter.segment(rgb, []) == []
