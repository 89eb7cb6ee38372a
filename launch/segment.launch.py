"""Launch converseg_node (and optionally RViz).

    ros2 launch converseg_ros segment.launch.py image_topic:=/camera/color/image_raw \\
        query:="segment surfaces safe to place hot items" use_rviz:=true

The node declares every parameter default; the params file and the arguments below only override. An
argument left empty ("") leaves the params file's value alone, so defaults never drift between files.
Without ``launch`` (pip-only installs) run the same node with
``python -m converseg_ros.node --ros-args --params-file config/segment.yaml``.
"""

from __future__ import annotations

from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare

from launch import LaunchContext, LaunchDescription

PACKAGE = "converseg_ros"
# launch argument -> node parameter, passed only when the argument is not empty
PARAMETER_ARGUMENTS = {"preset": "preset", "device": "device", "precision": "precision", "query": "query"}
ARGUMENTS = {
    "namespace": ("converseg", "Namespace of the node and its topics (one per camera)."),
    "image_topic": ("/camera/image_raw", "Camera image topic (remapped onto <namespace>/image)."),
    "depth_topic": ("", "Depth image topic (with use_depth: true in the params file); empty: none."),
    "camera_info_topic": ("", "CameraInfo of the depth/colour camera; empty: not remapped."),
    "params_file": ("", "Parameters YAML; empty: the shipped config/segment.yaml."),
    "preset": ("", "Model preset (converseg-3b, tiny, ...); empty: from the params file."),
    "device": ("", "auto, cpu, cuda or cuda:N; empty: from the params file."),
    "precision": ("", "auto, fp32, bf16 or fp16; empty: from the params file."),
    "query": ("", "Initial continuous query; empty: from the params file."),
    "use_rviz": ("false", "Start RViz with rviz/converseg.rviz."),
    "log_level": ("info", "Node log level: debug, info, warn, error."),
}


def _share(*parts: str) -> PathJoinSubstitution:
    return PathJoinSubstitution([FindPackageShare(PACKAGE), *parts])


def _nodes(context: LaunchContext) -> list[Node]:
    """The node with only the non-empty overrides (resolved at launch time; no side effects)."""
    value = {name: LaunchConfiguration(name).perform(context) for name in ARGUMENTS}
    params_file = value["params_file"] or _share("config", "segment.yaml").perform(context)
    overrides = {param: value[arg] for arg, param in PARAMETER_ARGUMENTS.items() if value[arg]}
    image = value["image_topic"]
    remappings = [("image", image), ("image/compressed", image.rstrip("/") + "/compressed")]
    for name in ("depth", "camera_info"):
        if value[f"{name}_topic"]:
            remappings.append((name, value[f"{name}_topic"]))
    nodes = [
        Node(
            package=PACKAGE,
            executable="converseg_node",
            name="converseg_node",
            namespace=value["namespace"],
            parameters=[params_file, overrides] if overrides else [params_file],
            remappings=remappings,
            ros_arguments=["--log-level", value["log_level"]],
            output="screen",
            emulate_tty=True,
            # fewer glibc malloc arenas: RSS stays flat under load (docs/ros.md "Soak figures")
            additional_env={"MALLOC_ARENA_MAX": "2"},
        )
    ]
    if value["use_rviz"].lower() in ("true", "1", "yes"):
        nodes.append(
            Node(
                package="rviz2",
                executable="rviz2",
                name="rviz2",
                output="log",
                arguments=["-d", _share("rviz", "converseg.rviz").perform(context)],
            )
        )
    return nodes


def generate_launch_description() -> LaunchDescription:
    """Arguments (see ARGUMENTS) and the node(s)."""
    declared = [
        DeclareLaunchArgument(name, default_value=default, description=text)
        for name, (default, text) in ARGUMENTS.items()
    ]
    return LaunchDescription([*declared, OpaqueFunction(function=_nodes)])
