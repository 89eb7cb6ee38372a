"""The engine against the authors' own outputs: their unchanged code on official-format tiny checkpoints
(``../shared/parity``, see its README) is the oracle, not a re-implementation sharing our helpers.

Per case and per path (``demo`` = letterbox, ``eval`` = squash to the square), the engine built from the
set's explicit files (cpu, fp32) must give the authors' Qwen token ids, prompt embeddings, decoder outputs,
chosen output and full-resolution logits/mask, each checked by its own test so that a failure says where
the two diverged. The CLIs run once end to end on the same files.
"""

from __future__ import annotations

import json
import subprocess
import sys
from contextlib import contextmanager
from dataclasses import dataclass

import cv2
import numpy as np
import pytest
import torch
from parity_set import PATHS, PREPROCESS, ParitySet, find_parity_dir, mask_iou

from converseg_ros.engine import ConverSegEngine, SegmentationOutput, decoding
from converseg_ros.modeling.presets import ModelSpec

PARITY_DIR = find_parity_dir()
CASE_IDS = list(ParitySet(PARITY_DIR).cases) if PARITY_DIR else []
pytestmark = pytest.mark.skipif(
    PARITY_DIR is None, reason="the authors' parity set is absent: no shared/parity next to this checkout or "
    "its parent folders, and CONVERSEG_PARITY_DIR is unset",
)

# The README's parity criteria; a faithful fp32 implementation is at ~1e-5 (measured: <= 1.7e-5).
MIN_MASK_IOU = 0.99
MAX_LOGIT_ERROR = 1e-3
# Intermediate tensors (measured: a few 1e-6); loose enough for other BLAS builds, far below any bug.
EMBEDDING_ATOL = 1e-4
LOWRES_ATOL = 1e-3
IOU_ATOL = 1e-4


@dataclass
class Run:
    """What the engine produced for one case, with what it handed the projection and the decoder."""

    out: SegmentationOutput
    input_ids: np.ndarray  # [T] attended token ids
    sparse: np.ndarray  # [N, 256]
    dense: np.ndarray  # [256]
    masks: np.ndarray  # [4, 256, 256] all decoder outputs (0 = single-mask token)
    iou: np.ndarray  # [4]


@contextmanager
def recorded(net):
    """Record the inputs of the adapter's projection and the decoder's outputs (both still run)."""
    seen: dict[str, np.ndarray] = {}
    project, decode_all = net.adapter.project, decoding.decode_all

    def project_probe(hidden, ids, attention):
        seen["input_ids"] = ids[0][attention[0].bool()].cpu().numpy()
        return project(hidden, ids, attention)

    def decode_probe(sam, features, sparse, dense):
        masks, iou, tokens, object_scores = decode_all(sam, features, sparse, dense)
        seen.update(sparse=sparse[0].float().cpu().numpy(), dense=dense[0].float().cpu().numpy(),
                    masks=masks[0].float().cpu().numpy(), iou=iou[0].float().cpu().numpy())
        return masks, iou, tokens, object_scores

    net.adapter.project, decoding.decode_all = project_probe, decode_probe
    try:
        yield seen
    finally:
        del net.adapter.project
        decoding.decode_all = decode_all


def run_cases(engine: ConverSegEngine, parity: ParitySet, case_ids: list[str]) -> dict[str, Run]:
    """Each image encoded once; its prompts answered one at a time (one recording each)."""
    runs = {}
    for ids in parity.images.values():
        wanted = [i for i in ids if i in case_ids]
        if not wanted:
            continue
        frame = engine.encode_frame(parity.image(wanted[0]))
        for case_id in wanted:
            with recorded(engine.net) as seen:
                out = engine.segment(frame, [parity.cases[case_id]["prompt"]], return_logits=True)[0]
            runs[case_id] = Run(out, **seen)
    return runs


@pytest.fixture(scope="module")
def parity() -> ParitySet:
    return ParitySet(PARITY_DIR)


@pytest.fixture(scope="module")
def parity_spec(parity) -> ModelSpec:
    return ModelSpec(name="parity", **parity.model_files())


@pytest.fixture(scope="module")
def parity_engine(parity_spec) -> ConverSegEngine:
    return ConverSegEngine.from_preset(parity_spec, device="cpu", precision="fp32")


@pytest.fixture(scope="module")
def runs(parity_engine, parity) -> dict[str, dict[str, Run]]:
    """path -> case id -> Run, computed once for the module."""
    result = {}
    for path in PATHS:
        engine = ConverSegEngine(parity_engine.net, preprocess=PREPROCESS[path])
        result[path] = run_cases(engine, parity, CASE_IDS)
    return result


cases = pytest.mark.parametrize("case_id", CASE_IDS)
paths = pytest.mark.parametrize("path", PATHS)


@paths
@cases
def test_qwen_sees_the_authors_token_ids(runs, parity, path, case_id):
    expected = parity.reference(case_id, path).embeddings["input_ids"]
    np.testing.assert_array_equal(runs[path][case_id].input_ids, expected)


@paths
@cases
def test_prompt_embeddings_match_the_authors(runs, parity, path, case_id):
    expected = parity.reference(case_id, path).embeddings
    run = runs[path][case_id]
    assert run.sparse.shape == expected["sparse"].shape
    np.testing.assert_allclose(run.sparse, expected["sparse"], atol=EMBEDDING_ATOL, rtol=0, err_msg="sparse")
    np.testing.assert_allclose(run.dense, expected["dense_vector"], atol=EMBEDDING_ATOL, rtol=0, err_msg="dense")


@paths
@cases
def test_decoder_outputs_match_the_authors(runs, parity, path, case_id):
    lowres = parity.reference(case_id, path).lowres
    run = runs[path][case_id]
    np.testing.assert_allclose(run.iou[1:], lowres["iou_pred"], atol=IOU_ATOL, rtol=0, err_msg="multimask IoUs")
    np.testing.assert_allclose(run.iou[:1], lowres["iou_pred_mask0"], atol=IOU_ATOL, rtol=0, err_msg="output 0 IoU")
    np.testing.assert_allclose(run.masks[1:], lowres["low_res_logits"], atol=LOWRES_ATOL, rtol=0,
                               err_msg="multimask low-res logits")
    np.testing.assert_allclose(run.masks[0], lowres["low_res_logits_mask0"], atol=LOWRES_ATOL, rtol=0,
                               err_msg="output 0 low-res logits")


@paths
@cases
def test_the_engine_answers_with_the_authors_chosen_output(runs, parity, path, case_id):
    lowres = parity.reference(case_id, path).lowres
    best = int(lowres["best_index"])
    assert runs[path][case_id].out.score == pytest.approx(float(lowres["iou_pred"][best]), abs=IOU_ATOL), (
        f"the authors chose multimask output {best} (predicted IoUs {lowres['iou_pred']})"
    )


@paths
@cases
def test_mask_and_logits_match_the_authors(runs, parity, path, case_id):
    reference = parity.reference(case_id, path)
    out = runs[path][case_id].out
    assert out.logits.shape == reference.logits.shape
    error = float(np.abs(out.logits - reference.logits).max())
    iou = mask_iou(out.mask, reference.mask)
    assert iou >= MIN_MASK_IOU and error <= MAX_LOGIT_ERROR, f"mask IoU {iou:.4f}, max |dlogit| {error:.2e}"


def test_the_two_paths_really_differ(runs, parity):
    """On non-square photos the squash answers fail the letterbox references by far (and vice versa)."""
    elongated = [c for c in CASE_IDS if len(set(parity.cases[c]["image_hw"])) == 2]
    assert elongated
    for case_id in elongated:
        for ours, theirs in (("eval", "demo"), ("demo", "eval")):
            iou = mask_iou(runs[ours][case_id].out.mask, parity.reference(case_id, theirs).mask)
            assert iou < 0.9, (case_id, ours, theirs, iou)


def _model_args(parity: ParitySet) -> list[str]:
    """The set's files as the CLIs' explicit model options (--vlm, --sam2-config, ...), cpu, fp32."""
    files = parity.model_files()
    return [a for name, value in files.items() for a in (f"--{name.replace('_', '-')}", value)] + [
        "--device", "cpu", "--precision", "fp32", "--offline"]


def test_segment_cli_end_to_end_reproduces_the_authors_demo(parity, tmp_path):
    case_id = "coffee__the_cup"
    case = parity.cases[case_id]
    cmd = [sys.executable, "-m", "converseg_ros.cli.segment", *_model_args(parity), "--image",
           str(parity.root / case["image"]), "--prompt", case["prompt"], "--out", str(tmp_path), "--save-logits"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    (mask_path,) = tmp_path.glob("*_mask.png")
    (logits_path,) = tmp_path.glob("*_logits.npy")
    reference = parity.reference(case_id, "demo")
    mask = cv2.imread(str(mask_path), cv2.IMREAD_UNCHANGED) == 255
    error = float(np.abs(np.load(logits_path) - reference.logits).max())
    assert mask_iou(mask, reference.mask) >= MIN_MASK_IOU and error <= MAX_LOGIT_ERROR, error


def test_eval_cli_squash_option_scores_the_authors_eval_masks(parity, tmp_path):
    """converseg-eval --preprocess squash, with the authors' eval.py masks as ground truth, scores ~1."""
    from converseg_ros.evaluation.cli import main

    image = "images/coffee.png"
    items = [
        {"id": c, "image": str(parity.root / image), "prompt": parity.cases[c]["prompt"],
         "mask": str(parity.root / parity.cases[c]["eval"]["files"]["mask"])}
        for c in parity.images[image]
    ]
    (tmp_path / "items.json").write_text(json.dumps({"dataset": "parity", "count": len(items), "items": items}))
    code = main([*_model_args(parity), "--preprocess", "squash", "--items", str(tmp_path / "items.json"),
                 "--out", str(tmp_path / "report")])
    assert code == 0
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    (split,) = report["giou"]
    assert report["model"]["preprocess"] == "squash" and report["count"][split]["all"] == len(items)
    assert report["giou"][split]["all"] >= MIN_MASK_IOU, report["giou"]


# bf16 Qwen + adapter (SAM2 stays fp32) against the authors' fp32 outputs. Measured on CPU: mask IoU
# 0.991-0.998, max |dlogit| 0.038-0.054 on the six cases; the README reports IoU 0.93-0.98 for the authors'
# own bf16 on these random weights, so parity is an fp32 check and bf16 gets this stated tolerance.
BF16_MIN_MASK_IOU = 0.95
BF16_MAX_LOGIT_ERROR = 0.25


def _assert_bf16_close(engine: ConverSegEngine, parity: ParitySet, case_ids: list[str], fp32_runs: dict) -> None:
    for case_id, run in run_cases(engine, parity, case_ids).items():
        reference = parity.reference(case_id, "demo")
        error = float(np.abs(run.out.logits - reference.logits).max())
        iou = mask_iou(run.out.mask, reference.mask)
        assert iou >= BF16_MIN_MASK_IOU and error <= BF16_MAX_LOGIT_ERROR, (case_id, iou, error)
        assert not np.allclose(run.out.logits, fp32_runs[case_id].out.logits, atol=1e-3)  # really ran in bf16


def test_bf16_engine_stays_close_to_the_authors_fp32(parity_spec, parity, runs):
    engine = ConverSegEngine.from_preset(parity_spec, device="cpu", precision="bf16")
    assert engine.net.adapter.txt_norm.weight.dtype == torch.bfloat16
    _assert_bf16_close(engine, parity, parity.images["images/coffee.png"], runs["demo"])


@pytest.mark.cuda
def test_cuda_fp32_reproduces_the_authors(parity_spec, parity):
    """The parity criteria on the GPU, TF32 off (true fp32 convolutions and matmuls)."""
    engine = ConverSegEngine.from_preset(parity_spec, device="cuda", precision="fp32")
    tf32 = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        gpu_runs = run_cases(engine, parity, CASE_IDS)
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = tf32
    for case_id, run in gpu_runs.items():
        reference = parity.reference(case_id, "demo")
        error = float(np.abs(run.out.logits - reference.logits).max())
        iou = mask_iou(run.out.mask, reference.mask)
        assert iou >= MIN_MASK_IOU and error <= MAX_LOGIT_ERROR, (case_id, iou, error)


@pytest.mark.cuda
def test_cuda_default_bf16_stays_close_to_the_authors_fp32(parity_spec, parity, runs):
    engine = ConverSegEngine.from_preset(parity_spec, device="cuda")  # auto precision: bf16 on CUDA
    assert engine.net.adapter.txt_norm.weight.dtype == torch.bfloat16
    _assert_bf16_close(engine, parity, CASE_IDS, runs["demo"])
