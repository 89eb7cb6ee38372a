"""converseg_node: a lifecycle node that turns camera images + conversational queries into masks and
affordance regions. One node serves one or several cameras (parameter ``cameras``) with one model.

This file holds the lifecycle, the resources and the parameters; the work is in three rooms: the serving core
(``converseg_ros.serving``: queries, scheduling, the inference thread), the commands (``commands.py``: query
topics and services) and the outputs (``outputs.py``: every publisher). Camera subscriptions are in
``inputs.py``, message conversion in ``msgs/``.

Lifecycle: configure validates parameters and model files and creates the serving core, outputs, commands, the
model switch (``swapping.py``) and the hard-case recorder (``recording.py``) (an inactive node answers queries
with a refusal); activate loads and warms up the model, starts serving and subscribes the cameras; deactivate
unsubscribes, answers waiting queries and frees the model. With ``autostart`` (default) the node configures
and activates itself. Changing the model parameters while active swaps the model without stopping. Topics,
services, parameters: docs/ros.md.
"""

from __future__ import annotations

from typing import Any

from rclpy.callback_groups import MutuallyExclusiveCallbackGroup, ReentrantCallbackGroup
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from sensor_msgs.msg import CompressedImage

from converseg_ros.engine.tracking import TrackingConfig
from converseg_ros.ros import parameters, params
from converseg_ros.ros.commands import Commands
from converseg_ros.ros.diagnostics import NodeFacts, diagnostics_msg
from converseg_ros.ros.inputs import CameraInputs, DepthInput
from converseg_ros.ros.msgs.image_input import compressed_to_rgb8, image_to_rgb8
from converseg_ros.ros.outputs import Outputs
from converseg_ros.ros.recording import Recording
from converseg_ros.ros.results import UNTRAINED_BANNER, ResultBuilder
from converseg_ros.ros.swapping import ModelSwitch
from converseg_ros.serving.book import QueryBook
from converseg_ros.serving.camera import CameraFeed
from converseg_ros.serving.frame_slot import Frame
from converseg_ros.serving.model import ModelChoice, ModelRequest, check_model
from converseg_ros.serving.queries import MODE_CONTINUOUS, Batch
from converseg_ros.serving.settings import CameraSettings, Clocks, WorkerSettings
from converseg_ros.serving.worker import InferenceWorker

NODE_NAME = "converseg_node"
# Executor threads (converseg_ros.ros.run): the input/timer group and the query group need one each, each
# waiting segment call holds one. Calls beyond MAX_WAITING_CALLS are refused ("busy") so waiting calls can
# never starve the images or the queries.
EXECUTOR_THREADS = 7
MAX_WAITING_CALLS = EXECUTOR_THREADS - 3
INPUT_RECHECK_S = 1.0  # how often `image_reliability: auto` inputs re-read what their publishers offer


def model_request(cfg: Any) -> ModelRequest:
    """The model the parameters ask for."""
    return ModelRequest(
        cfg.preset, cfg.overrides(), cfg.allow_download, cfg.device, cfg.precision, cfg.sam2_precision,
        cfg.overlap, cfg.attention, cfg.compile_sam2, cfg.release.strip(),
    )


def worker_settings(cfg: Any) -> WorkerSettings:
    return WorkerSettings(cfg.max_image_age_s, cfg.pre_encode_hz, cfg.min_region_area_px, cfg.max_regions)


def camera_settings(cam: Any) -> CameraSettings:
    tracking = TrackingConfig(cam.track_min_object_score, cam.track_min_iou, cam.track_reground_every)
    return CameraSettings(cam.max_rate_hz, cam.max_tracks, tracking)


class ConverSegNode(LifecycleNode):
    """The ROS face of the serving core (see the module docstring)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(NODE_NAME, **kwargs)
        self._start_problems = parameters.declare(self)
        self.cfg = parameters.read(self)
        self._cams = {name: self.cfg.camera(name) for name in params.camera_names(self.cfg)}
        self.choice: ModelChoice | None = None  # what configure resolved (the served model: switch.current)
        self.worker: InferenceWorker | None = None
        self.outputs: Outputs | None = None
        self.commands: Commands | None = None
        self.switch: ModelSwitch | None = None
        self.recording: Recording | None = None
        self._inputs: dict[str, CameraInputs] = {}
        self._depth = {name: DepthInput() for name in self._cams}
        self._input_group = MutuallyExclusiveCallbackGroup()
        self._service_group = ReentrantCallbackGroup()
        self._cs_timers: dict[str, Any] = {}
        parameters.ParameterCallbacks(self, lambda: self.cfg, self._apply_parameters, self._refuse_parameters)

    # -- lifecycle ---------------------------------------------------------------------------------
    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Read and validate parameters and model files; create the serving core, outputs and commands."""
        self.get_logger().info("configuring")
        cfg = parameters.read(self)
        problems = self._start_problems + params.validate(cfg)
        if not problems:
            try:
                self.choice = check_model(model_request(cfg))
            except Exception as exc:  # noqa: BLE001 - any failure here is a configuration error
                problems.append(f"model preset {cfg.preset!r}: {exc}")
        if problems:
            for problem in problems:
                self.get_logger().error(f"configure failed: {problem}")
            return TransitionCallbackReturn.FAILURE
        self.cfg, names = cfg, params.camera_names(cfg)
        self._cams = {name: cfg.camera(name) for name in names}
        results = ResultBuilder(
            self._cams.__getitem__, self._depth, cfg.max_image_pixels, self._untrained,
            lambda: self.get_clock().now().nanoseconds, self._warn,
        )
        self.outputs = Outputs(self, names, self._cams.__getitem__, results, cfg.publish_detections, self._warn)
        feeds = [CameraFeed(name, settings=camera_settings(self._cams[name])) for name in names]
        self.worker = InferenceWorker(
            feeds, QueryBook(names), self._decode, self._publish_batch, worker_settings(cfg),
            Clocks(stamp_ns=lambda: self.get_clock().now().nanoseconds), self._on_stale, self.outputs.refuse_job,
        )
        self.switch = ModelSwitch(self, self.worker, self.outputs.publish_model_status, cfg.warmup, self._log)
        self.recording = Recording(self, cfg, self._input_group, self._service_group, self._log)
        self.commands = Commands(
            self, self.worker, self.outputs, lambda: self.cfg, self._service_group,
            MAX_WAITING_CALLS, self.get_logger().info,
        )
        self._set_query_parameter(cfg.query)
        if cfg.diagnostics_period_s > 0:
            self._cs_timers["diagnostics"] = self.create_timer(
                cfg.diagnostics_period_s, self.publish_diagnostics, callback_group=self._input_group
            )
        c = self.choice
        cameras = ", ".join(names) if any(names) else "one unnamed camera"
        self.get_logger().info(
            f"configured: preset {c.preset} ({c.description}), device {c.device}, precision {c.precision}, "
            f"cameras: {cameras}"
        )
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Load and warm up the model, start serving, subscribe the cameras."""
        cfg, request = self.cfg, model_request(self.cfg)
        self.get_logger().info(f"activating: loading {request.label} on {self.choice.device}")
        try:
            model = self.switch.activate(request, cfg)
        except Exception as exc:  # noqa: BLE001 - report and stay inactive
            self.get_logger().error(f"activate failed: cannot load the model: {type(exc).__name__}: {exc}")
            self.switch.free()
            return TransitionCallbackReturn.FAILURE
        if not model.choice.trained:
            self.get_logger().warning(UNTRAINED_BANNER.format(preset=model.choice.preset))
        self._subscribe()
        self.get_logger().info("active")
        return super().on_activate(state)

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Unsubscribe, stop serving (waiting queries are answered), free the model (and GPU memory)."""
        self.release()
        self.get_logger().info("inactive: model freed")
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Destroy commands, outputs, timers and the serving core."""
        self._teardown()
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Free everything."""
        self.release()
        self._teardown()
        return TransitionCallbackReturn.SUCCESS

    def release(self, wait_s: float = 30.0, free_model: bool = True) -> None:
        """Unsubscribe, stop serving (waiting up to ``wait_s`` for a running inference; waiting queries are
        answered "node deactivated"), free the model (at process exit ``free_model=False``: the exit is
        faster)."""
        timer = self._cs_timers.pop("recheck", None)
        if timer is not None:
            self.destroy_timer(timer)
        for inputs in self._inputs.values():
            inputs.destroy()
        self._inputs = {}
        for depth in self._depth.values():
            depth.clear()
        if self.worker is not None and self.worker.running:
            publish_wait_s = min(wait_s, 10.0) if free_model else 1.0  # at exit: within launch's 5 s in all
            if not self.worker.stop(wait_s, publish_wait_s):  # only at exit (short wait)
                self.get_logger().warning(f"inference still running after {wait_s:.0f} s")
                free_model = False
        if free_model and self.switch is not None:
            self.switch.free()

    def _teardown(self) -> None:
        for timer in self._cs_timers.values():
            self.destroy_timer(timer)
        self._cs_timers = {}
        if self.commands is not None:
            self.commands.destroy()
        if self.recording is not None:
            self.recording.destroy()
        if self.outputs is not None:
            self.outputs.destroy()
        self.commands = self.outputs = self.worker = self.recording = self.switch = None

    def _subscribe(self) -> None:
        for name, cam in self._cams.items():
            self._inputs[name] = CameraInputs(
                self, cam, self.worker.feed(name).slot, self._depth[name], self.cfg, self._input_group, self._log
            )
            self.worker.feed(name).source = self._inputs[name].image_topic
        if any(cam.image_reliability == "auto" for cam in self._cams.values()):
            self._cs_timers["recheck"] = self.create_timer(
                INPUT_RECHECK_S, self._recheck_inputs, callback_group=self._input_group
            )

    def _recheck_inputs(self) -> None:
        """Follow the publishers' reliability (same callback group as the inputs: never mid-callback)."""
        for inputs in self._inputs.values():
            inputs.refresh()

    # -- serving callbacks -------------------------------------------------------------------------
    def _publish_batch(self, batch: Batch) -> None:
        """A computed batch (publishing thread): the swap's gap, the recorder (never blocks), the outputs."""
        switch, recording, outputs = self.switch, self.recording, self.outputs  # (None after cleanup)
        if switch is not None and recording is not None and outputs is not None:
            switch.observe(batch)
            recording.offer(batch)
            outputs.publish_batch(batch)

    def _decode(self, msg: Any) -> Any:
        """A camera or service image -> HxWx3 uint8 RGB (inference thread)."""
        if isinstance(msg, CompressedImage):
            return compressed_to_rgb8(msg, self.cfg.max_image_pixels)
        return image_to_rgb8(msg, self.cfg.use_cv_bridge, self.cfg.max_image_pixels)

    def _on_stale(self, frame: Frame, age_s: float, camera: str) -> None:
        where = f" (camera {camera})" if camera else ""
        self._warn(
            f"stale frame rejected{where}: {age_s:.2f} s old > max_image_age_s={self.cfg.max_image_age_s} "
            "(check the camera clock / use_sim_time)"
        )

    def _untrained(self) -> str:
        served = self.switch.current if self.switch is not None else None
        choice = served.choice if served is not None else self.choice
        return choice.preset if choice is not None and not choice.trained else ""

    def _log(self, text: str, warning: bool = False) -> None:
        (self._warn if warning else self.get_logger().info)(text)

    def _warn(self, text: str) -> None:
        self.get_logger().warning(text, throttle_duration_sec=self.cfg.log_throttle_s)

    # -- parameters and diagnostics ----------------------------------------------------------------
    def _apply_parameters(self, names: list[str], cfg: Any) -> None:
        """Accepted run-time changes (validated against their declarations) take effect."""
        self.cfg = cfg
        self._cams.update({name: cfg.camera(name) for name in self._cams})
        if self.worker is None:
            return
        self.worker.set_settings(worker_settings(cfg))
        changed = {params.split_name(n)[0] for n in names if params.split_name(n)[1] in params.CAMERA_PARAMS}
        for camera in self._cams if "" in changed else changed:
            self.worker.set_camera_settings(camera, camera_settings(self._cams[camera]))
        if "query" in names:
            self._set_query_parameter(cfg.query, clear=True)
        if any(name.startswith("record.") for name in names):
            self.recording.apply(cfg)
        self.switch.apply(names, cfg, model_request(cfg))

    def _refuse_parameters(self, names: list[str], cfg: Any) -> str | None:
        """A valid change the node cannot make now (a model swap under way, ``release`` not a release)."""
        return self.switch.refuse(names, cfg, model_request) if self.switch is not None else None

    def _set_query_parameter(self, text: str, clear: bool = False) -> None:
        """The ``query`` parameter: a continuous query on every camera ("" clears it when ``clear``)."""
        cameras = list(self._cams)
        if text.strip():
            self.commands.set_continuous(self.commands.make_query("", text, 0, MODE_CONTINUOUS), cameras)
        elif clear:
            self.commands.set_continuous(None, cameras)
        else:
            for camera in cameras:
                self.outputs.publish_active_query(camera, self.worker.continuous(camera))

    def publish_diagnostics(self) -> None:
        """Publish the node's diagnostics now."""
        worker, outputs = self.worker, self.outputs
        if worker is None or outputs is None:
            return
        facts = NodeFacts(
            self.get_fully_qualified_name(), worker.running,
            self.cfg.preset, self.choice.device if self.choice else "",
            {name: (i.image_topic, i.reliability, i.lost) for name, i in self._inputs.items()},
            dict(self._cams), {**self.switch.diagnostics(), **self.recording.diagnostics()}, self.switch.warning,
        )
        outputs.publish_diagnostics(diagnostics_msg(worker.status(), facts, self.get_clock().now().to_msg()))
