"""A run's settings, resolved once: defaults <- run.json <- command line, paths made absolute, URLs scrubbed.

Result settings decide what a run produces and are stored in ``run.json``; ``--resume`` compares them
after normalisation (``photos/`` and ``./photos`` are one folder; family order does not matter) and refuses
a change. Run settings (workers, timeouts, prices, the endpoint URL, budget, pace) may change on resume.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from converseg_ros.data.concepts import FAMILIES
from converseg_ros.dataengine.scrub import has_credentials, scrub_url
from converseg_ros.errors import ConverSegError

RESULT_DEFAULTS: dict = {
    "images": [], "bag": [], "topic": [], "droid": [], "rlds": [], "cameras": "ext1,ext2,wrist",
    "instruction_topic": None, "fps": 15.0,
    "every_s": 1.0, "scene_threshold": None, "max_images": None, "shard": None,
    "vlm": None, "model": None, "api_key_env": None, "max_tokens": 4096,
    "sam2": None, "sam2_weights": "release", "sam2_checkpoint": None, "device": "auto", "precision": "auto",
    "families": ",".join(FAMILIES), "hard_negatives": False, "max_regions": 8, "vlm_max_side": 1024,
    "temperature": 0.7,
}
RUN_DEFAULTS: dict = {
    "base_url": None, "workers": 4, "concurrency": None, "timeout": 120.0, "retries": 4, "backoff": 1.0,
    "price_in": None, "price_out": None, "retry_failed": False, "progress": True, "allow_download": False,
    "ray": None, "ray_address": None, "max_cost": None, "rpm": None, "dry_run": False, "estimate_from": None,
}
DEFAULT_MODELS = {"gemini": "gemini-2.5-flash"}
PATH_LISTS = ("images", "bag", "droid", "rlds")


def _abs(value: str) -> str:
    return str(Path(value).expanduser().resolve())


def _maybe_path(value: str | None) -> str | None:
    """A model/preset argument: a path when it names an existing file or folder, else as given."""
    if value and (Path(value).expanduser().exists() or value.startswith((".", "/", "~"))):
        return _abs(value)
    return value


def normalise(result: dict) -> dict:
    """Result settings in one canonical form (absolute paths, canonical lists)."""
    out = dict(result)
    for key in PATH_LISTS:
        out[key] = [_abs(p) for p in out.get(key) or []]
    out["topic"] = list(out.get("topic") or [])
    out["sam2_checkpoint"] = _abs(out["sam2_checkpoint"]) if out.get("sam2_checkpoint") else None
    out["model"] = _maybe_path(out.get("model"))
    out["sam2"] = _maybe_path(out.get("sam2"))
    cameras = [c.strip() for c in str(out.get("cameras") or "").split(",") if c.strip()]
    out["cameras"] = ",".join(dict.fromkeys(cameras))
    families = {f.strip() for f in str(out.get("families") or "").split(",") if f.strip()}
    unknown = sorted(families - set(FAMILIES))
    if unknown or not families:
        raise ConverSegError(f"--families: unknown {unknown}; choose from {','.join(FAMILIES)}")
    out["families"] = ",".join(f for f in FAMILIES if f in families)
    for key in ("every_s", "fps", "temperature"):
        out[key] = float(out[key])
    return out


def resolve_config(args: dict, stored: dict | None) -> dict:
    """Defaults <- stored run.json <- command line; on resume, result settings must not change."""
    given = {k: v for k, v in args.items() if k in RESULT_DEFAULTS}
    if stored is not None:
        base = normalise({**RESULT_DEFAULTS, **{k: v for k, v in stored.items() if k in RESULT_DEFAULTS}})
        wanted = normalise({**base, **given})
        changed = {k: (base[k], wanted[k]) for k in given if base[k] != wanted[k]}
        if changed:
            text = ", ".join(f"{k}: run has {a!r}, given {b!r}" for k, (a, b) in changed.items())
            raise ConverSegError(f"--resume with different settings ({text}); start a new --out instead")
        result = base
        stored_url = stored.get("base_url")
    else:
        result = {**RESULT_DEFAULTS, **given}
        stored_url = None
    run = {**RUN_DEFAULTS, **{k: v for k, v in args.items() if k in RUN_DEFAULTS}}
    run["base_url"] = run["base_url"] or stored_url
    key_env = result["api_key_env"]
    if key_env is not None and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key_env):
        # never echo it: a key pasted here by mistake must not reach the terminal or run.json
        raise ConverSegError("--api-key-env takes the NAME of an environment variable (e.g. OPENAI_API_KEY), "
                             "not the key itself")
    if result["vlm"] is None:
        raise ConverSegError("--vlm is required (openai, gemini or transformers)")
    result["model"] = result["model"] or DEFAULT_MODELS.get(result["vlm"])
    if not result["model"]:
        raise ConverSegError(f"--model is required for --vlm {result['vlm']}")
    if result["sam2"] is None:
        from converseg_ros.dataengine.models import is_preset

        local_preset = result["vlm"] == "transformers" and is_preset(result["model"])
        result["sam2"] = result["model"] if local_preset else "converseg-3b"
    return {**normalise(result), **run}


def stored_settings(cfg: dict) -> dict:
    """What run.json keeps: the result settings and the endpoint URL without credentials."""
    return {**{k: cfg[k] for k in RESULT_DEFAULTS}, "base_url": scrub_url(cfg.get("base_url"))}


def url_warning(cfg: dict) -> str | None:
    if has_credentials(cfg.get("base_url")):
        return ("--base-url carries credentials: they are used for this session only and not stored "
                "(give --base-url again on --resume, or put the key in an environment variable)")
    return None


def template_hash() -> str:
    """A hash of every stage's prompt template(s): a resume across a template change is reported."""
    from converseg_ros.dataengine.stages import STAGES

    h = hashlib.sha256()
    for key, module in STAGES:
        for name in sorted(vars(module)):
            value = getattr(module, name)
            if name.isupper() and isinstance(value, (str, dict)):
                h.update(f"{key}.{name}={value!r}".encode())
    return h.hexdigest()[:16]


def package_version() -> str:
    from importlib import metadata

    try:
        return metadata.version("converseg_ros")
    except metadata.PackageNotFoundError:
        return "unknown"
