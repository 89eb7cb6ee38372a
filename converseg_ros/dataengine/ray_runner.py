"""Many machines: ``converseg-data run ... --ray N`` runs N shards as Ray tasks.

Each task is the ordinary single-machine run with ``--shard i/N`` into ``RUN/shard-i-of-N`` (so every shard
is resumable on its own, and ``status`` / ``review`` / ``export`` take ``RUN`` and find the shards). The
inputs must be readable at the same path on every node (a shared file system or object-store mount); the
VLM endpoint and the API key's environment variable must be set on every node. Ray is optional: install
``ray`` where you use it. Connects to ``--ray-address`` / ``RAY_ADDRESS`` or starts a local instance
bound to 127.0.0.1.
"""

from __future__ import annotations

import os
from pathlib import Path

from converseg_ros.errors import ConverSegError

_DROP = {"--ray": 1, "--ray-address": 1, "--out": 1, "--shard": 1, "--resume": 0}
_PATHS = {"--images", "--bag", "--droid", "--sam2-checkpoint"}  # made absolute: tasks may run elsewhere


def shard_argv(argv: list[str], out: Path, index: int, count: int) -> list[str]:
    """The single-shard command line: ``--ray*``, ``--out``, ``--shard`` replaced."""
    kept, skip, path_next = [], 0, False
    for arg in argv:
        if skip:
            skip -= 1
            continue
        if path_next:
            kept.append(str(Path(arg).resolve()))
            path_next = False
            continue
        name, eq, value = arg.partition("=")
        if name in _DROP:
            skip = _DROP[name] if not eq else 0
            continue
        if name in _PATHS:
            kept.append(f"{name}={Path(value).resolve()}" if eq else arg)
            path_next = not eq
            continue
        kept.append(arg)
    shard_dir = out / f"shard-{index}-of-{count}"
    resume = ["--resume"] if (shard_dir / "run.json").is_file() else []
    return ["run", *kept, "--out", str(shard_dir), "--shard", f"{index}/{count}", "--no-progress", *resume]


def _run_shard(argv: list[str]) -> dict:
    """Body of one Ray task: the normal CLI, then the shard's manifest counts."""
    from converseg_ros.dataengine.cli import main
    from converseg_ros.dataengine.store import RunStore

    code = main(argv)
    out = Path(argv[argv.index("--out") + 1])
    manifest = RunStore(out).manifest()
    return {"shard": str(out), "exit_code": code, "counts": manifest["counts"], "samples": manifest["samples"]}


def run_on_ray(argv: list[str], out: Path, count: int, address: str | None = None) -> dict:
    """Run every shard as a Ray task and wait for all of them."""
    try:
        import ray
    except ImportError as exc:
        raise ConverSegError("--ray needs the 'ray' package (pip install ray)") from exc
    if count < 1:
        raise ConverSegError("--ray needs a shard count >= 1")
    out = Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    address = address or os.environ.get("RAY_ADDRESS")
    started_here = not ray.is_initialized()
    if started_here:
        if address:
            ray.init(address=address, log_to_driver=False)
        else:  # a local instance that stays on this machine
            ray.init(_node_ip_address="127.0.0.1", include_dashboard=False, log_to_driver=False)
    try:
        task = ray.remote(num_cpus=1)(_run_shard)
        refs = [task.remote(shard_argv(argv, out, i, count)) for i in range(count)]
        return {"run": str(out), "shards": ray.get(refs)}
    finally:
        if started_here:
            ray.shutdown()
