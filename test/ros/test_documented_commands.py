"""Every command README.md and docs/ros.md show for this package works as written: each ``converseg-*`` console
script and each ``ros2 run converseg_ros <name>`` executable (lib/converseg_ros/<name>, what ``ros2 run`` runs)
answers ``--help``; every documented command line of the query, replay and segment tools parses with the
tool's own parser; the node's ``--ros-args`` parse in rclpy and name declared parameters; and the documented
``converseg_segment --image … --prompt …`` runs for real (tiny preset) and writes its files."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from dataclasses import fields
from pathlib import Path

import pytest
from ros_env import INSTALL, REPO

from converseg_ros.cli import segment as segment_cli
from converseg_ros.ros.params import NodeConfig
from converseg_ros.ros.tools import client, replay

DOCS = (REPO / "README.md", REPO / "docs" / "ros.md")
ROS2_RUN = {"converseg_node": "node", "converseg_query": "query", "camera_replay": "replay",
            "converseg_segment": "segment"}
CONSOLE = {"converseg-node": "node", "converseg-query": "query", "converseg-replay": "replay",
           "converseg-segment": "segment"}  # (training, evaluation and data engine: their own tests)
PARSERS = {"query": client.parse_args, "replay": replay.parse_args, "segment": segment_cli.build_parser().parse_args}


def documented_commands() -> list[tuple[str, str, list[str]]]:
    """(tool, executable as written, arguments) of every command line in the docs that starts one of ours."""
    texts = []
    for doc in DOCS:
        text = doc.read_text()
        for block in re.findall(r"```(?:bash)?\n(.*?)```", text, flags=re.S):
            texts += block.replace("\\\n", " ").splitlines()
        texts += re.findall(r"`([^`\n]*(?:converseg-|ros2 run converseg_ros|converseg_ros\.node)[^`\n]*)`", text)
    found = []
    for line in texts:
        try:
            words = shlex.split(line, comments=True)
        except ValueError:
            continue
        while words and re.fullmatch(r"[A-Z_]+=\S*", words[0]):  # VAR=value prefixes
            words = words[1:]
        words = [w for w in words if w not in ("...", "…")]
        if any(w.startswith("[") and w != "[" and not w.startswith("[h") for w in words[1:]):
            continue  # a syntax summary such as "--prompt P [--out DIR]", not a command
        if words[:3] == ["ros2", "run", "converseg_ros"] and len(words) > 3 and words[3] in ROS2_RUN:
            found.append((ROS2_RUN[words[3]], f"ros2 run converseg_ros {words[3]}", words[4:]))
        elif words and words[0] in CONSOLE:
            found.append((CONSOLE[words[0]], words[0], words[1:]))
        elif words[:3] == ["python", "-m", "converseg_ros.node"]:
            found.append(("node", "python -m converseg_ros.node", words[3:]))
    return found


def executable(written: str) -> list[str]:
    if written.startswith("ros2 run converseg_ros "):
        return [str(INSTALL / "lib" / "converseg_ros" / written.split()[-1])]
    if written.startswith("python -m "):
        return [sys.executable, "-m", written.split()[-1]]
    return [str(Path(sys.executable).parent / written)]


COMMANDS = documented_commands()


def test_the_docs_show_every_tool_both_ways() -> None:
    written = {w for _, w, _ in COMMANDS}
    assert {f"ros2 run converseg_ros {name}" for name in ROS2_RUN} <= written, written
    assert {"converseg-query", "converseg-replay", "converseg-segment", "python -m converseg_ros.node"} <= written


@pytest.mark.timeout(300)
def test_each_documented_tool_answers_help() -> None:
    failures = []
    for written in sorted({w for tool, w, _ in COMMANDS if tool in PARSERS}):  # (the node: below)
        out = subprocess.run([*executable(written), "--help"], capture_output=True, text=True, timeout=120)
        if out.returncode != 0 or "usage" not in out.stdout.lower():
            failures.append(f"{written} --help: exit {out.returncode}\n{out.stderr[-1000:]}")
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize(
    ("tool", "written", "args"), [c for c in COMMANDS if c[0] in PARSERS and c[2]],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_documented_command_line_parses(tool: str, written: str, args: list[str]) -> None:
    try:
        PARSERS[tool](args)
    except SystemExit as exc:
        pytest.fail(f"{written} {shlex.join(args)}: the tool refuses these arguments (exit {exc.code})")


@pytest.mark.parametrize("args", [a for t, _, a in COMMANDS if t == "node" and a], ids=lambda a: shlex.join(a)[:60])
def test_documented_node_arguments_parse_and_name_parameters(args: list[str]) -> None:
    import rclpy
    from rclpy.context import Context

    args = [str(REPO / a) if a.startswith("config/") else a for a in args]  # as run from the repository
    context = Context()
    rclpy.init(args=["converseg_node", *args], context=context)  # raises on malformed --ros-args
    context.try_shutdown()
    names = {f.name for f in fields(NodeConfig)}
    for k, word in enumerate(args):
        if k and args[k - 1] == "-p":
            assert word.split(":=")[0] in names, f"-p {word}: no such parameter"


@pytest.mark.timeout(300)
def test_documented_segment_command_runs(tmp_path: Path) -> None:
    """``ros2 run converseg_ros converseg_segment --image photo.jpg --prompt "the cup"`` (docs/ros.md), with the
    tiny preset: writes its mask, overlay and regions into the default output folder."""
    import cv2
    from ros_helpers import photo

    line = next(a for t, w, a in COMMANDS if t == "segment" and w.startswith("ros2 run") and "--out" not in a)
    cv2.imwrite(str(tmp_path / "photo.jpg"), photo(160)[:, :, ::-1])
    cmd = [*executable("ros2 run converseg_ros converseg_segment"), *line, "--preset", "tiny", "--device", "cpu"]
    out = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=240)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    written = sorted(p.name for p in (tmp_path / "converseg_out").iterdir())
    assert any(n.endswith("_mask.png") for n in written) and any(n.endswith("_regions.json") for n in written)
