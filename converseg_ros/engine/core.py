"""ConverSegEngine: encode a frame once, answer any number of conversational queries against it."""

from __future__ import annotations

import gc
import logging
import threading
import time
from dataclasses import dataclass, field

import numpy as np
import torch

from converseg_ros.engine.decoding import DecodedPrompt, decode_prompts
from converseg_ros.engine.postprocess import logits_to_image, probability_to_logit
from converseg_ros.engine.prefix import QwenPrefix, encode_prefix, run_suffixes
from converseg_ros.imaging import LetterboxGeometry, as_rgb, letterbox
from converseg_ros.modeling.build import ConverSegNet, build_model
from converseg_ros.modeling.presets import ModelSpec, load_preset
from converseg_ros.modeling.sam2_model import SamFeatures
from converseg_ros.regions import Region, extract_regions

log = logging.getLogger(__name__)

DECODE_MODES = ("multimask", "first")
# SAM2's image encoder in fp32 is what the authors run; bf16 autocast is a documented speed deviation.
SAM2_PRECISIONS = ("fp32", "bf16")


@dataclass
class FrameEncoding:
    """Everything prompt-independent about one image: computed once, shared by all its queries."""

    image: np.ndarray  # H x W x 3 uint8 RGB (the pixels both branches saw)
    geometry: LetterboxGeometry
    sam: SamFeatures
    prefix: QwenPrefix | None  # None until a language query needs it (encode_sam_frame)
    timings: dict[str, float] = field(default_factory=dict)  # ms


@dataclass
class SegmentationOutput:
    """The answer to one query on one frame."""

    prompt: str
    mask: np.ndarray  # H x W bool
    score: float  # the decoder's predicted IoU of the chosen output
    regions: list[Region]
    logits: np.ndarray | None = None  # H x W float32 when asked for
    timings: dict[str, float] = field(default_factory=dict)  # ms


class ConverSegEngine:
    """Plain-Python inference engine (no ROS). Thread-safe: calls are serialised by a lock."""

    def __init__(
        self, net: ConverSegNet, decode_mode: str = "multimask", mask_threshold: float = 0.5,
        sam2_precision: str = "fp32",
    ):
        if decode_mode not in DECODE_MODES:
            raise ValueError(f"decode_mode must be one of {DECODE_MODES}, got {decode_mode!r}")
        if sam2_precision not in SAM2_PRECISIONS:
            raise ValueError(f"sam2_precision must be one of {SAM2_PRECISIONS}, got {sam2_precision!r}")
        self.sam2_precision = sam2_precision
        self.net = net.eval()
        self.decode_mode = decode_mode
        self.logit_threshold = probability_to_logit(mask_threshold)
        self._lock = threading.Lock()

    @classmethod
    def from_preset(
        cls, preset: str | ModelSpec, device: str = "auto", precision: str = "auto",
        overrides: dict | None = None, allow_download: bool = False, max_pixels: int | None = None,
        decode_mode: str = "multimask", mask_threshold: float = 0.5, sam2_precision: str = "fp32",
    ) -> ConverSegEngine:
        """Build from a preset name/spec; ``overrides`` replaces preset fields (e.g. local paths)."""
        spec = load_preset(preset) if isinstance(preset, str) else preset
        if overrides:
            spec = spec.with_overrides(**overrides)
        net = build_model(spec, device, precision, allow_download=allow_download, max_pixels=max_pixels)
        return cls(net, decode_mode, mask_threshold, sam2_precision)

    @property
    def spec(self) -> ModelSpec:
        return self.net.spec

    @property
    def device(self) -> torch.device:
        return next(self.net.sam.parameters()).device

    @torch.inference_mode()
    def encode_frame(self, image: np.ndarray) -> FrameEncoding:
        """SAM2 image embedding and Qwen image prefix of one RGB frame (validated; ImageError if bad)."""
        rgb = as_rgb(image)
        with self._lock:
            start = time.perf_counter()
            square, geometry = letterbox(rgb, self.net.image_size)
            sam, sam_ms = self._encode_sam(square)
            prefix, prefix_ms = self._encode_prefix(rgb)
            total_ms = (time.perf_counter() - start) * 1e3
        timings = {"sam_encode_ms": sam_ms, "qwen_prefix_ms": prefix_ms, "encode_ms": total_ms}
        return FrameEncoding(rgb, geometry, sam, prefix, timings)

    @torch.inference_mode()
    def encode_sam_frame(self, image: np.ndarray) -> FrameEncoding:
        """Only the SAM2 image embedding of a frame (``prefix`` None): all a tracked frame needs.
        :meth:`add_prefix` (called by :meth:`segment` when needed) completes it for language queries."""
        rgb = as_rgb(image)
        with self._lock:
            square, geometry = letterbox(rgb, self.net.image_size)
            sam, sam_ms = self._encode_sam(square)
        return FrameEncoding(rgb, geometry, sam, None, {"sam_encode_ms": sam_ms, "encode_ms": sam_ms})

    @torch.inference_mode()
    def add_prefix(self, frame: FrameEncoding) -> FrameEncoding:
        """Complete a SAM-only encoding with the Qwen image prefix (no-op when present); returns it."""
        with self._lock:
            if frame.prefix is None:
                frame.prefix, prefix_ms = self._encode_prefix(frame.image)
                frame.timings["qwen_prefix_ms"] = prefix_ms
                frame.timings["encode_ms"] = frame.timings.get("encode_ms", 0.0) + prefix_ms
        return frame

    @torch.inference_mode()
    def _encode_sam(self, square: np.ndarray) -> tuple[SamFeatures, float]:
        start = time.perf_counter()
        pixels = self.net.sam_transform([square])
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.sam2_precision == "bf16"):
            features = self.net.encode_images(pixels)
        features = SamFeatures(features.image_embed.float(), [f.float() for f in features.high_res])
        return features, (time.perf_counter() - start) * 1e3

    @torch.inference_mode()
    def _encode_prefix(self, rgb: np.ndarray) -> tuple[QwenPrefix, float]:
        start = time.perf_counter()
        inputs = {k: v.to(self.device) for k, v in self.net.inputs.prefix(rgb).items()}
        inputs["pixel_values"] = inputs["pixel_values"].to(self.net.adapter.txt_norm.weight.dtype)
        prefix = encode_prefix(self.net.adapter.qwen, inputs)
        return prefix, (time.perf_counter() - start) * 1e3

    @torch.inference_mode()
    def segment(
        self, frame: FrameEncoding, prompts: list[str], return_logits: bool = False, min_region_area: int = 1,
        max_regions: int = 10,
    ) -> list[SegmentationOutput]:
        """Answer ``prompts`` on an encoded frame; one batched Qwen pass over their suffixes.

        Raises QueryError for an empty or oversized prompt (before any model work).
        """
        answers = self.segment_with_state(frame, prompts, return_logits, min_region_area, max_regions)
        return [output for output, _ in answers]

    @torch.inference_mode()
    def segment_with_state(
        self, frame: FrameEncoding, prompts: list[str], return_logits: bool = False, min_region_area: int = 1,
        max_regions: int = 10,
    ) -> list[tuple[SegmentationOutput, DecodedPrompt]]:
        """:meth:`segment`, each answer paired with its language embeddings and decoder state (what
        tracking keeps, engine/tracking.py)."""
        cleaned = [self.net.inputs.clean_prompt(p) for p in prompts]
        if not cleaned:
            return []
        if frame.prefix is None:
            self.add_prefix(frame)
        with self._lock:
            start = time.perf_counter()
            suffix_ids, suffix_mask = self.net.inputs.suffixes(cleaned)
            ids, attention, hidden = run_suffixes(
                self.net.adapter.qwen, frame.prefix, suffix_ids.to(self.device), suffix_mask.to(self.device)
            )
            qwen_done = time.perf_counter()
            decoded = self._decode(frame, ids, attention, hidden)
            full = logits_to_image(torch.stack([d.logits for d in decoded]), frame.geometry)
            end = time.perf_counter()
        per_query = {"qwen_suffix_ms": (qwen_done - start) * 1e3 / len(prompts),
                     "decode_ms": (end - qwen_done) * 1e3 / len(prompts)}
        return [
            (self.make_output(prompt, full[i], float(decoded[i].score), return_logits, min_region_area,
                              max_regions, per_query), decoded[i])
            for i, prompt in enumerate(prompts)
        ]

    def _decode(
        self, frame: FrameEncoding, ids: torch.Tensor, attention: torch.Tensor, hidden: torch.Tensor
    ) -> list[DecodedPrompt]:
        """Project each prompt on its own (its own token count, as batch-1 reference inference) and run
        the decoder once per group of prompts with equal token counts, sharing the frame's embedding."""
        projected = [self.net.adapter.project(hidden[i : i + 1], ids[i : i + 1], attention[i : i + 1])
                     for i in range(ids.shape[0])]
        return decode_prompts(self.net.sam, frame.sam, projected, self.decode_mode)

    def make_output(
        self, prompt: str, logits: torch.Tensor, score: float, return_logits: bool, min_area: int,
        max_regions: int, timings: dict[str, float],
    ) -> SegmentationOutput:
        """Full-resolution logits [H, W] -> thresholded mask, regions (and the logits when asked)."""
        mask = (logits > self.logit_threshold).cpu().numpy()
        probability = torch.sigmoid(logits).cpu().numpy()
        regions = extract_regions(mask, probability, min_area, max_regions)
        logits_np = logits.cpu().numpy().astype(np.float32) if return_logits else None
        return SegmentationOutput(prompt, mask, score, regions, logits_np, dict(timings))

    def segment_image(self, image: np.ndarray, prompts: list[str], **kwargs) -> list[SegmentationOutput]:
        """Encode ``image`` and answer ``prompts`` on it."""
        return self.segment(self.encode_frame(image), prompts, **kwargs)

    def warmup(self, size: tuple[int, int] = (480, 640)) -> float:
        """One inference on a synthetic frame of ``size`` (height, width) — use the camera's size so the
        first real frame finds its allocations and kernels ready; returns its duration in ms."""
        start = time.perf_counter()
        height, width = size
        ramp = np.linspace(0, 255, height * width * 3, dtype=np.float32).reshape(height, width, 3)
        self.segment_image(ramp.astype(np.uint8), ["warm up"])
        return (time.perf_counter() - start) * 1e3

    def close(self) -> None:
        """Release the model and its device memory."""
        with self._lock:
            self.net = None
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
