"""The improvement loop's stages, each a command of this package run in its own process, each resumable:

1. ``data``: ``converseg-data run`` over the recording sessions (the recorded frames, their queries as the
   instruction) — one run per set of camera topics; continued with ``--resume``.
2. ``export``: ``converseg-data export`` split by episode = by recording session (no session on both sides),
   or everything to training when a fixed held-out ``items.json`` is given.
3. ``train``: ``converseg-train`` from the baseline release (``--init``) on the exported training set;
   continued from its last checkpoint with ``--resume``.
4. ``promote``: ``converseg-train promote`` of the run against the baseline on the held-out items; the release
   is written only when it is better (exit 0 promoted, 3 refused).

The state (each stage's outcome and time) is kept in ``<work>/improve.json``, written after every stage; a
rerun with ``--resume`` skips finished stages and continues the one under way. Each stage's output goes to
``<work>/logs/<stage>.log``. An interrupt (Ctrl-C, SIGTERM) reaches the stage's process as SIGINT first (a
training run saves its step) and leaves the state resumable.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from converseg_ros.errors import ConverSegError
from converseg_ros.improve.recordings import Session, groups
from converseg_ros.modeling.atomic import atomic_write_bytes
from converseg_ros.serving.recording.bag import QUERY_TOPIC

STAGES = ("data", "export", "train", "promote")
STATE_FILE = "improve.json"
EXIT_PROMOTED, EXIT_REFUSED = 0, 3


class StageError(ConverSegError):
    """A stage's command failed (its log names why)."""


@dataclass
class Plan:
    """Everything the loop was asked to do (stored with the state: a resume must ask for the same)."""

    recordings: str
    baseline: str
    work: str
    release: str
    preset: str
    data_args: list[str]
    train_args: list[str]
    promote_args: list[str]
    heldout: str | None = None
    eval_fraction: float = 0.3
    seed: int = 0
    sessions: list[str] = field(default_factory=list)

    def key(self) -> dict[str, Any]:
        """What must not change on a resume."""
        return {k: v for k, v in self.__dict__.items()}


class Loop:
    """Runs the stages of ``plan`` over ``sessions`` (``say``: progress lines)."""

    def __init__(self, plan: Plan, sessions: list[Session], resume: bool, say: Callable[[str], None] = print):
        self.plan, self.sessions, self.say = plan, sessions, say
        self.work = Path(plan.work)
        self.state_path = self.work / STATE_FILE
        if self.state_path.exists() and not resume:
            raise ConverSegError(f"{self.work} holds a loop already; continue it with --resume or choose another "
                                 "--out")
        if resume and not self.state_path.exists():
            raise ConverSegError(f"--resume: {self.work} holds no loop ({STATE_FILE} missing)")
        self.state: dict[str, Any] = {"plan": plan.key(), "stages": {}}
        if resume:
            self.state = json.loads(self.state_path.read_text())
            changed = [k for k, v in plan.key().items() if self.state["plan"].get(k) != v]
            if changed:
                raise ConverSegError(f"--resume with different {', '.join(changed)} than the loop in {self.work} "
                                     "was started with; start a new --out instead")
        (self.work / "logs").mkdir(parents=True, exist_ok=True)
        self._save()

    # -- the stages ----------------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        """Every stage not done yet, in order; the final state."""
        for stage in STAGES:
            done = self.state["stages"].get(stage, {})
            if done.get("done"):
                self.say(f"[improve] {stage}: done before ({done['seconds']:.0f} s): {done['summary']}")
                continue
            self.say(f"[improve] {stage}: {'continuing' if done else 'running'} (log: "
                     f"{self.work / 'logs' / (stage + '.log')})")
            t0 = time.monotonic()
            try:
                result = getattr(self, f"_{stage}")()
            except BaseException:  # stopped or failed: the time spent so far counts when it is continued
                self.state["stages"][stage] = {"done": False, "seconds_before": round(
                    time.monotonic() - t0 + done.get("seconds_before", 0.0), 1)}
                self._save()
                raise
            seconds = round(time.monotonic() - t0 + done.get("seconds_before", 0.0), 1)
            self.state["stages"][stage] = {"done": True, "seconds": seconds, **result}
            self._save()
            self.say(f"[improve] {stage}: {result['summary']} ({seconds:.0f} s)")
        return self.state

    def _data(self) -> dict[str, Any]:
        runs, totals = [], {"done": 0, "failed": 0, "pending": 0, "samples": 0, "duplicates_left_out": 0}
        for k, (topics, members) in enumerate(groups(self.sessions)):
            out = self.work / "data" / f"run{k}"
            args = ["run", "--out", str(out), *(a for s in members for a in ("--bag", str(s.path))),
                    *(a for t in topics for a in ("--topic", t)), "--instruction-topic", QUERY_TOPIC,
                    "--every-s", "0", "--no-progress", *self.plan.data_args]
            if (out / "run.json").exists():
                args.append("--resume")
            result = json.loads(self._command("data", "converseg_ros.dataengine.cli", args))
            for key in totals:
                totals[key] += int(result.get(key, 0))
            if result.get("pending"):
                raise StageError(f"data: {result['pending']} frame(s) of {out} still pending (a --max-cost or "
                                 "--rpm stop, or failures to retry): continue with --resume")
            runs.append(str(out))
        frames = sum(s.frames for s in self.sessions)
        summary = (f"{len(self.sessions)} session(s), {frames} recorded frame(s) -> {totals['done']} processed "
                   f"({totals['duplicates_left_out']} duplicate frame(s) left out), {totals['failed']} failed, "
                   f"{totals['samples']} sample(s)")
        return {"summary": summary, "runs": runs, "counts": totals, "frames": frames}

    def _export(self) -> dict[str, Any]:
        runs = self.state["stages"]["data"]["runs"]
        folder = self.work / "dataset"
        train, items = folder / "dataset.jsonl", folder / "eval" / "items.json"
        args = ["export", *runs, "--train", str(train), "--split-by", "episode", "--seed", str(self.plan.seed)]
        if self.plan.heldout is None:
            args += ["--items", str(items), "--eval-fraction", str(self.plan.eval_fraction)]
        result = json.loads(self._command("export", "converseg_ros.dataengine.cli", args))
        exported = result["exported"]
        if not exported.get("train"):
            raise StageError("export: no training sample (too few recordings, or every sample failed)")
        if self.plan.heldout is None and not exported.get("eval"):
            raise StageError("export: no held-out sample: the split is by recording session and needs at least "
                             "two sessions with samples (or give --heldout items.json)")
        groups_ = result.get("split", {}).get("groups", {})
        summary = (f"{exported.get('train', 0)} training / {exported.get('eval', 0)} held-out sample(s), split by "
                   f"session ({groups_.get('train', 0)} / {groups_.get('eval', 0)} session(s))"
                   if self.plan.heldout is None else f"{exported['train']} training sample(s); held out: "
                   f"{self.plan.heldout}")
        return {"summary": summary, "train": str(train), "items": self.plan.heldout or str(items),
                "exported": exported, "groups": groups_}

    def _train(self) -> dict[str, Any]:
        out = self.work / "train"
        args = ["--preset", self.plan.preset, "--init", self.plan.baseline, "--data",
                self.state["stages"]["export"]["train"], "--out", str(out), *self.plan.train_args]
        if (out / "checkpoints").is_dir():
            args.append("--resume")
        printed = self._command("train", "converseg_ros.training.cli", args)
        final = [line.split("done: ", 1)[1] for line in printed.splitlines() if line.startswith("done: ")]
        checkpoint = final[-1] if final else ""
        step = int(checkpoint.rsplit("step_", 1)[-1]) if "step_" in checkpoint else -1
        return {"summary": f"{step} step(s) from {Path(self.plan.baseline).name} -> {checkpoint}",
                "run": str(out), "checkpoint": checkpoint, "steps": step}

    def _promote(self) -> dict[str, Any]:
        release = Path(self.plan.release)
        report_path = release.with_name(release.name + ".promotion.json")
        if not report_path.exists():  # (a report means promote finished before: its verdict stands)
            args = ["promote", self.state["stages"]["train"]["run"], "--baseline", self.plan.baseline, "--items",
                    self.state["stages"]["export"]["items"], "--to", str(release), "--preset", self.plan.preset,
                    *self.plan.promote_args]
            self._command("promote", "converseg_ros.training.cli", args, ok=(EXIT_PROMOTED, EXIT_REFUSED))
        report = json.loads(report_path.read_text())
        giou = report["scores"]["giou"]
        before, after = 100 * giou["baseline"]["all"], 100 * giou["candidate"]["all"]
        promoted = report["verdict"] == "promoted"
        summary = (f"{report['verdict']}: gIoU {before:.2f} -> {after:.2f} on {report['scores']['count']['all']} "
                   f"held-out item(s)" + ("" if promoted else f"; {'; '.join(report['reasons'])}"))
        return {"summary": summary, "promoted": promoted, "release": str(release) if promoted else "",
                "reasons": report["reasons"], "report": str(report_path), "giou": [before, after]}

    # -- plumbing ------------------------------------------------------------------------------------
    def _command(self, stage: str, module: str, args: list[str], ok: tuple[int, ...] = (0,)) -> str:
        """Run ``python -m module args`` (its stderr to the stage's log); its stdout. A Ctrl-C/SIGTERM reaches
        it as SIGINT (training saves its step), then the loop stops resumably."""
        log = self.work / "logs" / f"{stage}.log"
        with open(log, "a", encoding="utf-8") as err:
            err.write(f"$ {module} {' '.join(args)}\n")
            err.flush()
            proc = subprocess.Popen([sys.executable, "-m", module, *args], stdout=subprocess.PIPE, stderr=err,
                                    text=True, env=os.environ.copy())
            try:
                out, _ = proc.communicate()
            except BaseException:
                proc.send_signal(signal.SIGINT)
                try:
                    proc.wait(60)
                except subprocess.TimeoutExpired:
                    proc.kill()
                raise
        if proc.returncode not in ok:
            tail = "\n".join(log.read_text().splitlines()[-15:])
            raise StageError(f"{stage}: {module} exited with {proc.returncode}:\n{tail}\n(full log: {log}; fix "
                             "and continue with --resume)")
        return out

    def _save(self) -> None:
        atomic_write_bytes(self.state_path, json.dumps(self.state, indent=1).encode())
