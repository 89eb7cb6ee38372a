"""converseg_node's parameters on the ROS side, all derived from :data:`converseg_ros.ros.params.PARAMS`:
declaration with descriptors (description, choices, ranges, read-only), reading into a NodeConfig, and the
set-parameters callbacks — every change validated against its declaration in the on-set callback and applied
in the post-set callback (rclpy ≥ Iron; Humble's rclpy has no post-set callback, so there it is applied right
after validation)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor, SetParametersResult

from converseg_ros.ros import params
from converseg_ros.ros.params import BY_NAME, PARAMS, Param


def descriptor(param: Param, camera: str = "") -> ParameterDescriptor:
    """The descriptor ``ros2 param describe`` shows (for ``camera``'s own value when given)."""
    text = param.description
    if param.choices:
        text += f" One of: {', '.join(param.choices)}."
    if camera:
        text = f"Camera {camera}'s own {param.name} (unset: the node-wide value). " + text
    desc = ParameterDescriptor(description=text, read_only=not param.runtime)
    if camera:
        desc.dynamic_typing = True  # unset by default; checked against the declaration on every set
        return desc
    bounds = param.bounds
    if param.kind is float:
        desc.floating_point_range = [FloatingPointRange(from_value=float(bounds[0]), to_value=float(bounds[1]))]
    elif param.kind is int:
        desc.integer_range = [IntegerRange(from_value=int(bounds[0]), to_value=int(bounds[1]))]
    return desc


def declare(node: Any) -> list[str]:
    """Declare every parameter on ``node`` (and, for each camera in ``cameras``, its camera-level ones).
    A start-up value the declaration refuses does not crash the node: the default is kept and the problem
    returned, so configure fails with it."""
    problems = []
    for param in PARAMS:
        try:
            node.declare_parameter(param.name, param.default, descriptor(param))
        except Exception as exc:  # noqa: BLE001 - rclpy raises several types for a refused override
            node.declare_parameter(param.name, param.default, descriptor(param), ignore_override=True)
            problems.append(f"{param.name}: {exc}")
    for camera in params.camera_names(read_plain(node)):
        if camera:
            for name in params.CAMERA_PARAMS:
                node.declare_parameter(f"{camera}.{name}", None, descriptor(BY_NAME[name], camera))
    return problems


def read_plain(node: Any) -> Any:
    """The node-wide parameters as a NodeConfig (no camera values)."""
    return params.NodeConfig(**{p.attr: node.get_parameter(p.name).value for p in PARAMS})


def read(node: Any) -> Any:
    """Every parameter as a NodeConfig, cameras' own values included."""
    cfg = read_plain(node)
    values = {}
    for camera in params.camera_names(cfg):
        for name in params.CAMERA_PARAMS if camera else ():
            value = node.get_parameter(f"{camera}.{name}").value
            if value is not None:
                values[f"{camera}.{name}"] = value
    return params.with_values(cfg, values)


class ParameterCallbacks:
    """Validates changes against the current NodeConfig (``current()``) and hands accepted ones to ``apply``
    (the changed names and the new NodeConfig); ``refuse`` (the changed names, the new NodeConfig) may refuse
    a valid change for what the node is doing (e.g. a model swap under way), with the reason."""

    def __init__(self, node: Any, current: Callable[[], Any], apply: Callable[[list[str], Any], None],
                 refuse: Callable[[list[str], Any], str | None] | None = None) -> None:
        self._current, self._apply, self._refuse = current, apply, refuse
        node.add_on_set_parameters_callback(self._on_set)
        self._post = hasattr(node, "add_post_set_parameters_callback")
        if self._post:
            node.add_post_set_parameters_callback(self._on_post_set)

    def _changes(self, changes: list[Any]) -> tuple[dict[str, Any], Any]:
        values = {p.name: p.value for p in changes}
        return values, params.with_values(self._current(), values)

    def _on_set(self, changes: list[Any]) -> SetParametersResult:
        values, candidate = self._changes(changes)
        problems = params.validate(candidate, values)
        if not problems and self._refuse is not None:
            problems = [why] if (why := self._refuse(list(values), candidate)) else []
        if problems:
            return SetParametersResult(successful=False, reason="; ".join(problems))
        if not self._post:  # Humble: no post-set callback
            self._apply(list(values), candidate)
        return SetParametersResult(successful=True)

    def _on_post_set(self, changes: list[Any]) -> None:
        values, candidate = self._changes(changes)
        self._apply(list(values), candidate)
