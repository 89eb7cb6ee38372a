"""The layering of the package, read from the source (every import statement, lazy ones included):
``serving/`` never imports ROS, ``ros/`` or another front; ``engine/`` and ``modeling/`` import no front; no
import circle inside or between ``serving/`` and ``ros/``; and serving imports with rclpy unavailable."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "converseg_ros"
FRONTS = ("ros", "cli", "dataengine", "training", "evaluation", "improve", "node")
ROS_MODULES = ("rclpy", "sensor_msgs", "std_msgs", "std_srvs", "diagnostic_msgs", "visualization_msgs",
               "rcl_interfaces", "geometry_msgs", "builtin_interfaces", "lifecycle_msgs", "cv_bridge")


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> set[str]:
    """Every module ``path`` imports (absolute names)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def room_graph(rooms: tuple[str, ...]) -> dict[str, set[str]]:
    """Module -> package modules it imports (names cut to real modules) over ``rooms``."""
    mods = {module_name(p): p for room in rooms for p in (PACKAGE / room).rglob("*.py")}

    def real(name: str) -> str | None:
        return name if name in mods else (name.rsplit(".", 1)[0] if name.rsplit(".", 1)[0] in mods else None)

    return {m: {r for i in imports(p) if (r := real(i)) and r != m} for m, p in mods.items()}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Every import circle (as a path that returns to its start)."""
    found, state = [], {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                found.append(path[path.index(nxt):] + [nxt] if nxt in path else [node, nxt])
            elif nxt not in state:
                visit(nxt, path + [nxt])
        state[node] = 2

    for node in sorted(edges):
        if node not in state:
            visit(node, [node])
    return found


def test_serving_imports_no_ros_and_no_front() -> None:
    for path in (PACKAGE / "serving").rglob("*.py"):
        for name in imports(path):
            top = name.split(".")[0]
            assert top not in ROS_MODULES, f"{path.name} imports {name}"
            if top == "converseg_ros" and "." in name:
                assert name.split(".")[1] not in FRONTS, f"{path.name} imports upward: {name}"


def test_engine_and_modeling_import_no_serving_and_no_front() -> None:
    for room in ("engine", "modeling"):
        for path in (PACKAGE / room).rglob("*.py"):
            for name in imports(path):
                parts = name.split(".")
                if parts[0] == "converseg_ros" and len(parts) > 1:
                    assert parts[1] not in (*FRONTS, "serving"), f"{room}/{path.name} imports upward: {name}"


def test_no_import_circle_within_or_between_serving_and_ros() -> None:
    edges = room_graph(("serving", "ros", "improve"))
    assert sum(len(v) for v in edges.values()) > 40  # the graph is really read
    assert cycles(edges) == []
    serving = [m for m in edges if m.startswith("converseg_ros.serving")]
    assert all(not any(d.startswith("converseg_ros.ros") for d in edges[m]) for m in serving)


def test_the_circle_finder_finds_a_circle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == [["a", "b", "c", "a"]]


def test_serving_imports_with_rclpy_unavailable() -> None:
    code = (
        "import sys\n"
        "for name in ('rclpy', 'sensor_msgs', 'std_msgs', 'rcl_interfaces'):\n"
        "    sys.modules[name] = None  # any import of them now fails\n"
        "import importlib, pkgutil, converseg_ros.serving as s\n"
        "for m in pkgutil.walk_packages(s.__path__, 'converseg_ros.serving.'):\n"
        "    importlib.import_module(m.name)\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]
