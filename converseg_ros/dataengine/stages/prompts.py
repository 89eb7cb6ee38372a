"""Stage 4 — concept-driven prompts: up to three conversational prompts per concept family (paper Fig. 11).

One call per family. The VLM sees the image, the accepted regions coloured and numbered, and the numbered
region descriptions; it returns prompts with ``candidates`` (regions a user might consider) and
``satisfying`` (those that really qualify). Hard rules make a reply invalid (retried): indices must name
an accepted region and the sub-type must be one of the family's. Soft rules drop just that prompt, with
the reason kept: ``satisfying`` must be a strict subset of ``candidates`` (the paper's proper-subset rule),
at most ``max_prompts_words`` words, and an empty target only with ``--hard-negatives``. When the input
carries the robot's own task words (a DROID task, an RLDS instruction, a log's instruction topic) they are
given as context, so prompts are about what the robot was doing; the output keeps them.
"""

from __future__ import annotations

from converseg_ros.dataengine import overlays
from converseg_ros.dataengine.stages.context import StageContext
from converseg_ros.dataengine.vlm import ReplyError, VLMRequest

NAME = "concept_prompts"

# family -> (title, what its prompts probe, the contextual-plausibility pitfall, sub-types with meaning)
FAMILY_GUIDES: dict[str, tuple[str, str, str, dict[str, str]]] = {
    "entities": (
        "Entities",
        "which things, stuff, parts or materials are present and in what state",
        "asking for 'the metal object' when an unmasked metal object is just as visible",
        {
            "instances_and_agents": "specific objects, people or animals picked out by a visual trait",
            "stuff_surfaces_regions": "amorphous regions and surfaces (floor, sky, a patch of grass)",
            "object_parts_and_functional_regions": "parts of objects, handles, edges, openings",
            "materials_and_optics": "material, transparency, reflections",
            "articulated_and_states": "open/closed, on/off, folded, filled",
            "groups_and_piles": "collections, stacks, piles taken together",
            "anticipatory_entity_state": "things about to change state (melting, tipping, boiling)",
            "unusual_entity": "something odd or out of place",
        },
    ),
    "spatial": (
        "Spatial & Layout",
        "where things are relative to the viewer, to each other, and to supporting surfaces",
        "'the object on the left' when several unmasked objects are on the left too",
        {
            "topological": "inside, on, touching, enclosed by",
            "egocentric_viewer": "left/right/near/far from the camera's point of view",
            "allocentric_object": "relative to another object's own front/back/side",
            "metric_bins": "rough sizes or distances (within arm's reach, taller than the chair)",
            "support_contact": "what rests on or leans against what",
            "visibility_occlusion": "partly hidden, in front of, behind",
            "counting_ordering": "the second from the left, the largest of three",
            "unusual_location": "something in an unexpected place",
        },
    ),
    "relations": (
        "Relations & Events",
        "what agents and objects are doing or are about to do, and the roles they play",
        "'the person holding something' when an unmasked person also holds something",
        {
            "atomic_posture": "poses and postures (sitting, bending, reaching)",
            "event_state": "ongoing actions or events and who/what takes part",
            "semantic_role": "agent, instrument, recipient, container in an interaction",
            "anticipation": "what is about to happen next",
        },
    ),
    "affordances": (
        "Affordances & Functions",
        "what things can be used for here and now: usability, function, improvised uses",
        "'a surface to put a laptop on' returning a small stool when an unmasked table is the obvious choice",
        {
            "context_dependent": "usable given the current scene (sittable now, reachable now)",
            "context_independent": "canonical function regardless of state (seating, water source)",
            "negative_affordance": "what must not be used for something (not for liquids, not safe to touch)",
            "counterfactual_affordance": "creative or improvised uses (could prop a door, could be a step)",
            "state_dependent_and_agent_conditional": "needs a state or an agent (openable if not blocked, "
            "operable by a child)",
            "anticipatory_affordance": "a function about to emerge (will soon be hot, about to be ready)",
        },
    ),
    "physics": (
        "Physics & Safety",
        "stability, containment, collisions, passability and hazards",
        "'the thing that could fall' when an unmasked object is far more precarious",
        {
            "support_stability": "what holds what up, what would topple",
            "containment_and_flow": "what holds or could spill liquids or items",
            "collision_obstruction_passability": "what blocks a path, what one could pass through",
            "hazard": "sharp, hot, fragile, electrical or otherwise dangerous",
            "counterfactuals": "what would happen if something were moved or removed",
            "unusual": "physically odd or risky arrangements",
        },
    ),
}

PROMPT = """You write difficult, conversational segmentation prompts about {title}: {probe}.
{robot_context}You get the image and a copy where the available segmentation masks are coloured and numbered, plus the
numbered descriptions of those masks below.

Write up to {count} prompts. Each must need a careful look at the image to decide which numbered regions
it refers to; reading the descriptions alone must not be enough.

Most important — contextual plausibility: a prompt must make sense for the WHOLE scene, not only for the
masked regions, and must apply ONLY to the regions you list as satisfying and to NO unmasked part of the
image. Do not promote a masked region for something that an unmasked, more obvious region does better
(for example {pitfall}); add a constraint (state, material, position, size) that makes the answer
unique, or drop the prompt.

For each prompt give:
- "prompt": at most {max_words} words, starting with an action verb ("Segment ...", "Identify ...",
  "Highlight ...");
- "subtype": one of {subtypes_list};
- "candidates": indices of the regions a user would plausibly consider;
- "satisfying": the candidates that really satisfy the prompt after looking: a STRICT subset of
  "candidates" (never all of them){negatives_rule}.
Vary the sub-types.

Sub-types:
{subtypes}

Numbered regions:
{captions}"""

ROBOT_CONTEXT = """This image was recorded by a robot while it worked on this task: {task}
Prefer prompts that matter for that task (the objects it acts on, where things go, what is in the way,
what is safe to touch), for example "the pot the marker goes into" — still following every rule below.
"""


def robot_context(instructions: list[str]) -> str:
    if not instructions:
        return ""
    return ROBOT_CONTEXT.format(task=" / ".join(f'"{t}"' for t in instructions[:3]))


NEGATIVES_RULE = {
    False: "; never empty",
    True: "; it may be empty for a hard negative: a plausible prompt whose true answer is nothing in this "
    "image (a missing object, a false attribute or a false relation)",
}


def schema(family: str, count: int) -> dict:
    subtypes = list(FAMILY_GUIDES[family][3])
    index_list = {"type": "array", "items": {"type": "integer"}}
    item = {
        "type": "object",
        "properties": {
            "prompt": {"type": "string"},
            "subtype": {"type": "string", "enum": subtypes},
            "candidates": index_list,
            "satisfying": index_list,
        },
        "required": ["prompt", "subtype", "candidates", "satisfying"],
        "additionalProperties": False,
    }
    return {
        "type": "object",
        "properties": {"prompts": {"type": "array", "items": item, "maxItems": count}},
        "required": ["prompts"],
        "additionalProperties": False,
    }


def captions_text(regions: list[dict]) -> str:
    return "\n".join(f"{r['index']}: {r['description'] or r['label']}" for r in regions)


def soft_problem(item: dict, max_words: int, negatives: bool) -> str | None:
    """Why a (schema-valid, in-range) prompt is dropped, or None to keep it."""
    cand, sat = set(item["candidates"]), set(item["satisfying"])
    if not item["prompt"].strip():
        return "empty prompt"
    if len(item["prompt"].split()) > max_words:
        return f"longer than {max_words} words"
    if not sat <= cand:
        return "satisfying is not a subset of candidates"
    if sat == cand:
        return "satisfying equals candidates (not a strict subset)"
    if not sat and not negatives:
        return "empty target (hard negatives are off)"
    return None


def run(ctx: StageContext, previous: dict) -> dict:
    s = ctx.settings
    regions = previous["verify_masks"]["regions"]
    families: dict[str, dict] = {}
    if not regions:
        return {"families": {f: {"prompts": [], "dropped": []} for f in s.families}, "note": "no accepted regions"}
    masks = [ctx.files.read_mask(r["mask"]) for r in regions]
    numbered = ctx.to_vlm(overlays.numbered_regions(ctx.rgb, masks))
    n = len(regions)

    def check(reply: dict) -> None:
        for k, item in enumerate(reply["prompts"]):
            bad = [i for i in item["candidates"] + item["satisfying"] if not 0 <= i < n]
            if bad:
                raise ReplyError(f"prompt {k} names regions {bad}; only 0..{n - 1} exist", "index_out_of_range")

    for family in s.families:
        title, probe, pitfall, subtypes = FAMILY_GUIDES[family]
        text = PROMPT.format(
            title=title, probe=probe, pitfall=pitfall, robot_context=robot_context(ctx.instructions),
            count=s.prompts_per_family, max_words=s.max_prompt_words,
            subtypes_list=", ".join(subtypes), negatives_rule=NEGATIVES_RULE[s.hard_negatives],
            subtypes="\n".join(f"- {k}: {v}" for k, v in subtypes.items()), captions=captions_text(regions),
        )
        request = VLMRequest(NAME, text, [ctx.vlm_rgb, numbered], schema(family, s.prompts_per_family),
                             temperature=s.temperature)
        reply = ctx.client.ask(request, check)
        kept, dropped = [], []
        for item in reply["prompts"]:
            prompt = " ".join(item["prompt"].split())
            problem = soft_problem(item, s.max_prompt_words, s.hard_negatives)
            if problem:
                dropped.append({"prompt": prompt, "reason": problem})
                continue
            satisfying = sorted(set(item["satisfying"]))
            kept.append({"prompt": prompt, "subtype": item["subtype"], "candidates": sorted(set(item["candidates"])),
                         "satisfying": satisfying, "negative": not satisfying})
        families[family] = {"prompts": kept, "dropped": dropped}
    return {"families": families, "instructions": list(ctx.instructions)}
