"""Stage 3 — mask quality: does the mask show what the label says (paper Fig. 9), and which of the
initial / refined masks is better (Fig. 10)?

The VLM sees the region highlighted (outside dimmed, green box) and as a red overlay; it answers
accept/reject and, when accepting, an unbiased description of the masked content. When the two candidate
masks differ (IoU below ``compare_below_iou``) a second call picks one — or neither, which rejects the
region. Accepted regions are renumbered 0..K-1 and keep the verifier's description.
"""

from __future__ import annotations

from converseg_ros.dataengine import overlays
from converseg_ros.dataengine.stages.context import StageContext
from converseg_ros.dataengine.vlm import VLMRequest

NAME = "mask_check"
CHOICE_NAME = "mask_choice"

CHECK_PROMPT = """Check strictly whether the highlighted region matches this text: "{label}".
The first picture keeps only the region bright inside a green box; the second shows it as a red mask
with the same green box. Judge the entity, its attributes and its location in the image.
If it matches, also describe the highlighted region in one short phrase, from the image alone (do not
copy the text above). Answer "output": true or false."""

CHECK_SCHEMA = {
    "type": "object",
    "properties": {"output": {"type": "boolean"}, "description": {"type": "string"}},
    "required": ["output", "description"],
    "additionalProperties": False,
}

CHOICE_PROMPT = """Two segmentations (red mask, green box) of the same region: "{label}".
The first picture is the "initial" mask, the second the "refined" one. Pick the better mask by coverage of
the region, a tight box, and fewer leaks or holes. If both are bad, answer "neither"."""

CHOICE_SCHEMA = {
    "type": "object",
    "properties": {"choice": {"type": "string", "enum": ["initial", "refined", "neither"]}},
    "required": ["choice"],
    "additionalProperties": False,
}


def run(ctx: StageContext, previous: dict) -> dict:
    s = ctx.settings
    accepted, rejected = [], []
    for region in previous["masks"]["regions"]:
        initial = ctx.files.read_mask(region["initial"])
        box = region["box"]
        views = [overlays.dimmed_outside(ctx.rgb, initial, box), overlays.red_mask(ctx.rgb, initial, box)]
        request = VLMRequest(NAME, CHECK_PROMPT.format(label=region["label"]), [ctx.to_vlm(v) for v in views],
                             CHECK_SCHEMA, temperature=s.temperature)
        verdict = ctx.client.ask(request)
        if not verdict["output"]:
            rejected.append({"index": region["index"], "label": region["label"],
                             "reason": "verifier: mask does not match the label"})
            continue
        choice, mask_rel = "initial", region["initial"]
        if region["agreement"] < s.compare_below_iou:
            refined = ctx.files.read_mask(region["refined"])
            pair = [overlays.red_mask(ctx.rgb, m, overlays.box_of(m) if m.any() else box) for m in (initial, refined)]
            request = VLMRequest(CHOICE_NAME, CHOICE_PROMPT.format(label=region["label"]),
                                 [ctx.to_vlm(v) for v in pair], CHOICE_SCHEMA, temperature=s.temperature)
            choice = ctx.client.ask(request)["choice"]
            if choice == "neither":
                rejected.append({"index": region["index"], "label": region["label"],
                                 "reason": "verifier: both candidate masks are bad"})
                continue
            mask_rel = region[choice]
        mask = ctx.files.read_mask(mask_rel)
        if not mask.any():
            rejected.append({"index": region["index"], "label": region["label"], "reason": "chosen mask is empty"})
            continue
        accepted.append({
            "index": len(accepted),
            "source_index": region["index"],
            "label": region["label"],
            "description": " ".join(verdict["description"].split()) or region["label"],
            "choice": choice,
            "mask": mask_rel,
            "box": overlays.box_of(mask),
        })
    return {"regions": accepted, "rejected": rejected}
