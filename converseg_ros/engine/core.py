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
from converseg_ros.engine.host import PinnedUpload, to_host
from converseg_ros.engine.overlap import EncoderOverlap
from converseg_ros.engine.postprocess import logits_to_image, probability_to_logit
from converseg_ros.engine.prefix import QwenPrefix, encode_prefix, run_suffixes
from converseg_ros.imaging import PREPROCESSING, SquareGeometry, as_rgb, to_square
from converseg_ros.modeling.build import ConverSegNet, build_model
from converseg_ros.modeling.presets import ModelSpec, load_preset
from converseg_ros.modeling.sam2_model import SamFeatures, to_sam_pixels
from converseg_ros.regions import Region, extract_regions

log = logging.getLogger(__name__)

DECODE_MODES = ("multimask", "first")
# SAM2's image encoder in fp32 is what the authors run; bf16 autocast is a documented speed deviation.
SAM2_PRECISIONS = ("fp32", "bf16")


@dataclass
class FrameEncoding:
    """Everything prompt-independent about one image: computed once, shared by all its queries."""

    image: np.ndarray  # H x W x 3 uint8 RGB (the pixels both branches saw)
    geometry: SquareGeometry  # where the image sits in SAM2's square input
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
    """Plain-Python inference engine (no ROS). Thread-safe: calls are serialised by a lock.

    ``overlap``: run a frame's SAM2 encoder and Qwen prefix at once (``auto``: on CUDA only, see
    :mod:`converseg_ros.engine.overlap`). ``compile_sam2``: ``torch.compile`` the SAM2 image encoder and
    mask decoder (off by default until measured on the target GPU; the first frames pay the compile time).
    """

    def __init__(
        self, net: ConverSegNet, decode_mode: str = "multimask", mask_threshold: float = 0.5,
        sam2_precision: str = "fp32", preprocess: str = "letterbox", overlap: str = "auto",
        compile_sam2: bool = False,
    ):
        if decode_mode not in DECODE_MODES:
            raise ValueError(f"decode_mode must be one of {DECODE_MODES}, got {decode_mode!r}")
        if sam2_precision not in SAM2_PRECISIONS:
            raise ValueError(f"sam2_precision must be one of {SAM2_PRECISIONS}, got {sam2_precision!r}")
        if preprocess not in PREPROCESSING:
            raise ValueError(f"preprocess must be one of {PREPROCESSING}, got {preprocess!r}")
        self.sam2_precision = sam2_precision
        self.preprocess = preprocess
        self.net = net.eval()
        self.decode_mode = decode_mode
        self.logit_threshold = probability_to_logit(mask_threshold)
        self._lock = threading.Lock()
        self._overlap = EncoderOverlap(self.device, overlap)
        self._upload = PinnedUpload()
        if compile_sam2:
            self.net.sam.image_encoder.compile(dynamic=False)
            self.net.sam.sam_mask_decoder.compile(dynamic=True)  # the token count varies per prompt

    @classmethod
    def from_preset(
        cls, preset: str | ModelSpec, device: str = "auto", precision: str = "auto",
        overrides: dict | None = None, allow_download: bool = False, max_pixels: int | None = None,
        decode_mode: str = "multimask", mask_threshold: float = 0.5, sam2_precision: str = "fp32",
        preprocess: str = "letterbox", overlap: str = "auto", compile_sam2: bool = False, attention: str = "auto",
    ) -> ConverSegEngine:
        """Build from a preset name/spec; ``overrides`` replaces preset fields (e.g. local paths).
        ``preprocess``: letterbox (the authors' demo and training) or squash (their eval.py)."""
        spec = load_preset(preset) if isinstance(preset, str) else preset
        if overrides:
            spec = spec.with_overrides(**overrides)
        net = build_model(
            spec, device, precision, allow_download=allow_download, max_pixels=max_pixels, attention=attention
        )
        return cls(net, decode_mode, mask_threshold, sam2_precision, preprocess, overlap, compile_sam2)

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
            sam_image, geometry = to_square(rgb, self.preprocess, self.net.image_size)
            (sam, sam_ms), (prefix, prefix_ms) = self._overlap.run(
                lambda: self._encode_sam(sam_image), lambda: self._encode_prefix(rgb)
            )
            sam = SamFeatures(self._overlap.adopt(sam.image_embed), [self._overlap.adopt(f) for f in sam.high_res])
            total_ms = (time.perf_counter() - start) * 1e3
        timings = {"sam_encode_ms": sam_ms, "qwen_prefix_ms": prefix_ms, "encode_ms": total_ms}
        return FrameEncoding(rgb, geometry, sam, prefix, timings)

    @torch.inference_mode()
    def encode_sam_frame(self, image: np.ndarray) -> FrameEncoding:
        """Only the SAM2 image embedding of a frame (``prefix`` None): all a tracked frame needs.
        :meth:`add_prefix` (called by :meth:`segment` when needed) completes it for language queries."""
        rgb = as_rgb(image)
        with self._lock:
            sam_image, geometry = to_square(rgb, self.preprocess, self.net.image_size)
            sam, sam_ms = self._encode_sam(sam_image)
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
    def _encode_sam(self, sam_image: np.ndarray) -> tuple[SamFeatures, float]:
        start = time.perf_counter()
        uploaded = self._upload(sam_image[None], self.device)  # [1, H, W, 3] uint8 on the device
        pixels = to_sam_pixels(uploaded, self.net.image_size, self.device)
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
        options = [(return_logits, min_region_area, max_regions)] * len(prompts)
        scores = torch.stack([d.score for d in decoded])
        outputs = self.make_outputs(prompts, full, scores, options, [per_query] * len(prompts))
        return list(zip(outputs, decoded, strict=True))

    def _decode(
        self, frame: FrameEncoding, ids: torch.Tensor, attention: torch.Tensor, hidden: torch.Tensor
    ) -> list[DecodedPrompt]:
        """Project each prompt on its own (its own token count, as batch-1 reference inference) and run
        the decoder once per group of prompts with equal token counts, sharing the frame's embedding."""
        projected = [self.net.adapter.project(hidden[i : i + 1], ids[i : i + 1], attention[i : i + 1])
                     for i in range(ids.shape[0])]
        return decode_prompts(self.net.sam, frame.sam, projected, self.decode_mode)

    def make_outputs(
        self, prompts: list[str], logits: torch.Tensor, scores: torch.Tensor,
        options: list[tuple[bool, int, int]], timings: list[dict[str, float]],
    ) -> list[SegmentationOutput]:
        """Full-resolution logits [B, H, W] and scores [B] -> masks, regions (and the logits when asked).

        Threshold and sigmoid run on the device and everything comes to the host in one copy; ``options``
        per prompt: (return_logits, min_region_area, max_regions).
        """
        on_device = [logits > self.logit_threshold, torch.sigmoid(logits), scores.float()]
        if any(return_logits for return_logits, _, _ in options):
            on_device.append(logits)
        host = to_host(*on_device)
        masks, probabilities, host_scores = host[:3]
        outputs = []
        for i, (prompt, (return_logits, min_area, max_regions)) in enumerate(zip(prompts, options, strict=True)):
            regions = extract_regions(masks[i], probabilities[i], min_area, max_regions)
            logits_np = host[3][i].astype(np.float32) if return_logits else None
            outputs.append(
                SegmentationOutput(prompt, masks[i], float(host_scores[i]), regions, logits_np, dict(timings[i]))
            )
        return outputs

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
            self._overlap.close()
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
