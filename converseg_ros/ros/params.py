"""Node parameters: declared once here with descriptions (the single source of defaults), read into a
plain dataclass, validated with messages that name the parameter at fault."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, fields
from typing import Any

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor

POLICIES = ("latest", "next")
RELIABILITIES = ("auto", "best_effort", "reliable", "system_default")
CV_BRIDGE_POLICIES = ("auto", "never", "always")
DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
SAM2_PRECISIONS = ("fp32", "bf16")
OVERLAP_MODES = ("auto", "on", "off")  # engine/overlap.py
ATTENTIONS = ("auto", "sdpa", "flash_attention_2", "eager")  # modeling/build.py
CAMERA_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*")  # one ROS name token: it becomes a topic namespace


@dataclass
class NodeConfig:
    """Every parameter of converseg_node with its default and meaning (docs/ros.md mirrors this table)."""

    preset: str = "converseg-3b"  # model preset name (models/*.yaml) or a preset YAML path
    model_overrides: str = ""  # JSON object of ModelSpec fields, e.g. {"plm_checkpoint": "/data/plm.torch"}
    allow_download: bool = False  # fetch missing weights from the hub at configure (offline robots: false)
    device: str = "auto"  # auto (cuda when available, else cpu), cpu, cuda, cuda:N
    precision: str = "auto"  # auto (bf16 on cuda, fp32 on cpu), fp32, bf16, fp16
    sam2_precision: str = "fp32"  # SAM2 image encoder: fp32 (the authors') or bf16 autocast (faster, a deviation)
    overlap: str = "auto"  # SAM2 encoder and Qwen prefix of a frame at once: auto (CUDA only), on, off
    attention: str = "auto"  # Qwen attention kernels: auto (flash-attention 2 on CUDA if installed, else sdpa)
    compile_sam2: bool = False  # torch.compile the SAM2 image encoder and mask decoder (slow first frames)
    warmup: bool = True  # one synthetic inference at activation
    autostart: bool = True  # configure + activate at start-up
    cameras: tuple[str, ...] = ("",)  # camera names (topics <name>/image, <name>/result, ...); "" = one unnamed
    query: str = ""  # initial continuous query ("" = none); later ones come on query/query_text
    frame_policy: str = "latest"  # default for once-queries and the service: latest cached frame or next one
    max_image_age_s: float = 1.0  # frames older than this (header stamp vs node clock) are rejected; 0 = off
    max_rate_hz: float = 0.0  # cap on continuous inference rate (per camera); 0 = as fast as the model goes
    pre_encode_hz: float = 0.0  # while no query is due, encode each camera's newest frame at most this often; 0 = off
    track_reground_every: int = 30  # tracked queries: ground again after this many frames; 0 = never by count
    track_min_iou: float = 0.5  # tracked queries: ground again when the predicted IoU is at or below this
    track_min_object_score: float = 0.0  # tracked queries: ground again at or below this object-score logit
    max_tracks: int = 8  # tracked queries per camera; more are refused
    service_timeout_s: float = 60.0  # default wait of the segment service (frame + model)
    frame_timeout_s: float = 5.0  # once-queries (and calls with timeout_s 0) waiting longer for a frame fail
    min_region_area_px: int = 64  # regions smaller than this are dropped
    max_regions: int = 10  # regions per result, highest score first
    max_query_chars: int = 500  # longer queries are refused
    max_image_pixels: int = 4096 * 4096  # larger images are refused (width * height)
    contour_max_points: int = 64  # contour points per region (evenly subsampled); 0 = no contours
    use_compressed: bool = False  # subscribe sensor_msgs/CompressedImage on image/compressed instead of image
    image_reliability: str = "auto"  # QoS reliability of the camera inputs; auto = what the publishers offer
    image_depth: int = 1  # QoS history depth of the image subscription (1 = latest frame only)
    use_depth: bool = False  # subscribe depth + camera_info: 3D region positions and markers
    depth_scale: float = 0.001  # metres per unit of 16UC1/mono16 depth (32FC1 is metres already)
    max_depth_skew_s: float = 0.5  # depth frames further than this from the colour stamp are not used
    publish_overlay: bool = True  # overlay image (drawn only while someone subscribes)
    overlay_alpha: float = 0.5  # mask tint opacity in the overlay
    publish_detections: bool = True  # vision_msgs/Detection2DArray on detections, when vision_msgs imports
    publish_region_masks: bool = True  # cropped per-region masks inside results (bandwidth)
    frame_id_override: str = ""  # use this frame_id on outputs when the camera's is empty
    use_cv_bridge: str = "auto"  # auto: only for encodings the own codec lacks; never; always
    diagnostics_period_s: float = 1.0  # diagnostics publication period; 0 = off
    log_throttle_s: float = 5.0  # minimum seconds between repeated per-frame warnings

    def overrides(self) -> dict[str, Any]:
        """``model_overrides`` parsed (raises ValueError with the parameter name)."""
        if not self.model_overrides.strip():
            return {}
        try:
            value = json.loads(self.model_overrides)
        except json.JSONDecodeError as err:
            raise ValueError(f"model_overrides is not valid JSON: {err}") from err
        if not isinstance(value, dict):
            raise ValueError("model_overrides must be a JSON object")
        return value


DESCRIPTIONS: dict[str, str] = {
    "preset": "Model preset name (models/*.yaml: converseg-3b, tiny, ...) or a preset YAML path.",
    "model_overrides": 'JSON object of model fields, e.g. {"plm_checkpoint": "/data/plm.torch"}.',
    "allow_download": "Allow fetching missing weights from the hub during configure.",
    "device": "auto (cuda when available, else cpu), cpu, cuda or cuda:N.",
    "precision": "auto (bf16 on cuda, fp32 on cpu), fp32, bf16 or fp16.",
    "sam2_precision": "SAM2 image encoder precision: fp32 (as the authors) or bf16 autocast (faster; a deviation).",
    "overlap": "Run a frame's SAM2 encoder and Qwen prefix at once: auto (on CUDA only), on or off.",
    "attention": "Qwen attention kernels: auto (flash_attention_2 on CUDA when installed, else sdpa), sdpa, ...",
    "compile_sam2": "torch.compile the SAM2 image encoder and mask decoder (the first frames pay the compile).",
    "warmup": "Run one synthetic inference at activation.",
    "autostart": "Configure and activate at start-up.",
    "cameras": (
        "Camera names; each reads <name>/image and publishes <name>/result, <name>/mask, ... and one model "
        "serves them all. The default [''] is one unnamed camera with the plain topic names."
    ),
    "query": "Initial continuous query; empty for none.",
    "frame_policy": "Frame for once-queries and the service: latest (cached, if fresh) or next (after it).",
    "max_image_age_s": "Reject frames older than this (header stamp vs node clock); 0 disables.",
    "pre_encode_hz": (
        "While no query is due, keep each camera's newest frame encoded, at most this often (Hz): a new "
        "'latest' query is then answered at cached-query cost on a frame at most max_image_age_s old. 0 = off."
    ),
    "max_rate_hz": "Cap on the continuous inference rate of each camera (continuous and tracked); 0 = unlimited.",
    "track_reground_every": "Tracked queries: ground again with the full model after this many frames; 0 = never.",
    "track_min_iou": "Tracked queries: ground again when the mask's predicted IoU is at or below this (0..1).",
    "track_min_object_score": (
        "Tracked queries: ground again when SAM2's object-score logit is at or below this (0 = SAM2's presence test)."
    ),
    "max_tracks": "Tracked queries per camera; more are refused.",
    "service_timeout_s": "Default timeout of the segment service.",
    "frame_timeout_s": (
        "Once-queries and segment calls without timeout_s that wait longer than this for a camera frame fail "
        "with 'no camera frame received on <topic> for N s'."
    ),
    "min_region_area_px": "Drop regions smaller than this many pixels.",
    "max_regions": "Maximum regions per result.",
    "max_query_chars": "Refuse longer queries.",
    "max_image_pixels": "Refuse images with more pixels than this.",
    "contour_max_points": "Maximum contour points per region; 0 disables contours.",
    "use_compressed": "Subscribe sensor_msgs/CompressedImage on image/compressed.",
    "image_reliability": (
        "Reliability of the image, depth and camera_info subscriptions: auto (match the publishers, "
        "re-checked when they change), best_effort, reliable or system_default."
    ),
    "image_depth": "Image subscription history depth.",
    "use_depth": "Subscribe depth and camera_info for 3D region positions and markers.",
    "depth_scale": "Metres per unit of integer depth images.",
    "max_depth_skew_s": "Use a depth frame only if its stamp is this close to the colour frame's.",
    "publish_overlay": "Publish the overlay image (rendered only while subscribed).",
    "overlay_alpha": "Opacity of the mask tint in the overlay.",
    "publish_detections": "Publish vision_msgs/Detection2DArray when vision_msgs is importable.",
    "publish_region_masks": "Include cropped region masks in results.",
    "frame_id_override": "frame_id for outputs when the camera's header has none.",
    "use_cv_bridge": "auto (only for encodings the own codec lacks), never or always.",
    "diagnostics_period_s": "Diagnostics period in seconds; 0 disables.",
    "log_throttle_s": "Minimum seconds between repeated per-frame warnings.",
}
CHOICES: dict[str, tuple[str, ...]] = {
    "frame_policy": POLICIES,
    "image_reliability": RELIABILITIES,
    "use_cv_bridge": CV_BRIDGE_POLICIES,
    "precision": PRECISIONS,
    "sam2_precision": SAM2_PRECISIONS,
    "overlap": OVERLAP_MODES,
    "attention": ATTENTIONS,
}
RUNTIME_SETTABLE = (
    "query",
    "max_image_age_s",
    "max_rate_hz",
    "pre_encode_hz",
    "overlay_alpha",
    "frame_policy",
    "frame_timeout_s",
    "track_reground_every",
    "track_min_iou",
    "track_min_object_score",
)
# Numeric ranges other than the default [0, 1e6] (floats) / [0, 2^31 - 1] (integers).
RANGES: dict[str, tuple[float, float]] = {
    "overlay_alpha": (0.0, 1.0),
    "track_min_iou": (0.0, 1.0),
    "track_min_object_score": (-1.0e6, 1.0e6),
}


def descriptor(name: str, default: Any) -> ParameterDescriptor:
    """ParameterDescriptor with description, allowed values and numeric ranges."""
    text = DESCRIPTIONS[name]
    if name in CHOICES:
        text += f" One of: {', '.join(CHOICES[name])}."
    desc = ParameterDescriptor(description=text, read_only=name not in RUNTIME_SETTABLE)
    if isinstance(default, float):
        lower, upper = RANGES.get(name, (0.0, 1.0e6))
        desc.floating_point_range = [FloatingPointRange(from_value=lower, to_value=upper)]
    elif isinstance(default, int) and not isinstance(default, bool):
        desc.integer_range = [IntegerRange(from_value=0, to_value=2**31 - 1)]
    return desc


def declare(node: Any) -> None:
    """Declare every parameter on ``node`` with its default and descriptor."""
    for f in fields(NodeConfig):
        node.declare_parameter(f.name, f.default, descriptor(f.name, f.default))


def read(node: Any) -> NodeConfig:
    """Current parameter values as a NodeConfig."""
    values = {f.name: node.get_parameter(f.name).value for f in fields(NodeConfig)}
    values["cameras"] = tuple(values["cameras"])
    return NodeConfig(**values)


def camera_names(cfg: NodeConfig) -> list[str]:
    """The camera names of ``cfg`` ([""]: one unnamed camera)."""
    return list(cfg.cameras) or [""]


def validate(cfg: NodeConfig) -> list[str]:
    """Problems with ``cfg`` (empty when valid); model files are checked separately."""
    problems = [
        f"{name}={getattr(cfg, name)!r} is not one of {choices}"
        for name, choices in CHOICES.items()
        if getattr(cfg, name) not in choices
    ]
    if not (cfg.device in DEVICES or cfg.device.startswith("cuda:")):
        problems.append(f"device={cfg.device!r} is not auto, cpu, cuda or cuda:N")
    if not cfg.preset.strip():
        problems.append("preset is empty")
    if cfg.image_depth < 1:
        problems.append("image_depth must be at least 1")
    if cfg.max_regions < 1:
        problems.append("max_regions must be at least 1")
    if cfg.max_query_chars < 1:
        problems.append("max_query_chars must be at least 1")
    if len(cfg.query) > cfg.max_query_chars:
        problems.append(f"query is longer than max_query_chars={cfg.max_query_chars}")
    if cfg.service_timeout_s <= 0:
        problems.append("service_timeout_s must be positive")
    if cfg.frame_timeout_s <= 0:
        problems.append("frame_timeout_s must be positive (queries must not wait forever)")
    problems += _camera_problems(list(cfg.cameras))
    if cfg.max_tracks < 1:
        problems.append("max_tracks must be at least 1")
    try:
        cfg.overrides()
    except ValueError as err:
        problems.append(str(err))
    return problems


def _camera_problems(names: list[str]) -> list[str]:
    if names in ([], [""]):
        return []
    problems = [
        f"cameras: {name!r} is not a valid name (a letter, then letters, digits or _)"
        for name in names
        if not CAMERA_NAME.fullmatch(name)
    ]
    if len(set(names)) != len(names):
        problems.append(f"cameras: duplicate names in {names}")
    return problems
