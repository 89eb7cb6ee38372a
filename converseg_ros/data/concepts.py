"""Concept families of the ConverSeg benchmark and the mapping from dataset labels to a family."""

from __future__ import annotations

FAMILIES: tuple[str, ...] = ("entities", "spatial", "relations", "affordances", "physics")
OTHER = "other"

# Sub-types of each family as named in the data engine's meta-prompts (reference_implementation.md §5.2).
SUBTYPES: dict[str, tuple[str, ...]] = {
    "entities": (
        "instances_and_agents",
        "stuff_surfaces_regions",
        "object_parts_and_functional_regions",
        "materials_and_optics",
        "articulated_and_states",
        "groups_and_piles",
        "anticipatory_entity_state",
        "unusual_entity",
    ),
    "spatial": (
        "topological",
        "egocentric_viewer",
        "allocentric_object",
        "metric_bins",
        "support_contact",
        "visibility_occlusion",
        "counting_ordering",
        "unusual_location",
    ),
    "relations": ("atomic_posture", "event_state", "semantic_role", "anticipation"),
    "affordances": (
        "context_dependent",
        "context_independent",
        "negative_affordance",
        "counterfactual_affordance",
        "state_dependent_and_agent_conditional",
        "anticipatory_affordance",
    ),
    "physics": (
        "support_stability",
        "containment_and_flow",
        "collision_obstruction_passability",
        "hazard",
        "counterfactuals",
        "unusual",
    ),
}
_PREFIXES = {
    "entit": "entities",
    "spatial": "spatial",
    "relation": "relations",
    "affordance": "affordances",
    "physic": "physics",
}


def concept_family(concept: str | None) -> str:
    """Map a concept label ("Spatial & Layout", "SPATIAL", "relations/event_state", "hazard") to a family."""
    if not concept:
        return OTHER
    label = concept.strip().lower().replace("-", "_").replace(" ", "_")
    for prefix, family in _PREFIXES.items():
        if label.startswith(prefix):
            return family
    for family, subtypes in SUBTYPES.items():
        if any(part in subtypes for part in label.replace("/", ".").split(".")):
            return family
    return OTHER
