"""``converseg-segment``: segment images with conversational prompts from the command line.

Each image is encoded once and every prompt is answered against that encoding. Per image and prompt it
writes ``<stem>__<prompt>_mask.png`` (0/255), ``_overlay.png``, ``_regions.json`` and, with
``--save-logits``, ``_logits.npy`` (full-resolution float32). Without ``--image``/``--prompt`` it asks
for them interactively.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import re
import sys
from pathlib import Path

import cv2
import numpy as np

from converseg_ros.cli.model_args import add_model_arguments, engine_from_args
from converseg_ros.engine import SegmentationOutput
from converseg_ros.errors import ConverSegError
from converseg_ros.imaging import decode_image
from converseg_ros.modeling.atomic import atomic_path, atomic_write_bytes, sweep_stale
from converseg_ros.visualization import draw_overlay

UNTRAINED_BANNER = "UNTRAINED model ({name}): random weights, the masks carry no meaning"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="converseg-segment", description=__doc__.splitlines()[0])
    parser.add_argument("--image", action="append", default=[], help="image file (repeatable)")
    parser.add_argument("--prompt", action="append", default=[], help="conversational prompt (repeatable)")
    parser.add_argument(
        "--out", type=Path, default=Path("converseg_out"), help="output folder (default: ./converseg_out)"
    )
    add_model_arguments(parser, allow_download=True)
    parser.add_argument("--min-region-area", type=int, default=1, help="drop regions smaller than this (pixels)")
    parser.add_argument("--max-regions", type=int, default=10, help="keep at most this many regions")
    parser.add_argument("--save-logits", action="store_true", help="also write full-resolution float32 logits")
    parser.add_argument("-v", "--verbose", action="store_true")
    return parser


def slug(prompt: str) -> str:
    """File-name-safe, unique-per-prompt tag."""
    words = re.sub(r"[^a-z0-9]+", "-", prompt.lower()).strip("-")[:40] or "prompt"
    return f"{words}-{hashlib.sha256(prompt.encode()).hexdigest()[:6]}"


def write_outputs(
    out_dir: Path, stem: str, image: np.ndarray, result: SegmentationOutput, title: str, meta: dict
) -> Path:
    """Write mask, overlay, regions (and logits) for one prompt; returns the mask path."""
    base = out_dir / f"{stem}__{slug(result.prompt)}"
    mask = np.where(result.mask, 255, 0).astype(np.uint8)
    overlay = draw_overlay(image, result.mask, result.regions, title)
    for suffix, picture in (("_mask.png", mask), ("_overlay.png", cv2.cvtColor(overlay, cv2.COLOR_RGB2BGR))):
        ok, encoded = cv2.imencode(".png", picture)
        if not ok:
            raise OSError(f"PNG encoding failed for {base}{suffix}")
        atomic_write_bytes(Path(f"{base}{suffix}"), encoded.tobytes())
    regions = [
        {"index": r.index, "bbox": list(r.bbox), "centroid": list(r.centroid), "area": r.area,
         "score": r.score, "contour": r.contour.tolist()}
        for r in result.regions
    ]
    record = {**meta, "prompt": result.prompt, "score": result.score, "mask_area": int(result.mask.sum()),
              "regions": regions, "timings_ms": result.timings}
    atomic_write_bytes(Path(f"{base}_regions.json"), json.dumps(record, indent=2).encode())
    if result.logits is not None:
        with atomic_path(Path(f"{base}_logits.npy")) as tmp, open(tmp, "wb") as handle:
            np.save(handle, result.logits.astype(np.float32))
    return Path(f"{base}_mask.png")


class SegmentCommand:
    """Loads the engine once, then segments image/prompt pairs."""

    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.engine = engine_from_args(args)
        spec = self.engine.spec
        self.banner = "" if spec.trained else UNTRAINED_BANNER.format(name=spec.name)
        if self.banner:
            print(f"*** {self.banner} ***", file=sys.stderr)
        args.out.mkdir(parents=True, exist_ok=True)
        sweep_stale(args.out)  # temporaries of a run that was killed (a live one's are left alone)

    def run(self, image_path: str, prompts: list[str]) -> list[Path]:
        image = decode_image(image_path)
        frame = self.engine.encode_frame(image)
        results = self.engine.segment(
            frame, prompts, return_logits=self.args.save_logits, min_region_area=self.args.min_region_area,
            max_regions=self.args.max_regions,
        )
        meta = {"image": str(image_path), "preset": self.engine.spec.name, "trained": self.engine.spec.trained,
                "frame_timings_ms": frame.timings}
        written = []
        for result in results:
            title = " | ".join(t for t in (self.banner, result.prompt) if t)
            written.append(write_outputs(self.args.out, Path(image_path).stem, image, result, title, meta))
            print(f"{image_path}: {result.prompt!r}: {int(result.mask.sum())} px, {len(result.regions)} region(s),"
                  f" score {result.score:.3f} -> {written[-1]}")
        return written


def interactive(command: SegmentCommand) -> int:
    """Ask for an image path and prompts until quit/q/exit or end of input."""
    while True:
        try:
            image = input("Image path (q to quit): ").strip()
            if image.lower() in {"q", "quit", "exit"}:
                return 0
            prompt = input("Text prompt: ").strip()
        except EOFError:
            return 0
        try:
            command.run(image, [prompt])
        except ConverSegError as err:
            print(f"error: {err}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING)
    if bool(args.image) != bool(args.prompt):
        print("error: give both --image and --prompt, or neither for interactive mode", file=sys.stderr)
        return 2
    try:
        command = SegmentCommand(args)
        if not args.image:
            return interactive(command)
        for image in args.image:
            command.run(image, args.prompt)
    except (ConverSegError, OSError, RuntimeError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
