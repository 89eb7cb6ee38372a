"""Runs the five stages over every input: each image in isolation, K at a time, resumable stage by stage.

An image's finished stages are read back, not redone; a failure (unreadable image, a VLM that keeps
replying garbage, a SAM2 error, an item file that cannot be read — moved to its ``quarantine/``) marks only
that image failed with its stage and reason (credentials scrubbed). A configuration error of the VLM (bad
key, unknown model), the ``--max-cost`` budget and a full disk stop the run instead — every unfinished image
then stays pending for ``--resume``. The progress bar is refreshed after every VLM request.
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from datetime import datetime, timezone

from tqdm import tqdm

from converseg_ros.dataengine.inputs import InputImage
from converseg_ros.dataengine.overlays import downscale
from converseg_ros.dataengine.runfiles import DiskFullError, RunFileError, disk_full, is_disk_full
from converseg_ros.dataengine.scrub import scrub_text
from converseg_ros.dataengine.stages import STAGES
from converseg_ros.dataengine.stages.context import ItemFiles, StageContext, StageSettings
from converseg_ros.dataengine.store import DONE, FAILED, RunStore
from converseg_ros.dataengine.vlm import FatalVLMError, VLMClient
from converseg_ros.dataengine.vlm.accounting import add_summaries
from converseg_ros.imaging import decode_image

log = logging.getLogger(__name__)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class Pipeline:
    """One run session over a store."""

    def __init__(self, store: RunStore, client: VLMClient, segmenter, settings: StageSettings,
                 retry_failed: bool = False):
        self.store, self.client, self.segmenter, self.settings = store, client, segmenter, settings
        self.retry_failed = retry_failed
        self._summary_lock = threading.Lock()
        self._session: dict = {}
        self._previous_sessions: list[dict] = []

    # one image --------------------------------------------------------------------------------------
    def finished(self, item: InputImage) -> bool:
        """Nothing to do for this item (an unreadable status file is not finished: it is quarantined first)."""
        status = self.store.item_state(item.id)
        if status.get("quarantined"):
            return False
        if status.get("status") == DONE:
            try:  # its samples must still be readable (a bad stage file is quarantined, the item redone later)
                self.store.samples(item.id)
            except RunFileError:
                return False
            return True
        return status.get("status") == FAILED and not self.retry_failed

    def process(self, item: InputImage) -> dict:
        """Run the missing stages of one image; returns its status (raises only what stops the run)."""
        try:
            status = self.store.status(item.id)
        except RunFileError as exc:
            return self._quarantined(item, exc)
        if status and self.finished(item):
            return status
        self.store.set_status(item.id, None)  # a failed image being retried
        stage_label = "load"
        try:
            rgb = decode_image(self.store.image_path(item))
            vlm_rgb, factor = downscale(rgb, self.settings.vlm_max_side)
            ctx = StageContext(item.id, rgb, vlm_rgb, factor, self.client, ItemFiles(self.store.item_dir(item.id)),
                               self.settings, self.segmenter, instructions=item.instructions)
            outputs: dict[str, dict] = {}
            for n, (key, module) in enumerate(STAGES, 1):
                stage_label = f"{n} ({key})"
                out = self.store.read_stage(item.id, n, key)
                if out is None:
                    out = module.run(ctx, outputs)
                    self.store.write_stage(item.id, n, key, out)
                outputs[key] = out
        except (FatalVLMError, DiskFullError):
            raise
        except RunFileError as exc:
            return self._quarantined(item, exc)
        except Exception as exc:  # noqa: BLE001 - per-image isolation: record the reason, keep the run going
            if is_disk_full(exc):
                raise disk_full(exc, self.store.item_dir(item.id)) from exc
            status = {"status": FAILED, "stage": stage_label, "reason": scrub_text(f"{type(exc).__name__}: {exc}")}
            log.warning("%s failed at stage %s: %s", item.id, stage_label, status["reason"])
            self.store.set_status(item.id, status)
            return status
        samples = outputs["verify_prompts"]["samples"]
        status = {"status": DONE, "samples": len(samples)}
        if not outputs["verify_masks"]["regions"]:
            status["note"] = "no region passed mask verification"
        self.store.set_status(item.id, status)
        return status

    def _quarantined(self, item: InputImage, error: RunFileError) -> dict:
        """An unreadable item file: moved aside, the item failed at stage ``read`` (``--retry-failed`` redoes it)."""
        moved = self.store.quarantine(error)
        status = {"status": FAILED, "stage": "read", "reason": f"{error} (moved to {moved})"}
        log.warning("%s: %s", item.id, status["reason"])
        self.store.set_status(item.id, status)
        return status

    # the run ----------------------------------------------------------------------------------------
    def run(self, inputs: list[InputImage], workers: int = 1, progress: bool = True) -> dict:
        """Process every unfinished input; returns the manifest. Writes manifest + summary as it goes."""
        self._start_session(len(inputs))
        todo = [item for item in inputs if not self.finished(item)]
        counts = {DONE: 0, FAILED: 0}
        bar = tqdm(total=len(inputs), initial=len(inputs) - len(todo), unit="img", disable=not progress,
                   desc="converseg-data", dynamic_ncols=True)
        previous_hook = self.client.on_attempt

        def on_attempt(acc: dict) -> None:  # progress per VLM request, not only per image
            bar.set_postfix(done=counts[DONE], failed=counts[FAILED], calls=acc["attempts"], retries=acc["retries"],
                            tokens=acc["input_tokens"] + acc["output_tokens"], cost=f"${acc['cost_usd']:.4f}",
                            refresh=True)
            if previous_hook is not None:
                previous_hook(acc)

        self.client.on_attempt = on_attempt
        last_write = time.monotonic()
        pool = ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="dataengine")
        pending: set[Future] = set()
        queue = iter(todo)
        try:
            for item in queue:  # keep at most 2*workers submitted so a stop cancels little
                pending.add(pool.submit(self.process, item))
                if len(pending) >= 2 * max(1, workers):
                    break
            while pending:
                finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                for future in finished:
                    status = future.result()  # FatalVLMError surfaces here
                    counts[status["status"]] = counts.get(status["status"], 0) + 1
                    bar.update(1)
                    acc = self.client.accounting.summary()
                    bar.set_postfix(done=counts[DONE], failed=counts[FAILED], retries=acc["retries"],
                                    tokens=acc["input_tokens"] + acc["output_tokens"], cost=f"${acc['cost_usd']:.4f}")
                    nxt = next(queue, None)
                    if nxt is not None:
                        pending.add(pool.submit(self.process, nxt))
                self.write_summary(final=False)  # small: after every image, so a kill loses little accounting
                if time.monotonic() - last_write > 5.0:  # the manifest reads every item: every few seconds
                    self.store.write_manifest()
                    last_write = time.monotonic()
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
            bar.close()
            self.client.on_attempt = previous_hook
            self._final_writes()
        return self.store.manifest()

    def _final_writes(self) -> None:
        """Summary and manifest at the end of a session; a full disk here must not hide why the run stopped."""
        try:
            self.write_summary(final=True)
            self.store.write_manifest()
        except DiskFullError as exc:
            log.warning("%s", exc)

    # summary ----------------------------------------------------------------------------------------
    def _start_session(self, n_inputs: int) -> None:
        try:
            old = self.store.read("summary.json") or {}
        except RunFileError as exc:  # the accounting history is lost, the run is not
            log.warning("%s; the cost summary starts again (the file is kept as summary.json.bad)", exc)
            (self.store.root / "summary.json").replace(self.store.root / "summary.json.bad")
            old = {}
        self._previous_sessions = old.get("sessions", [])
        self._session = {"started": _now(), "finished": None, "inputs": n_inputs, "_t0": time.monotonic()}

    def write_summary(self, final: bool) -> dict:
        with self._summary_lock:
            session = {k: v for k, v in self._session.items() if not k.startswith("_")}
            session["wall_s"] = round(time.monotonic() - self._session["_t0"], 2)
            session["vlm"] = self.client.accounting.summary()
            if final:
                session["finished"] = _now()
            sessions = self._previous_sessions + [session]
            total: dict = {}
            for s in sessions:
                total = add_summaries(total, s["vlm"]) if total else dict(s["vlm"])
            summary = {"sessions": sessions, "total": total}
            self.store.write_json("summary.json", summary)
            return summary
