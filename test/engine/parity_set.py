"""The authors' parity set (``../shared/parity``, see its README): where it is, its two large SAM2 files
regenerated into a cache of this checkout, its cases and their reference outputs.

The set lives in a ``shared/parity`` folder next to the checkout or next to one of its parent folders
(CI: /work/main and /work/shared) or where ``CONVERSEG_PARITY_DIR`` points. It is read-only: the SAM2 files
its ``regen_sam2.py`` recreates go to ``CONVERSEG_PARITY_CACHE`` (default ``build/parity``) and are reused
while the content hashes they were verified against are still the manifest's.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[2]
DIR_ENV = "CONVERSEG_PARITY_DIR"
CACHE_ENV = "CONVERSEG_PARITY_CACHE"
PATHS = ("demo", "eval")  # demo.py: letterbox; eval.py: squash
PREPROCESS = {"demo": "letterbox", "eval": "squash"}
REGENERATED = ("sam2_base", "sam2_checkpoint")
STAMP = "verified.json"


def find_parity_dir() -> Path | None:
    """The parity folder, or None when there is none (``CONVERSEG_PARITY_DIR`` must exist if set)."""
    if os.environ.get(DIR_ENV):
        path = Path(os.environ[DIR_ENV])
        if not (path / "cases.json").is_file():
            raise FileNotFoundError(f"{DIR_ENV}={path}: no cases.json there")
        return path
    for parent in REPO.parents:
        candidate = parent / "shared" / "parity"
        if (candidate / "cases.json").is_file():
            return candidate
    return None


@dataclass
class Reference:
    """The authors' outputs for one case on one path."""

    logits: np.ndarray  # H x W float32
    mask: np.ndarray  # H x W bool
    lowres: dict[str, np.ndarray]  # low_res_logits [3,256,256], iou_pred [3], best_index, *_mask0
    embeddings: dict[str, np.ndarray]  # sparse [N,256], dense_vector [256], input_ids [T]


class ParitySet:
    """One parity folder and the cache its SAM2 files are regenerated into."""

    def __init__(self, root: Path, cache: Path | None = None):
        self.root = root
        self.cache = Path(cache or os.environ.get(CACHE_ENV) or REPO / "build" / "parity")
        self.manifest = json.loads((root / "cases.json").read_text())
        self.cases = {case["id"]: case for case in self.manifest["cases"]}

    def model_files(self) -> dict[str, str]:
        """ModelSpec fields for the set's checkpoints (SAM2 files regenerated if needed)."""
        art = self.manifest["artifacts"]
        self.ensure_sam2_files()
        return {
            "vlm": str(self.root / art["qwen_dir"]),
            "sam2_config": art["sam2_config"],
            "sam2_base": str(self.cache / art["sam2_base"]),
            "sam2_checkpoint": str(self.cache / art["sam2_checkpoint"]),
            "plm_checkpoint": str(self.root / art["plm_checkpoint"]),
            "lora": str(self.root / art["lora_dir"]),
        }

    def _stamp(self) -> dict:
        """What a verified cache must hold: the manifest's hashes and each file's size and mtime."""
        art = self.manifest["artifacts"]
        stamp = {"sha256_state_dict": {k: self.manifest["sha256_state_dict"][k] for k in REGENERATED}}
        for key in REGENERATED:
            path = self.cache / art[key]
            if path.is_file():
                stat = path.stat()
                stamp[key] = [stat.st_size, stat.st_mtime_ns]
        return stamp

    def ensure_sam2_files(self) -> None:
        """Run the set's ``regen_sam2.py`` into the cache unless files verified against the same hashes
        are there; the script checks the hashes and exits non-zero on any difference."""
        stamp_path = self.cache / STAMP
        if stamp_path.is_file() and json.loads(stamp_path.read_text()) == self._stamp():
            return
        self.cache.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=self.cache, prefix="regen-") as tmp:
            proc = subprocess.run(
                [sys.executable, str(self.root / "regen_sam2.py"), str(self.root), tmp],
                capture_output=True, text=True, timeout=600,
            )
            if proc.returncode != 0:
                raise RuntimeError(f"regen_sam2.py failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
            for key in REGENERATED:
                relative = self.manifest["artifacts"][key]
                (self.cache / relative).parent.mkdir(parents=True, exist_ok=True)
                os.replace(Path(tmp) / relative, self.cache / relative)
        with tempfile.NamedTemporaryFile("w", dir=self.cache, delete=False, suffix=".tmp") as handle:
            json.dump(self._stamp(), handle)
        os.replace(handle.name, stamp_path)

    def image(self, case_id: str) -> np.ndarray:
        """The case's photo as H x W x 3 uint8 RGB."""
        from converseg_ros.imaging import decode_image

        return decode_image(self.root / self.cases[case_id]["image"])

    def reference(self, case_id: str, path: str) -> Reference:
        files = {k: self.root / v for k, v in self.cases[case_id][path]["files"].items()}
        mask = cv2.imread(str(files["mask"]), cv2.IMREAD_UNCHANGED)
        return Reference(
            np.load(files["logits"]), mask > 127, dict(np.load(files["lowres"])), dict(np.load(files["embeddings"]))
        )

    @cached_property
    def images(self) -> dict[str, list[str]]:
        """Image file -> the ids of its cases, in manifest order."""
        grouped: dict[str, list[str]] = {}
        for case_id, case in self.cases.items():
            grouped.setdefault(case["image"], []).append(case_id)
        return grouped


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return 1.0 if union == 0 else float(np.logical_and(a, b).sum() / union)
