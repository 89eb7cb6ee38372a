"""``--dry-run``: how many VLM requests and tokens a run will take, and what that costs, before spending.

Per image the stages make 1 (captions) + R (mask checks) + C (initial-vs-refined choices) + F (one per
concept family) + P (one per kept prompt) calls. The rates come from a finished run when one is at hand —
the run being resumed, or ``--estimate-from RUN`` (a small pilot run on similar images) — as requests per
processed image for each stage (families scaled per family) and tokens per request; otherwise from the
defaults below, which assume a capable VLM (6 regions, 70 % kept, half of them compared, 2.5 prompts kept per
family) and images of ``--vlm-max-side`` pixels.
"""

from __future__ import annotations

from pathlib import Path

from converseg_ros.dataengine.runfiles import RunFileError

PER_FAMILY = ("concept_prompts", "prompt_check")
# defaults per image and per request: calls (per family for PER_FAMILY), pictures per call, output tokens
DEFAULT_RATES = {
    "region_captions": (1.0, 1, 350),
    "mask_check": (6.0, 2, 40),
    "mask_choice": (2.1, 2, 10),
    "concept_prompts": (1.0, 2, 400),
    "prompt_check": (2.5, 2, 40),
}
TEXT_TOKENS = 600  # prompt text per request


def image_tokens(side: int) -> int:
    """Tokens one picture of ``side`` pixels (longer side, 4:3) costs a Qwen2.5-VL-style model (28 px patches)."""
    return max(1, (side // 28) * (side * 3 // 4 // 28))


def observed_rates(summaries: list[dict], processed: int, families: int) -> dict[str, tuple[float, float, float]]:
    """Requests per image (per family where it applies) and tokens in/out per request, from finished runs."""
    rates: dict[str, tuple[float, float, float]] = {}
    attempts_total = sum(s.get("attempts", 0) for s in summaries)
    calls_total = sum(s.get("calls", 0) for s in summaries) or 1
    retry_factor = attempts_total / calls_total if attempts_total else 1.0
    for stage in DEFAULT_RATES:
        calls = sum(s.get("calls_by_stage", {}).get(stage, 0) for s in summaries)
        tok = [s.get("tokens_by_stage", {}).get(stage, {}) for s in summaries]
        tin, tout = sum(t.get("input", 0) for t in tok), sum(t.get("output", 0) for t in tok)
        per_image = calls * retry_factor / max(processed, 1)
        if stage in PER_FAMILY:
            per_image /= max(families, 1)
        attempts = max(calls * retry_factor, 1)
        rates[stage] = (per_image, tin / attempts, tout / attempts)
    return rates


def default_rates(vlm_max_side: int) -> dict[str, tuple[float, float, float]]:
    picture = image_tokens(vlm_max_side)
    return {k: (n, TEXT_TOKENS + pics * picture, out) for k, (n, pics, out) in DEFAULT_RATES.items()}


def calibration(stores) -> tuple[list[dict], int, int, str] | None:
    """Summaries, processed images and family count of finished runs (None when nothing was processed)."""
    summaries, processed, families, names = [], 0, 0, []
    for store in stores:
        try:
            summary = (store.read("summary.json") or {}).get("total") or {}
            manifest = store.manifest()
            info = store.run_info() or {}
        except RunFileError:
            continue
        done = manifest["counts"]["done"] + manifest["counts"]["failed"]
        if not done or not summary:
            continue
        summaries.append(summary)
        processed += done
        families = max(families, len(str(info.get("config", {}).get("families", "")).split(",")))
        names.append(str(store.root))
    return (summaries, processed, families, ", ".join(names)) if summaries else None


def estimate(n_images: int, families: int, prices: tuple[float, float], vlm_max_side: int, stores=()) -> dict:
    """Requests by stage, tokens and cost for ``n_images`` images still to process."""
    cal = calibration(stores)
    if cal:
        summaries, processed, cal_families, source = cal
        rates = observed_rates(summaries, processed, cal_families)
    else:
        rates, source = default_rates(vlm_max_side), "defaults (no finished run to learn from)"
    by_stage, tin, tout = {}, 0.0, 0.0
    for stage, (per_image, tok_in, tok_out) in rates.items():
        n = per_image * n_images * (families if stage in PER_FAMILY else 1)
        by_stage[stage] = round(n, 1)
        tin += n * tok_in
        tout += n * tok_out
    cost = (tin * prices[0] + tout * prices[1]) / 1e6
    return {"images": n_images, "requests": round(sum(by_stage.values())), "requests_by_stage": by_stage,
            "input_tokens": round(tin), "output_tokens": round(tout),
            "prices_usd_per_1m": {"input": prices[0], "output": prices[1]}, "cost_usd": round(cost, 4),
            "rates_from": source}


def paths_to_stores(paths: list[str] | None):
    from converseg_ros.dataengine.samples import expand_runs

    return expand_runs([Path(p) for p in paths]) if paths else []
