"""The full ROS demo (``scripts/demo.sh``): converseg_node + the camera replay publisher on bundled real
photos + a few conversational queries through the segment service; writes overlay PNGs and a summary.

Uses the ``converseg-3b`` weights when they are available locally, otherwise the ``tiny`` preset, whose
random weights produce meaningless masks (said on the console and on every overlay).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import rclpy
from rclpy.node import Node

from converseg_ros.ros.tools.client import ConverSegClient, describe, save_rgb
from converseg_ros.ros.tools.node_command import node_command, node_env

REPO = Path(__file__).resolve().parents[3]
SCENES: dict[str, list[str]] = {
    "coffee": ["the cup I could drink from", "a surface where I could put a hot cup down"],
    "chelsea": ["the animal that might scratch me"],
    "astronaut": ["the person's face", "something I could grab and hold"],
    "rocket": ["the thing that is about to fly"],
}
NAMESPACE = "/converseg"


def pick_preset(wanted: str) -> tuple[str, bool]:
    """(preset, trained): ``wanted`` if its files are local (no download), else tiny."""
    from converseg_ros.modeling.presets import load_preset, resolve_files

    if wanted != "tiny":
        try:
            spec = load_preset(wanted)
            resolve_files(spec, allow_download=False)
            return wanted, bool(spec.trained)
        except Exception as exc:  # noqa: BLE001 - any reason means: not usable offline
            print(f"[demo] {wanted} weights not available locally ({type(exc).__name__}: {str(exc)[:160]})")
    return "tiny", False


def start(cmd: list[str], log: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
    """Start a process in its own session, output to ``log``."""
    return subprocess.Popen(
        cmd,
        stdout=open(log, "w"),
        stderr=subprocess.STDOUT,  # noqa: SIM115
        start_new_session=True,
        env=env,
    )


def stop(proc: subprocess.Popen) -> None:
    """SIGINT the process group, then kill it if needed."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="converseg-demo", description=__doc__)
    p.add_argument("--out", default=str(REPO / "out" / "demo"), help="output folder (default out/demo)")
    p.add_argument("--preset", default="converseg-3b", help="preferred preset (falls back to tiny)")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument("--max-width", type=int, default=640, help="downscale photos wider than this")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run the demo; returns 0 when every query was answered."""
    args = parse_args(sys.argv[1:] if argv is None else argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    preset, trained = pick_preset(args.preset)
    if not trained:
        print(
            "="
            * 78
            + f"\n[demo] Using the '{preset}' preset: RANDOM, UNTRAINED weights. The pipeline is real\n"
            "[demo] (ROS node, replay, service, overlays) but its masks carry NO meaning.\n"
            "[demo] Put the converseg-3b release in the Hugging Face cache to see real answers.\n" + "=" * 78
        )
    py = sys.executable
    node = start(
        node_command(NAMESPACE, {"preset": preset, "device": args.device, "service_timeout_s": 900.0}),
        out / "node.log",
        node_env(),
    )
    rclpy.init()
    helper = Node("converseg_demo")
    client = ConverSegClient(helper, NAMESPACE)
    summary, failures = [], 0
    try:
        print(f"[demo] starting converseg_node ({preset}); log: {out / 'node.log'}")
        if not client.wait_for_service(900.0):
            print("[demo] the node did not come up; see node.log", file=sys.stderr)
            return 2
        for scene, queries in SCENES.items():
            replay = start(
                [
                    py,
                    "-m",
                    "converseg_ros.ros.tools.replay",
                    "--skimage",
                    scene,
                    "--rate",
                    "5",
                    "--hold",
                    "3600",
                    "--max-width",
                    str(args.max_width),
                    "--topic",
                    f"{NAMESPACE}/image",
                    "--frame-id",
                    f"demo_camera_{scene}",
                    "--wait-subscriber",
                    "30",
                ],
                out / f"replay_{scene}.log",
            )
            try:
                for k, query in enumerate(queries):
                    t0 = time.monotonic()
                    resp = client.segment(
                        query,
                        frame_policy="next",
                        timeout_s=900.0,
                        return_overlay=True,
                        query_id=f"{scene}-{k}",
                    )
                    wall = time.monotonic() - t0
                    print(
                        describe(resp.result) if resp.success else f"[demo] {query!r}: FAILED {resp.message}"
                    )
                    entry = {
                        "scene": scene,
                        "query": query,
                        "success": resp.success,
                        "message": resp.message,
                        "wall_s": round(wall, 2),
                        "score": resp.result.score,
                        "regions": len(resp.result.regions),
                        "latency_ms": round(resp.result.latency_ms, 1),
                    }
                    if resp.success and resp.overlay.height:
                        path = out / f"{scene}_{k}.png"
                        save_rgb(resp.overlay, str(path))
                        entry["overlay"] = str(path)
                        print(f"  overlay: {path}")
                    else:
                        failures += 1
                    summary.append(entry)
            finally:
                stop(replay)
    finally:
        (out / "summary.json").write_text(
            json.dumps({"preset": preset, "trained": trained, "results": summary}, indent=2)
        )
        helper.destroy_node()
        rclpy.try_shutdown()
        stop(node)
    answered = len(summary) - failures
    print(f"[demo] {answered}/{len(summary)} queries answered; overlays and summary.json in {out}")
    if not trained:
        print(f"[demo] reminder: '{preset}' is untrained - the masks above are noise, not answers.")
    return 0 if failures == 0 and summary else 1


if __name__ == "__main__":
    sys.exit(main())
