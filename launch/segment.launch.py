"""Launch converseg_node (and optionally RViz).

    ros2 launch converseg_ros segment.launch.py image_topic:=/camera/color/image_raw \\
        query:="segment surfaces safe to place hot items" use_rviz:=true
    ros2 launch converseg_ros segment.launch.py cameras:=head,wrist \\
        image_topics:=/head/color/image_raw,/wrist/color/image_raw       # one model, two cameras

The node declares every parameter default; the params file and the arguments below only override. An
argument left empty ("") leaves the params file's value alone, so defaults never drift between files.
The launch ends with the node: when it exits (a failure such as missing weights, or a signal) everything
stops, and `ros2 launch` exits non-zero if the node failed. Without ``launch`` (pip-only installs) run the
same node with ``python -m converseg_ros.node --ros-args --params-file config/segment.yaml``.
"""

from __future__ import annotations

from pathlib import Path

from launch.actions import DeclareLaunchArgument, LogInfo, OpaqueFunction, Shutdown
from launch.events.process import ProcessExited
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare

from converseg_ros.ros.tools.launch_support import camera_setup, fastdds_profile_env, rviz2_missing, write_rviz_layout
from launch import LaunchContext, LaunchDescription

PACKAGE = "converseg_ros"
# launch argument -> node parameter, passed only when the argument is not empty
PARAMETER_ARGUMENTS = {"preset": "preset", "device": "device", "precision": "precision", "query": "query"}
ARGUMENTS = {
    "namespace": ("converseg", "Namespace of the node and its topics (one per camera)."),
    "image_topic": ("/camera/image_raw", "Camera image topic (remapped onto <namespace>/image; one camera)."),
    "cameras": ("", "Comma-separated camera names (one model for all; topics <namespace>/<camera>/...); empty: one."),
    "image_topics": ("", "With cameras: their image topics, comma-separated, in order; empty: not remapped."),
    "depth_topic": ("", "Depth image topic (with use_depth: true in the params file); empty: none."),
    "camera_info_topic": ("", "CameraInfo of the depth/colour camera; empty: not remapped."),
    "params_file": ("", "Parameters YAML; empty: the shipped config/segment.yaml."),
    "preset": ("", "Model preset (converseg-3b, tiny, ...); empty: from the params file."),
    "device": ("", "auto, cpu, cuda or cuda:N; empty: from the params file."),
    "precision": ("", "auto, fp32, bf16 or fp16; empty: from the params file."),
    "query": ("", "Initial continuous query; empty: from the params file."),
    "fastdds_profile": (
        "auto",
        "Fast DDS profile of the node: auto = a profile already set in FASTDDS_/FASTRTPS_DEFAULT_PROFILES_FILE, "
        "else local (config/fastdds_large_frames.xml, 127.0.0.1) when ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST "
        "and network (fastdds_large_frames_network.xml: this and other hosts) otherwise; local; network; "
        "none; or a file.",
    ),
    "use_rviz": ("false", "Start RViz with rviz/converseg.rviz, its topics moved to the namespace."),
    "log_level": ("info", "Node log level: debug, info, warn, error."),
}


def _on_node_exit(event: ProcessExited, context: LaunchContext) -> list:
    """The node is the launch's reason to be: shut everything down, and fail the launch if it failed."""
    if event.returncode != 0:  # an exception here makes LaunchService.run() (and `ros2 launch`) return 1
        raise RuntimeError(f"converseg_node failed with exit code {event.returncode} (see its log above)")
    return [Shutdown(reason="converseg_node exited")]


def _actions(context: LaunchContext) -> list:
    """The node with only the non-empty overrides, and RViz when asked for and installed."""
    value = {name: LaunchConfiguration(name).perform(context) for name in ARGUMENTS}
    share = Path(FindPackageShare(PACKAGE).perform(context))
    params_file = value["params_file"] or str(share / "config" / "segment.yaml")
    overrides = {param: value[arg] for arg, param in PARAMETER_ARGUMENTS.items() if value[arg]}
    cameras, remappings = camera_setup(value["cameras"], value["image_topics"], value["image_topic"])
    if cameras != [""]:
        overrides["cameras"] = cameras
    for name in ("depth", "camera_info"):
        if value[f"{name}_topic"]:
            remappings.append((name, value[f"{name}_topic"]))
    env = {
        "MALLOC_ARENA_MAX": "2",  # fewer glibc malloc arenas: RSS stays flat under load (docs/ros.md)
        "CONVERSEG_EXIT_WITH_PARENT": "1",  # the node also stops if this launch is killed outright
        **fastdds_profile_env(value["fastdds_profile"], share / "config"),
    }
    actions = [
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
            additional_env=env,
            on_exit=_on_node_exit,
        )
    ]
    if value["use_rviz"].lower() in ("true", "1", "yes"):
        missing = rviz2_missing()
        if missing:
            actions.append(LogInfo(msg=f"use_rviz: starting without RViz: {missing}"))
        else:
            layout = write_rviz_layout(share / "rviz" / "converseg.rviz", value["namespace"], cameras)
            actions.append(
                Node(package="rviz2", executable="rviz2", name="rviz2", output="log", arguments=["-d", str(layout)])
            )
    return actions


def generate_launch_description() -> LaunchDescription:
    """Arguments (see ARGUMENTS), the node and optionally RViz."""
    declared = [
        DeclareLaunchArgument(name, default_value=default, description=text)
        for name, (default, text) in ARGUMENTS.items()
    ]
    return LaunchDescription([*declared, OpaqueFunction(function=_actions)])
