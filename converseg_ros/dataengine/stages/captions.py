"""Stage 1 — scene understanding: 5-7 referable regions, each with a self-contained label and a box.

The paper asks Gemini for region labels (its Fig. 8) and then Moondream for boxes; here the same VLM call
also grounds each label with a box (Qwen2.5-VL and Gemini both ground natively), which removes a model
and a call per region. Boxes must lie inside the image the VLM saw: a reply with a box outside it, or
inverted, is invalid (and retried); boxes thinner than a few pixels are dropped.
"""

from __future__ import annotations

from converseg_ros.dataengine.stages.context import StageContext
from converseg_ros.dataengine.vlm import ReplyError, VLMRequest

NAME = "region_captions"

PROMPT = """You label regions of one image so that people can later refer to them in conversation.

First think briefly (in "reasoning"): the kind of scene, its most salient objects and areas, their layout
(foreground, midground, background), and which regions are easy to refer to, relate to each other, need
disambiguation and have clear outlines. Then choose 5 to 7 high-value, distinct regions (fewer in a simple
scene; never more than {max_regions}).

For each region give:
- "label": at most 15 words, self-contained (no pronouns): a common base noun, then distinguishing
  attributes (colour, material, state, pattern, transparency) when they help, a coarse location
  (top-left, center, bottom-right, foreground, background ...) and a relation to another object when useful
  ("on the desk", "behind the person"). Parts are written "<part> of <parent>" and the parent comes first.
  Stuff regions (sky, wall, floor, road, grass, water) are fine when salient. Use singular nouns unless
  you mean a deliberate group (e.g. "dual monitors").
- "box": {box_rule}

Prefer clear, well-bounded regions larger than about 50x50 pixels; skip tiny clutter (under 24x24 pixels),
regions overlapping another by more than 80 %, and ambiguous blobs. Cover the dominant subjects and the
objects one could interact with, with spatial and semantic variety. Never invent objects."""

BOX_RULES = {
    "pixel_xyxy": "[x_min, y_min, x_max, y_max] in pixels of this {width}x{height} image (origin top-left), "
    "tightly around the region.",
    "norm1000_yxyx": "[y_min, x_min, y_max, x_max] normalised to 0-1000 over the image height and width, "
    "tightly around the region.",
}


def schema(max_regions: int) -> dict:
    region = {
        "type": "object",
        "properties": {
            "label": {"type": "string"},
            "box": {"type": "array", "items": {"type": "number"}, "minItems": 4, "maxItems": 4},
        },
        "required": ["label", "box"],
        "additionalProperties": False,
    }
    return {
        "type": "object",
        "properties": {
            "reasoning": {"type": "string"},
            "regions": {"type": "array", "items": region, "maxItems": max_regions},
        },
        "required": ["reasoning", "regions"],
        "additionalProperties": False,
    }


def to_pixels(box: list[float], box_format: str, vlm_w: int, vlm_h: int, factor: float) -> list[float]:
    """A box as the VLM gave it -> [x0, y0, x1, y1] in original-image pixels; ReplyError when it lies
    outside the image the VLM saw or is inverted."""
    if box_format == "norm1000_yxyx":
        y0, x0, y1, x1 = box
        limit_x = limit_y = 1000.0
    else:
        x0, y0, x1, y1 = box
        limit_x, limit_y = float(vlm_w), float(vlm_h)
    tol = 1.0  # one unit of rounding slack, then clipped
    if min(x0, y0) < -tol or x1 > limit_x + tol or y1 > limit_y + tol:
        raise ReplyError(f"box {box} lies outside the {vlm_w}x{vlm_h} image", "box_outside")
    if x1 <= x0 or y1 <= y0:
        raise ReplyError(f"box {box} is empty or inverted", "box_inverted")
    x0, x1 = max(0.0, x0), min(limit_x, x1)
    y0, y1 = max(0.0, y0), min(limit_y, y1)
    if box_format == "norm1000_yxyx":
        orig_w, orig_h = vlm_w / factor, vlm_h / factor
        return [x0 / 1000 * orig_w, y0 / 1000 * orig_h, x1 / 1000 * orig_w, y1 / 1000 * orig_h]
    return [v / factor for v in (x0, y0, x1, y1)]


def run(ctx: StageContext, previous: dict) -> dict:
    """Ask for labelled boxes; keep the valid ones, renumbered 0..K-1."""
    s = ctx.settings
    vlm_h, vlm_w = ctx.vlm_rgb.shape[:2]
    box_format = ctx.client.box_format
    text = PROMPT.format(
        max_regions=s.max_regions, box_rule=BOX_RULES[box_format].format(width=vlm_w, height=vlm_h)
    )

    def check(reply: dict) -> None:
        for k, region in enumerate(reply["regions"]):
            if not region["label"].strip():
                raise ReplyError(f"region {k} has an empty label", "empty_label")
            to_pixels(region["box"], box_format, vlm_w, vlm_h, ctx.factor)

    request = VLMRequest(NAME, text, [ctx.vlm_rgb], schema(s.max_regions), temperature=s.temperature)
    reply = ctx.client.ask(request, check)
    regions, dropped = [], []
    for region in reply["regions"]:
        label = " ".join(region["label"].split())
        box = [round(v, 2) for v in to_pixels(region["box"], box_format, vlm_w, vlm_h, ctx.factor)]
        if min(box[2] - box[0], box[3] - box[1]) < s.min_box_pixels:
            dropped.append({"label": label, "box": box, "reason": "box thinner than the minimum"})
            continue
        regions.append({"index": len(regions), "label": label, "box": box})
    return {"reasoning": reply["reasoning"], "box_format": box_format, "regions": regions, "dropped": dropped}
