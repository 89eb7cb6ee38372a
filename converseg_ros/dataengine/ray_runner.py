"""Many machines: ``converseg-data run ... --ray N`` runs N shards as Ray tasks.

Each task calls ``runner.run_local`` with the driver's resolved configuration (paths already absolute) and
``shard = i/N`` into ``RUN/shard-i-of-N`` — every shard is resumable on its own, and ``status`` / ``review`` /
``export`` take ``RUN`` and find the shards. A shard claims whole episodes before decoding anything. Every VLM
request of every task is reported to a small progress actor that the driver shows as one progress bar.
``--max-cost`` is split evenly between the shards. Inputs must be readable at the same path on every node;
the VLM endpoint and the API key's environment variable must be set on every node. Ray is optional: install
``ray`` where you use it. Connects to ``--ray-address`` / ``RAY_ADDRESS`` or starts a local instance bound to
127.0.0.1 only (no dashboard).
"""

from __future__ import annotations

import os
from pathlib import Path

from tqdm import tqdm

from converseg_ros.dataengine import runner
from converseg_ros.dataengine.store import RunStore
from converseg_ros.errors import ConverSegError

LOOPBACK = "127.0.0.1"
LOCAL_ONLY_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"  # 0: a single-node instance on the loopback address


class Progress:
    """Latest accounting per shard (a Ray actor): tasks push after every request, the driver polls."""

    def __init__(self):
        self.shards: dict[str, dict] = {}

    def update(self, shard: str, summary: dict) -> None:
        self.shards[shard] = summary

    def totals(self) -> dict:
        keys = ("attempts", "retries", "input_tokens", "output_tokens", "cost_usd")
        return {k: sum(s.get(k, 0) for s in self.shards.values()) for k in keys}


def shard_config(cfg: dict, index: int, count: int) -> dict:
    """The configuration of shard ``index`` of ``count``."""
    budget = cfg["max_cost"] / count if cfg["max_cost"] is not None else None
    return {**cfg, "shard": f"{index}/{count}", "ray": None, "ray_address": None, "progress": False,
            "max_cost": budget}


def run_shard(cfg: dict, out: str, progress=None) -> dict:
    """Body of one Ray task: the ordinary run of one shard, then its manifest counts."""
    shard_dir = Path(out)
    resume = RunStore(shard_dir).run_info() is not None and RunStore(shard_dir).run_info().get("state") == "ready"
    hook = (lambda acc: progress.update.remote(shard_dir.name, acc)) if progress is not None else None
    code, error = 0, None
    try:
        runner.run_local(cfg, shard_dir, resume, on_attempt=hook)
    except ConverSegError as exc:
        code, error = 2, str(exc)
    manifest = RunStore(shard_dir).manifest() if (shard_dir / "inputs.json").is_file() else {
        "counts": {"done": 0, "failed": 0, "pending": 0}, "samples": 0}
    return {"shard": str(shard_dir), "exit_code": code, "error": error, "counts": manifest["counts"],
            "samples": manifest["samples"]}


def _init(ray, address: str | None) -> None:
    if address:
        ray.init(address=address, log_to_driver=False)
        return
    # Ray turns a 127.0.0.1 node address into the machine's reachable IP (and its servers then listen on every
    # interface) unless clustering is off; with it off, GCS, raylet, workers and agents listen on 127.0.0.1.
    ray.init(_node_ip_address=LOOPBACK, include_dashboard=False, log_to_driver=False)
    node_ip = ray.util.get_node_ip_address()
    if node_ip != LOOPBACK:
        ray.shutdown()
        raise ConverSegError(f"the local Ray instance came up on {node_ip}, not {LOOPBACK} (ray was imported before "
                             f"{LOCAL_ONLY_ENV}=0 could be set); set it in the environment, or start Ray yourself "
                             "and pass --ray-address")


def run_on_ray(cfg: dict, out: Path, count: int, address: str | None = None, show_progress: bool = True) -> dict:
    """Run every shard as a Ray task and wait for all of them."""
    address = address or os.environ.get("RAY_ADDRESS")
    if not address:
        os.environ.setdefault(LOCAL_ONLY_ENV, "0")  # read when ray is imported
    try:
        import ray
    except ImportError as exc:
        raise ConverSegError("--ray needs the 'ray' package (pip install ray)") from exc
    if count < 1:
        raise ConverSegError("--ray needs a shard count >= 1")
    out = Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    started_here = not ray.is_initialized()
    if started_here:
        _init(ray, address)
    try:
        actor = ray.remote(num_cpus=0)(Progress).remote()
        task = ray.remote(num_cpus=1)(run_shard)
        refs = [task.remote(shard_config(cfg, i, count), str(out / f"shard-{i}-of-{count}"), actor)
                for i in range(count)]
        bar = tqdm(unit="req", desc="converseg-data (ray)", disable=not show_progress, dynamic_ncols=True)
        pending = list(refs)
        while pending:
            _, pending = ray.wait(pending, timeout=0.5)
            totals = ray.get(actor.totals.remote())
            bar.n = totals["attempts"]
            bar.set_postfix(tokens=totals["input_tokens"] + totals["output_tokens"], cost=f"${totals['cost_usd']:.4f}")
        bar.close()
        totals = ray.get(actor.totals.remote())
        return {"run": str(out), "ray_node_ip": ray.util.get_node_ip_address(), "shards": ray.get(refs),
                "vlm_requests_seen": totals}
    finally:
        if started_here:
            ray.shutdown()
