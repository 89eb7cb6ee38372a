"""Packaging: both halves of converseg_ros import together, the colcon layout installs everything, the
manifest, launch file, params YAML and RViz layout are valid."""

from __future__ import annotations

import ast
import hashlib
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from ros_env import REPO

from converseg_ros.ros import params
from converseg_ros.ros.params import BY_NAME, PARAMS, NodeConfig

IMPORT_BOTH = (
    "from converseg_ros.msg import SegmentationResult, SegmentationQuery, AffordanceRegion\n"
    "from converseg_ros.srv import Segment\n"
    "import converseg_ros.engine, converseg_ros.ros.node, converseg_ros.regions\n"
    "from rclpy.serialization import serialize_message, deserialize_message\n"
    "r = SegmentationResult(query='q'); r.regions = [AffordanceRegion(id='a/0')]\n"
    "assert deserialize_message(serialize_message(r), SegmentationResult).regions[0].id == 'a/0'\n"
    "print('ok', converseg_ros.__file__)\n"
)


@pytest.mark.timeout(60)
def test_generated_messages_and_own_modules_import_together() -> None:
    """From a neutral folder, with the environment of scripts/ros_env.sh (install/ first on PYTHONPATH)."""
    out = subprocess.run(
        [sys.executable, "-c", IMPORT_BOTH], cwd="/", capture_output=True, text=True, check=False
    )
    assert out.returncode == 0, out.stderr
    assert (
        "ok" in out.stdout and "install" in out.stdout
    )  # the generated half was found first, joined to ours


@pytest.mark.timeout(180)
def test_colcon_style_install_is_self_contained(tmp_path: Path) -> None:
    """CONVERSEG_INSTALL_PYTHON_SOURCES=ON (colcon's default): sources, launch/config/rviz/models and the
    node executables are installed; the installed package imports without the source tree."""
    from ros_env import INSTALL, SITE

    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH",)}
    env["AMENT_PREFIX_PATH"] = sys.prefix
    # the NumPy include link scripts/build_interfaces.sh made for this venv (named by the venv's path)
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "converseg_ros"
    tag = hashlib.sha256((os.environ["VIRTUAL_ENV"] + "\n").encode()).hexdigest()[:12]
    numpy_inc = cache / f"numpy-include-{tag}" if (cache / f"numpy-include-{tag}").exists() else None
    extra = [f"-DPython3_NumPy_INCLUDE_DIR={numpy_inc}"] if numpy_inc else []
    prefix = tmp_path / "install"
    steps = [
        [
            "cmake",
            "-S",
            str(REPO),
            "-B",
            str(tmp_path / "build"),
            f"-DCMAKE_PREFIX_PATH={sys.prefix}",
            f"-DCMAKE_INSTALL_PREFIX={prefix}",
            f"-DPython3_EXECUTABLE={sys.executable}",
            "-DBUILD_TESTING=OFF",
            *extra,
        ],
        ["cmake", "--build", str(tmp_path / "build"), "-j2"],
        ["cmake", "--install", str(tmp_path / "build")],
    ]
    for cmd in steps:
        out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
        assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    site = prefix / SITE.relative_to(INSTALL)
    share = prefix / "share" / "converseg_ros"
    for path in [
        site / "converseg_ros" / "ros" / "node.py",
        site / "converseg_ros" / "msg" / "__init__.py",
        share / "launch" / "segment.launch.py",
        share / "config" / "segment.yaml",
        share / "rviz" / "converseg.rviz",
        share / "models" / "tiny.yaml",
        share / "package.xml",
        prefix / "lib" / "converseg_ros" / "converseg_node",
        prefix / "share" / "ament_index" / "resource_index" / "packages" / "converseg_ros",
    ]:
        assert path.exists(), path
    assert os.access(prefix / "lib" / "converseg_ros" / "converseg_node", os.X_OK)
    # -S: no site-packages .pth files, so the editable source tree is out of reach; only the install is.
    # (The ROS packages and PyYAML: one site-packages for Kilted; Jazzy's venv shares PyYAML from Kilted's.)
    ros_site = str(Path(importlib.util.find_spec("rclpy").origin).parents[1])
    code = (
        f"import sys; sys.path[:0] = [{str(site)!r}, {ros_site!r}, {str(Path(yaml.__file__).parents[1])!r}]\n"
        "import converseg_ros, converseg_ros.ros.params\n"
        "from converseg_ros.msg import SegmentationResult\n"
        "assert converseg_ros.__path__ == [sys.path[0] + '/converseg_ros'], converseg_ros.__path__\n"
        "print('ok')"
    )
    env["LD_LIBRARY_PATH"] = f"{prefix / 'lib'}:{env.get('LD_LIBRARY_PATH', '')}"
    out = subprocess.run([sys.executable, "-S", "-c", code], cwd="/", env=env, capture_output=True, text=True)
    assert out.returncode == 0 and "ok" in out.stdout, out.stderr[-3000:]


def test_package_xml_is_a_valid_format3_ament_cmake_manifest() -> None:
    from catkin_pkg.package import parse_package

    pkg = parse_package(str(REPO / "package.xml"))  # validates, incl. the maintainer e-mail
    assert (pkg.name, pkg.package_format, pkg.get_build_type()) == ("converseg_ros", 3, "ament_cmake")
    deps = {d.name for d in pkg.build_depends + pkg.exec_depends + pkg.buildtool_depends}
    assert {
        "rclpy",
        "rcl_interfaces",  # parameters (params.py)
        "ament_index_python",  # launch file (rviz2 check)
        "python3-torch",
        "python3-torchvision",
        "python3-numpy",
        "python3-opencv",
        "python3-yaml",
        "python3-pil",
        "python3-tqdm",
        "python3-skimage",
        "python3-transformers-pip",
        "python3-huggingface-hub-pip",
        "python3-hydra-core-pip",
        "sensor_msgs",
        "std_msgs",
        "geometry_msgs",
        "visualization_msgs",
        "diagnostic_msgs",
        "std_srvs",
        "lifecycle_msgs",
        "builtin_interfaces",
        "rosidl_default_generators",
        "rosidl_default_runtime",
    } <= deps
    assert [g.name for g in pkg.member_of_groups] == ["rosidl_interface_packages"]


@pytest.mark.parametrize("name", ["segment.yaml", "head_wrist.yaml"])
def test_shipped_params_files_name_declared_parameters_with_valid_values(name: str) -> None:
    """Every key of the shipped params files is a declared parameter (or a camera's own value of a camera
    parameter) and its value passes that declaration (ROS refuses an int for a double)."""
    data = yaml.safe_load((REPO / "config" / name).read_text())
    given = data["/**"]["ros__parameters"]
    values = {}
    for key, value in given.items():
        if isinstance(value, dict):  # a camera's own values
            assert key in given.get("cameras", []), f"{key}: not a camera of {name}"
            values.update({f"{key}.{k}": v for k, v in value.items()})
        else:
            assert key in BY_NAME, f"{key} is not a declared parameter"
            assert type(value) is type(BY_NAME[key].default) or BY_NAME[key].kind is list, (key, value)
            values[key] = value
    assert params.validate(params.with_values(NodeConfig(), values)) == []


def test_docs_parameter_table_is_the_declarations() -> None:
    """docs/ros.md carries the table generated from PARAMS (python -m converseg_ros.ros.params)."""
    assert params.docs_table() in (REPO / "docs" / "ros.md").read_text()
    assert len(params.docs_table().splitlines()) == len(PARAMS) + 2


def test_declarations_are_consistent() -> None:
    """Each entry's default passes its own declaration; ranges only on numbers; choices only on strings."""
    for p in PARAMS:
        assert p.problem(p.default) is None, p.name
        assert p.range is None or p.kind in (int, float), p.name
        assert not p.choices or p.kind is str, p.name
        assert p.description.endswith("."), p.name
    assert NodeConfig().camera("").max_rate_hz == BY_NAME["max_rate_hz"].default


def test_tracking_defaults_are_the_engines() -> None:
    """The node's tracking parameters default to what QueryTracker uses without them (one set of numbers)."""
    from converseg_ros.engine.tracking import TrackingConfig

    node, engine = NodeConfig(), TrackingConfig()
    assert (node.track_min_object_score, node.track_min_iou, node.track_reground_every) == (
        engine.min_object_score, engine.min_iou, engine.reground_every
    )


def test_engine_option_choices_are_the_engines() -> None:
    from converseg_ros.engine.overlap import OVERLAP_MODES
    from converseg_ros.modeling.build import ATTENTION_IMPLEMENTATIONS
    from converseg_ros.ros.params import CHOICES

    assert CHOICES["overlap"] == OVERLAP_MODES and CHOICES["attention"] == ATTENTION_IMPLEMENTATIONS


def _launch_literals() -> dict[str, object]:
    tree = ast.parse((REPO / "launch" / "segment.launch.py").read_text())
    return {
        t.id: ast.literal_eval(node.value)
        for node in tree.body
        if isinstance(node, ast.Assign)
        for t in node.targets
        if isinstance(t, ast.Name) and t.id.isupper()
    }


def test_launch_arguments_match_node_parameters() -> None:
    """Static check (runs without `launch`): every parameter argument names a declared node parameter and
    the issue's arguments are all there."""
    lit = _launch_literals()
    assert set(lit["PARAMETER_ARGUMENTS"].values()) <= set(BY_NAME)
    assert {
        "namespace",
        "image_topic",
        "params_file",
        "preset",
        "device",
        "query",
        "use_rviz",
        "log_level",
    } <= set(lit["ARGUMENTS"])
    for arg in lit["PARAMETER_ARGUMENTS"]:
        assert lit["ARGUMENTS"][arg][0] == "", f"{arg} must default to '' (no drift from the params file)"


def test_launch_description_builds() -> None:
    reason = (
        "ROS 2 'launch'/'launch_ros' are not installable from pip here; the static check above still runs"
    )
    launch = pytest.importorskip("launch", reason=reason)
    if not hasattr(
        launch, "LaunchDescription"
    ):  # only this repository's launch/ folder (a namespace package)
        pytest.skip(reason)
    pytest.importorskip("launch_ros", reason=reason)
    from launch.actions import DeclareLaunchArgument

    from launch import LaunchContext

    spec = importlib.util.spec_from_file_location("segment_launch", REPO / "launch" / "segment.launch.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    description = module.generate_launch_description()
    declared = [e for e in description.entities if isinstance(e, DeclareLaunchArgument)]
    assert {a.name for a in declared} == set(module.ARGUMENTS)
    context = LaunchContext()
    for arg in declared:
        context.launch_configurations[arg.name] = (
            arg.default_value[0].perform(context) if arg.default_value else ""
        )
    context.launch_configurations.update(
        {"preset": "tiny", "params_file": str(REPO / "config" / "segment.yaml"), "use_rviz": "true"}
    )
    actions = module._actions(context)
    assert actions[0].node_executable == "converseg_node"
    if module.rviz2_missing():  # skipped with a log line, never an error
        message = "".join(part.perform(context) for part in actions[1].msg)
        assert len(actions) == 2 and "starting without RViz" in message, message


def test_rviz_layout_shows_the_node_outputs() -> None:
    rviz = yaml.safe_load((REPO / "rviz" / "converseg.rviz").read_text())
    displays = {d["Class"]: d for d in rviz["Visualization Manager"]["Displays"]}
    topics = {d["Topic"]["Value"] for d in rviz["Visualization Manager"]["Displays"] if "Topic" in d}
    assert topics == {"/converseg/overlay", "/converseg/mask", "/converseg/markers"}
    assert "rviz_default_plugins/Image" in displays and "rviz_default_plugins/MarkerArray" in displays
