#!/usr/bin/env python3
"""Prove that the parity oracle bites: break the engine in one known way at a time and see which of the
parity tests (test/engine/test_parity.py, the authors' own outputs) fail.

    python scripts/mutation_check.py [--only NAME ...] [--tests PATH] [--out FILE.md]

Each mutation is applied in fresh child processes only, by patching functions in memory when Python
starts (a ``sitecustomize`` on PYTHONPATH, so the CLI subprocesses the tests start are mutated too); no
file of the checkout is changed. For each mutation (and for none, the baseline) the script measures the
share of mask pixels that differ from the authors' demo masks, runs the parity tests, and prints a
Markdown table: mutation, failed tests (per test function, with how many of its cases failed), passed
count, mask pixels changed. Needs the parity set (see test/engine/parity_set.py).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import types
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ENV = "CONVERSEG_MUTATION"
MUTATIONS = {
    "lowest-iou": "pick the multimask output with the lowest predicted IoU",
    "bgr": "BGR instead of RGB into SAM2",
    "dense-x2": "dense bias doubled",
    "align-corners": "align_corners=True when upsampling the logits",
    "no-mem-embed": "no_mem_embed left out of the image embedding",
}
SITECUSTOMIZE = f"""import os
if os.environ.get("{ENV}"):
    import mutation_check
    mutation_check.apply(os.environ["{ENV}"])
"""


def _replace(module_name: str, attr: str, new) -> None:
    """Replace ``module.attr`` and every alias of the same object in the loaded converseg_ros modules."""
    import importlib

    for name in ("converseg_ros.engine.core", "converseg_ros.engine.decoding", "converseg_ros.engine.reference",
                 "converseg_ros.modeling.build"):
        importlib.import_module(name)  # load the modules that import the names directly
    old = getattr(importlib.import_module(module_name), attr)
    for module in [m for n, m in sys.modules.items() if n.startswith("converseg_ros") and m is not None]:
        for key, value in list(vars(module).items()):
            if value is old:
                setattr(module, key, new)


def apply(name: str) -> None:
    """Apply one mutation to this process (called by the generated sitecustomize)."""
    import numpy as np
    import torch

    from converseg_ros.engine import postprocess
    from converseg_ros.modeling import sam2_model

    if name == "lowest-iou":
        original_index = sam2_model.select_index

        def select_index(iou, mode):
            if mode != "multimask":
                return original_index(iou, mode)
            return iou[:, 1:].argmin(dim=1) + 1

        _replace("converseg_ros.modeling.sam2_model", "select_index", select_index)
    elif name == "bgr":
        original_pixels = sam2_model.to_sam_pixels

        def to_sam_pixels(images, *args, **kwargs):  # a list of arrays or a uint8 tensor [B, H, W, 3]
            if isinstance(images, torch.Tensor):
                return original_pixels(images.flip(-1), *args, **kwargs)
            return original_pixels([np.ascontiguousarray(i[..., ::-1]) for i in images], *args, **kwargs)

        _replace("converseg_ros.modeling.sam2_model", "to_sam_pixels", to_sam_pixels)
    elif name == "dense-x2":
        original_decode = sam2_model.decode_all

        def decode_all(sam, features, sparse, dense):
            return original_decode(sam, features, sparse, 2 * dense)

        _replace("converseg_ros.modeling.sam2_model", "decode_all", decode_all)
    elif name == "align-corners":
        functional = postprocess.F

        def interpolate(*args, **kwargs):
            if kwargs.get("mode") == "bilinear":
                kwargs["align_corners"] = True
            return functional.interpolate(*args, **kwargs)

        postprocess.F = types.SimpleNamespace(interpolate=interpolate)
    elif name == "no-mem-embed":
        original_encode = sam2_model.encode_images

        def encode_images(sam, pixels):
            flag = sam.directly_add_no_mem_embed
            sam.directly_add_no_mem_embed = False
            try:
                return original_encode(sam, pixels)
            finally:
                sam.directly_add_no_mem_embed = flag

        _replace("converseg_ros.modeling.sam2_model", "encode_images", encode_images)
    else:
        raise ValueError(f"unknown mutation {name!r}; one of {sorted(MUTATIONS)}")


def measure() -> dict[str, float]:
    """Per demo case, the share of mask pixels differing from the authors' (this process's engine)."""
    sys.path.insert(0, str(REPO / "test" / "engine"))
    from parity_set import ParitySet, find_parity_dir
    from test_parity import run_cases

    from converseg_ros.engine import ConverSegEngine
    from converseg_ros.modeling.presets import ModelSpec

    parity = ParitySet(find_parity_dir())
    engine = ConverSegEngine.from_preset(ModelSpec(name="parity", **parity.model_files()), "cpu", "fp32")
    runs = run_cases(engine, parity, list(parity.cases))
    return {c: float((r.out.mask != parity.reference(c, "demo").mask).mean()) for c, r in runs.items()}


def _child_env(site_dir: str, mutation: str | None) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([site_dir, str(REPO / "scripts"), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env.pop(ENV, None)
    if mutation:
        env[ENV] = mutation
    return env


def _failures(junit: Path) -> tuple[Counter, int]:
    """Failed or erroring tests per test function, and the number that passed."""
    failed, passed = Counter(), 0
    for case in ET.parse(junit).iter("testcase"):
        if case.find("skipped") is not None:
            continue
        if case.find("failure") is not None or case.find("error") is not None:
            failed[case.get("name").split("[")[0]] += 1
        else:
            passed += 1
    return failed, passed


def check(mutation: str | None, tests: str, site_dir: str, work: Path) -> dict:
    """Measure and test one mutation (None = the unmutated baseline) in child processes."""
    env = _child_env(site_dir, mutation)
    measured = subprocess.run([sys.executable, __file__, "--measure"], env=env, cwd=REPO, capture_output=True,
                              text=True, check=False)
    if measured.returncode != 0:
        raise RuntimeError(f"measuring {mutation}: {measured.stderr[-3000:]}")
    changed = json.loads(measured.stdout.strip().splitlines()[-1])
    junit = work / f"{mutation or 'baseline'}.xml"
    subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", tests, f"--junitxml={junit}"],
                   env=env, cwd=REPO, capture_output=True, text=True, check=False)
    failed, passed = _failures(junit)
    return {"mutation": mutation, "changed": changed, "failed": failed, "passed": passed}


def table(results: list[dict]) -> str:
    lines = ["| mutation | parity tests failed (function × cases) | passed | mask pixels changed (min–max) |",
             "|---|---|---|---|"]
    for r in results:
        name = MUTATIONS.get(r["mutation"], "none (baseline)")
        failed = "<br>".join(f"`{f}` ×{n}" for f, n in sorted(r["failed"].items())) or "none"
        values = [100 * v for v in r["changed"].values()]
        lines.append(f"| {name} | {failed} | {r['passed']} | {min(values):.1f}–{max(values):.1f} % |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", choices=sorted(MUTATIONS), help="run only these mutations")
    parser.add_argument("--tests", default="test/engine/test_parity.py", help="pytest target (default: %(default)s)")
    parser.add_argument("--out", type=Path, help="also write the table to this Markdown file")
    parser.add_argument("--measure", action="store_true", help=argparse.SUPPRESS)  # child mode
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure()))
        return 0
    results = []
    with tempfile.TemporaryDirectory(prefix="mutation-") as tmp:
        (Path(tmp) / "sitecustomize.py").write_text(SITECUSTOMIZE)
        for mutation in [None, *(args.only or MUTATIONS)]:
            print(f"[mutation] {mutation or 'baseline'} ...", file=sys.stderr, flush=True)
            results.append(check(mutation, args.tests, tmp, Path(tmp)))
            print(table(results[-1:]).splitlines()[-1], file=sys.stderr, flush=True)
    text = table(results)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    baseline, mutants = results[0], results[1:]
    survivors = [r["mutation"] for r in mutants if not r["failed"]]
    if baseline["failed"] or survivors:
        print(f"baseline failures: {dict(baseline['failed'])}; surviving mutations: {survivors}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
