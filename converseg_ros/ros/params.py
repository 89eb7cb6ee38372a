"""converseg_node's parameters, each declared once (:data:`PARAMS`: type, default, description, choices or
range, whether it can change at run time, whether a camera may override it). Everything else is derived from
this table: the ROS declarations and descriptors (:mod:`converseg_ros.ros.parameters`), the plain
:class:`NodeConfig` the node reads, validation at configure and at run time, each camera's effective
:class:`CameraConfig` and the table in docs/ros.md (``python -m converseg_ros.ros.params`` prints it).

A camera-level parameter ``name`` may be given per camera as ``<camera>.<name>`` (e.g. ``wrist.max_rate_hz``);
a camera without its own value follows the node-wide one, also when that changes at run time.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, make_dataclass
from typing import Any

I32 = 2**31 - 1
CAMERA_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*")  # one ROS name token: it becomes a topic namespace
POLICIES = ("latest", "next")
RELIABILITIES = ("auto", "best_effort", "reliable", "system_default")
GROUPS = {"record"}  # node-wide parameter groups (``record.min_score``): not camera names
RECORD_REASONS = ("low_score", "nothing_found", "track_disagreed", "flag")  # serving.recording.settings.REASONS


def _reasons(values: list[str]) -> str | None:
    bad = [v for v in values if v not in RECORD_REASONS]
    return f"has {bad[0][:64]!r}, not one of {', '.join(RECORD_REASONS)}" if bad else None


def _folder(value: str) -> str | None:
    return None if value.strip() else "is empty"


def _json_object(value: str) -> str | None:
    if not value.strip():
        return None
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError as err:
        return f"is not valid JSON: {err}"
    return None if isinstance(parsed, dict) else "must be a JSON object"


def _device(value: str) -> str | None:
    ok = value in ("auto", "cpu", "cuda") or re.fullmatch(r"cuda:\d+", value)
    return None if ok else "is not auto, cpu, cuda or cuda:N"


def _camera_names(names: list[str]) -> str | None:
    if names in ([], [""]):
        return None
    bad = [n for n in names if not CAMERA_NAME.fullmatch(n)]
    if bad:
        return f"{bad[0][:64]!r} is not a valid camera name (a letter, then letters, digits or _)"
    if GROUPS & set(names):
        return f"{sorted(GROUPS & set(names))[0]!r} names a parameter group (record.*); choose another camera name"
    return f"duplicate names in {names}" if len(set(names)) != len(names) else None


@dataclass(frozen=True)
class Param:
    """One node parameter: the single place its facts live."""

    name: str
    default: Any
    description: str
    choices: tuple[str, ...] = ()
    range: tuple[float, float] | None = None  # inclusive; numbers only (default: 0 .. 1e6 / 2^31-1)
    runtime: bool = False  # may change while the node runs
    per_camera: bool = False  # ``<camera>.<name>`` overrides it for one camera
    check: Callable[[Any], str | None] | None = None  # a further rule: the problem, or None

    @property
    def attr(self) -> str:
        """Its attribute in NodeConfig (``record.min_score`` -> ``record_min_score``)."""
        return self.name.replace(".", "_")

    @property
    def kind(self) -> type:
        """bool, int, float, str or list (string array)."""
        return list if isinstance(self.default, (list, tuple)) else type(self.default)

    @property
    def bounds(self) -> tuple[float, float] | None:
        if self.kind in (int, float):
            return self.range or ((0.0, 1.0e6) if self.kind is float else (0, I32))
        return None

    def problem(self, value: Any, label: str | None = None) -> str | None:
        """What is wrong with ``value`` for this parameter (its type, choices, range, rule), or None."""
        label = label or self.name
        kind = self.kind
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if kind is list and isinstance(value, tuple):
            value = list(value)
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            return f"{label}={value!r:.80} is not a {kind.__name__}"
        if self.choices and value not in self.choices:
            return f"{label}={value!r:.80} is not one of {', '.join(self.choices)}"
        lower, upper = self.bounds or (None, None)
        if lower is not None and not lower <= value <= upper:
            return f"{label}={value!r} is outside [{lower:g}, {upper:g}]"
        why = self.check(value) if self.check is not None else None
        return f"{label}={value!r:.80} {why}" if why else None


P = Param
PARAMS: tuple[Param, ...] = (
    P("preset", "converseg-3b", "Model preset name (models/*.yaml: converseg-3b, tiny, ...) or a preset YAML path. "
      "At run time: a hot swap (see swap_mode).", runtime=True, check=lambda v: None if v.strip() else "is empty"),
    P("release", "", "Release folder (ConverSeg-Net_sam2_*.torch, ConverSeg-Net_plm_*.torch, lora_plm_adapter_*/, "
      "e.g. from converseg-train export or promote) whose files replace the preset's; '' = the preset's own. "
      "At run time: a hot swap.", runtime=True),
    P("model_overrides", "", 'JSON object of model fields, e.g. {"plm_checkpoint": "/data/plm.torch"} (they win '
      "over release). At run time: a hot swap.", runtime=True, check=_json_object),
    P("swap_mode", "both", "How a model change at run time is made: both (the new model loads while the old one "
      "answers, then they swap between two frames; both in memory for a moment) or pause (the old model is "
      "freed first: one model in memory, no answers while the new one loads).", choices=("both", "pause"),
      runtime=True),
    P("allow_download", False, "Allow fetching missing weights from the hub during configure (offline robots: false)."),
    P("device", "auto", "auto (cuda when available, else cpu), cpu, cuda or cuda:N.", check=_device),
    P("precision", "auto", "auto (bf16 on cuda, fp32 on cpu), fp32, bf16 or fp16.",
      choices=("auto", "fp32", "bf16", "fp16")),
    P("sam2_precision", "fp32", "SAM2 image encoder: fp32 (as the authors) or bf16 autocast (faster; a deviation).",
      choices=("fp32", "bf16")),
    P("overlap", "auto", "Run a frame's SAM2 encoder and Qwen prefix at once (separate CUDA streams): auto (on "
      "CUDA only; on a CPU they compete for the cores), on or off.", choices=("auto", "on", "off")),
    P("attention", "auto", "Qwen attention kernels: auto (flash_attention_2 on CUDA when installed, else sdpa), "
      "sdpa, flash_attention_2 or eager.", choices=("auto", "sdpa", "flash_attention_2", "eager")),
    P("compile_sam2", False, "torch.compile the SAM2 image encoder and mask decoder (the first frames pay the "
      "compile time)."),
    P("warmup", True, "One synthetic 640x480 inference at activation (the first camera frame is then as fast "
      "as the rest)."),
    P("autostart", True, "Configure and activate at start-up."),
    P("cameras", [""], "Camera names; each reads <name>/image and publishes <name>/result, <name>/mask, ... and "
      "one model serves them all; <name>.<parameter> sets a camera's own value. [''] = one unnamed camera "
      "with the plain topic names.", check=_camera_names),
    P("query", "", "Initial continuous query; setting it at run time replaces the continuous query of every "
      "camera ('' clears it).", runtime=True),
    P("frame_policy", "latest", "Frame for once-queries and the service: latest (newest cached frame if fresh, "
      "else the next) or next (first frame received after the query).", choices=POLICIES, runtime=True),
    P("max_image_age_s", 1.0, "Frames older than this (header stamp vs node clock) are rejected; 0 = off.",
      runtime=True),
    P("max_rate_hz", 0.0, "Cap on the continuous inference rate of a camera (continuous and tracked queries); "
      "0 = as fast as the model goes.", runtime=True, per_camera=True),
    P("pre_encode_hz", 0.0, "While no query is due, encode each camera's newest fresh frame at most this often, "
      "so a new 'latest' query is answered at cached-query cost; 0 = off.", runtime=True),
    P("track_reground_every", 30, "Tracked queries: ground again with the full model after this many frames; "
      "0 = never by count.", runtime=True, per_camera=True),
    P("track_min_iou", 0.5, "Tracked queries: ground again when the tracked mask's predicted IoU is at or below "
      "this.", range=(0.0, 1.0), runtime=True, per_camera=True),
    P("track_min_object_score", 0.0, "Tracked queries: ground again when SAM2's object-score logit is at or "
      "below this (0 = SAM2's presence test).", range=(-1.0e6, 1.0e6), runtime=True, per_camera=True),
    P("max_tracks", 8, "Tracked queries per camera; more are refused with a failed result.", range=(1, I32),
      per_camera=True),
    P("service_timeout_s", 60.0, "Default wait of the segment service (frame + model).", range=(1e-3, 1.0e6)),
    P("frame_timeout_s", 5.0, "Once-queries, and segment calls without timeout_s, waiting longer than this for a "
      "camera frame are answered success: false, 'no camera frame received on <topic> for N s'.",
      range=(1e-3, 1.0e6), runtime=True),
    P("min_region_area_px", 64, "Drop regions smaller than this many pixels."),
    P("max_regions", 10, "Regions per result, highest score first.", range=(1, I32)),
    P("max_query_chars", 500, "Longer queries are refused.", range=(1, 100_000)),
    P("max_image_pixels", 4096 * 4096, "Images with more pixels than this are refused.", range=(1, I32)),
    P("contour_max_points", 64, "Contour points per region (evenly subsampled); 0 = no contours.",
      per_camera=True),
    P("use_compressed", False, "Subscribe sensor_msgs/CompressedImage on image/compressed instead of image.",
      per_camera=True),
    P("image_reliability", "auto", "Reliability of the image, depth and camera_info subscriptions: auto (match "
      "the publishers, re-checked every second), best_effort, reliable or system_default.",
      choices=RELIABILITIES, per_camera=True),
    P("image_depth", 1, "Image subscription history depth (keep 1: frames must not queue).", range=(1, 1000),
      per_camera=True),
    P("use_depth", False, "Subscribe depth + camera_info: 3D region positions and markers.", per_camera=True),
    P("depth_scale", 0.001, "Metres per unit of 16UC1/mono16 depth (32FC1 is metres already).",
      range=(1e-9, 1.0e6), per_camera=True),
    P("max_depth_skew_s", 0.5, "Use a depth frame only if its stamp is this close to the colour frame's.",
      per_camera=True),
    P("publish_overlay", True, "Publish the overlay image (rendered only while someone subscribes).",
      per_camera=True),
    P("overlay_alpha", 0.5, "Opacity of the mask tint in the overlay.", range=(0.0, 1.0), runtime=True,
      per_camera=True),
    P("publish_markers", True, "Publish RViz markers for regions with a 3D position (needs use_depth).",
      per_camera=True),
    P("publish_detections", True, "Publish vision_msgs/Detection2DArray when vision_msgs is importable.",
      per_camera=True),
    P("publish_region_masks", True, "Include cropped region masks in results (bandwidth).", per_camera=True),
    P("frame_id_override", "", "frame_id for outputs when the camera's header has none.", per_camera=True),
    P("use_cv_bridge", "auto", "auto (only for encodings the own codec lacks), never or always.",
      choices=("auto", "never", "always")),
    P("record.enabled", False, "Record hard cases (frames, queries, answer summaries, reasons) for the data "
      "engine, on the recorder's own thread.", runtime=True),
    P("record.dir", "~/.ros/converseg/records", "Folder of the recording sessions (one rosbag2 per session, or "
      "one folder per session).", runtime=True, check=_folder),
    P("record.format", "mcap", "mcap (a rosbag2 with MCAP storage per session) or folder (image.png + "
      "record.json per record).", choices=("mcap", "folder"), runtime=True),
    P("record.reasons", list(RECORD_REASONS), "Reasons that keep a frame: low_score, nothing_found, "
      "track_disagreed, flag.", runtime=True, check=_reasons),
    P("record.min_score", 0.3, "low_score: an answer whose score is below this.", range=(0.0, 1.0), runtime=True),
    P("record.min_track_iou", 0.5, "track_disagreed: a tracked query whose last tracked mask and its re-grounding "
      "overlap (IoU) less than this.", range=(0.0, 1.0), runtime=True),
    P("record.min_interval_s", 2.0, "At most one automatic record per this many seconds (operator flags are "
      "exempt).", runtime=True),
    P("record.max_mb", 2048.0, "Disk budget of record.dir in MB; the oldest records are dropped first.",
      range=(1.0, 1.0e9), runtime=True),
    P("record.chunk_s", 10.0, "mcap: a chunk of the session's bag is closed (readable, safe from a kill) after "
      "this many seconds.", range=(0.1, 3600.0), runtime=True),
    P("diagnostics_period_s", 1.0, "Diagnostics publication period in seconds; 0 = off."),
    P("log_throttle_s", 5.0, "Minimum seconds between repeated per-frame warnings."),
)
BY_NAME = {p.name: p for p in PARAMS}
CAMERA_PARAMS = tuple(p.name for p in PARAMS if p.per_camera)
RUNTIME_SETTABLE = tuple(p.name for p in PARAMS if p.runtime)
CHOICES = {p.name: p.choices for p in PARAMS if p.choices}


def _default(param: Param) -> Any:
    return field(default_factory=lambda: list(param.default)) if param.kind is list else field(default=param.default)


CameraConfig = make_dataclass(
    "CameraConfig",
    [("name", str, field(default=""))] + [(p.name, p.kind, _default(p)) for p in PARAMS if p.per_camera],
    frozen=True,
)
CameraConfig.__doc__ = "One camera's effective camera-level parameters (its own value, else the node-wide one)."


def _overrides(self: Any) -> dict[str, Any]:
    """``model_overrides`` parsed (raises ValueError with the parameter name)."""
    problem = BY_NAME["model_overrides"].problem(self.model_overrides)
    if problem:
        raise ValueError(problem)
    return json.loads(self.model_overrides) if self.model_overrides.strip() else {}


def _camera(self: Any, name: str) -> Any:
    """The effective camera-level parameters of camera ``name``."""
    own = self.camera_values.get(name, {})
    return CameraConfig(name, **{n: own.get(n, getattr(self, n)) for n in CAMERA_PARAMS})


NodeConfig = make_dataclass(
    "NodeConfig",
    [(p.attr, p.kind, _default(p)) for p in PARAMS]
    + [("camera_values", dict, field(default_factory=dict))],  # camera -> {parameter: its own value}
    namespace={"overrides": _overrides, "camera": _camera},
)
NodeConfig.__doc__ = "Every parameter's value (camera_values: what cameras set for themselves)."


def camera_names(cfg: Any) -> list[str]:
    """The camera names of ``cfg`` ([""]: one unnamed camera)."""
    return list(cfg.cameras) or [""]


def split_name(name: str) -> tuple[str, str]:
    """``wrist.max_rate_hz`` -> ("wrist", "max_rate_hz"); ``max_rate_hz`` -> ("", "max_rate_hz");
    ``record.min_score`` (a node-wide parameter) -> ("", "record.min_score")."""
    if name in BY_NAME:
        return "", name
    camera, _, param = name.rpartition(".")
    return camera, param


def with_values(cfg: Any, values: dict[str, Any]) -> Any:
    """A copy of ``cfg`` with parameter ``values`` set (``<camera>.<name>`` keys set a camera's own value;
    None removes it). Numbers are coerced to the declared kind."""
    plain: dict[str, Any] = {}
    cameras = {name: dict(own) for name, own in cfg.camera_values.items()}
    for name, value in values.items():
        camera, param = split_name(name)
        kind = BY_NAME[param].kind if param in BY_NAME else None
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if kind is list and value is not None:
            value = list(value)
        if camera:
            own = cameras.setdefault(camera, {})
            if value is None:
                own.pop(param, None)
            else:
                own[param] = value
        else:
            plain[BY_NAME[param].attr if param in BY_NAME else name] = value
    fields_now = {f: getattr(cfg, f) for f in cfg.__dataclass_fields__}
    return NodeConfig(**{**fields_now, **plain, "camera_values": cameras})


def validate(cfg: Any, names: Iterable[str] | None = None) -> list[str]:
    """Problems with ``cfg`` (empty when valid): each parameter (or only ``names``) by its declaration, each
    camera's own values, and the rules that join parameters. Model files are checked separately."""
    wanted = set(names) if names is not None else None
    problems = [
        problem
        for p in PARAMS
        if wanted is None or p.name in wanted
        if (problem := p.problem(getattr(cfg, p.attr)))
    ]
    cameras = set(camera_names(cfg))
    for camera, own in cfg.camera_values.items():
        for name, value in own.items():
            label = f"{camera}.{name}"
            if wanted is not None and label not in wanted:
                continue
            if camera not in cameras:
                problems.append(f"{label}: there is no camera {camera!r} (cameras: {sorted(cameras)})")
            elif name not in CAMERA_PARAMS:
                problems.append(f"{label}: {name} is not a camera-level parameter")
            elif problem := BY_NAME[name].problem(value, label):
                problems.append(problem)
    if len(cfg.query) > cfg.max_query_chars:
        problems.append(f"query is longer than max_query_chars={cfg.max_query_chars}")
    return problems


def docs_table() -> str:
    """The parameter table of docs/ros.md."""
    rows = ["| parameter | type | default | run time | per camera | meaning |", "|---|---|---|---|---|---|"]
    names = {bool: "bool", int: "int", float: "double", str: "string", list: "string[]"}
    for p in PARAMS:
        default = json.dumps(p.default) if p.kind in (str, list) else str(p.default).lower()
        rows.append(
            f"| `{p.name}` | {names[p.kind]} | `{default}` | {'yes' if p.runtime else ''} | "
            f"{'yes' if p.per_camera else ''} | {p.description} |"
        )
    return "\n".join(rows) + "\n"


if __name__ == "__main__":
    print(docs_table(), end="")
