"""Stage 5 — prompt-mask alignment (paper Fig. 12): is the merged target mask what the prompt describes?

For each prompt the target is the union of its satisfying regions' masks (empty for a hard negative).
The VLM sees that target highlighted (coloured, boxed, rest dimmed, the prompt in a banner) and the plain
image, and accepts or rejects with a reason. Every prompt becomes a sample with a stable id
``<image id>__<family>_<k>``; its mask is written before the stage's record, so a sample id exists at most
once however often a run is resumed.
"""

from __future__ import annotations

import numpy as np

from converseg_ros.dataengine import overlays
from converseg_ros.dataengine.stages.context import StageContext
from converseg_ros.dataengine.vlm import VLMRequest

NAME = "prompt_check"

PROMPT = """Decide whether the highlighted mask is what this expression refers to in the image.
Expression: "{prompt}"

The first picture shows the mask (coloured regions with boxes; everything else dimmed; the expression in
the banner on top); the second is the plain image.{empty_note}

If a mask is shown, accept it only if (1) the masked regions are the target the expression describes,
(2) the mask holds nothing beyond what it describes — when other unmasked regions also match, accept as
long as the mask covers the most obvious, salient instances — and (3) the expression is a reasonable way
to refer to something in this image.
If no mask is shown, accept only if truly nothing in the image matches the expression.
Be generous with natural wording: judge whether the mask matches what is described, not whether the
wording is perfect. Answer "accept": true or false and a brief "reason"."""

EMPTY_NOTE = " Here NO mask is present: nothing is highlighted."

SCHEMA = {
    "type": "object",
    "properties": {"accept": {"type": "boolean"}, "reason": {"type": "string"}},
    "required": ["accept", "reason"],
    "additionalProperties": False,
}


def sample_id(image_id: str, family: str, k: int) -> str:
    return f"{image_id}__{family}_{k:02d}"


def run(ctx: StageContext, previous: dict) -> dict:
    s = ctx.settings
    regions = previous["verify_masks"]["regions"]
    masks = {r["index"]: ctx.files.read_mask(r["mask"]) for r in regions}
    boxes = {r["index"]: r["box"] for r in regions}
    samples = []
    for family, block in previous["prompts"]["families"].items():
        for k, item in enumerate(block["prompts"]):
            chosen = item["satisfying"]
            target = np.zeros(ctx.rgb.shape[:2], bool)
            for i in chosen:
                target |= masks[i]
            view = overlays.prompt_view(ctx.rgb, [masks[i] for i in chosen], [boxes[i] for i in chosen],
                                        item["prompt"])
            text = PROMPT.format(prompt=item["prompt"], empty_note=EMPTY_NOTE if not chosen else "")
            request = VLMRequest(NAME, text, [ctx.to_vlm(view), ctx.vlm_rgb], SCHEMA, temperature=s.temperature)
            verdict = ctx.client.ask(request)
            sid = sample_id(ctx.image_id, family, k)
            samples.append({
                "id": sid,
                "family": family,
                "subtype": item["subtype"],
                "prompt": item["prompt"],
                "satisfying": chosen,
                "negative": item["negative"],
                "verdict": "accept" if verdict["accept"] else "reject",
                "reason": " ".join(verdict["reason"].split()),
                "mask": ctx.files.write_mask(f"samples/{sid}.png", target),
                "instructions": list(ctx.instructions),
            })
    return {"samples": samples}
