"""The paper's five stages, in order; each module has its prompt template(s), JSON schema(s) and ``run``.

``run(ctx, previous)`` gets the outputs of the earlier stages (keyed by stage key) and returns a
JSON-ready dict; any mask files it refers to are written before it returns.
"""

from __future__ import annotations

from converseg_ros.dataengine.stages import captions, masks, prompts, verify_masks, verify_prompts

# (key, module) in pipeline order; the key names the stage's output file: stage<N>_<key>.json
STAGES = [
    ("captions", captions),
    ("masks", masks),
    ("verify_masks", verify_masks),
    ("prompts", prompts),
    ("verify_prompts", verify_prompts),
]
STAGE_KEYS = [key for key, _ in STAGES]
