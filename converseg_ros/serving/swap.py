"""The served model, and its replacement while the node keeps serving. Plain Python.

:class:`ModelKeeper` is the one owner of the loaded model: activation loads it (:meth:`ModelKeeper.load`),
deactivation frees it, and :meth:`ModelKeeper.swap` replaces it at run time on a background thread:

* ``swap_mode: both`` (default): the new model loads and warms up while the old one keeps answering; the
  worker then swaps them between two frames and the old one is freed. Peak memory: both models at once.
* ``swap_mode: pause``: the worker pauses between two frames, the old model is freed, then the new one loads
  (peak memory: one model; nothing is answered while it loads — standing queries wait, once-queries keep
  their deadlines).

Standing queries carry over (the worker's query book), tracked ones are grounded again on the new model. A
model that fails to load leaves the old one serving (in ``pause`` mode the old one is loaded again) and the
report says why. Every step is reported (:class:`SwapReport`: loading, serving, failed) with load and warm-up
times and memory before / at peak / after; the gap between the last answer of the old model and the first of
the new one (camera frames in between, and milliseconds between their publication — counted from the swap when
the camera had been idle) follows when that answer is published (:meth:`ModelKeeper.observe`).
"""

from __future__ import annotations

import gc
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from converseg_ros.serving.model import ModelChoice, ModelRequest, check_model, load_engine
from converseg_ros.serving.queries import Batch
from converseg_ros.serving.stats import free_accelerator_cache, release_host_memory

SWAP_MODES = ("both", "pause")


@dataclass(frozen=True)
class ServedModel:
    """A loaded model: what was asked, what configure resolved, the engine, how long it took."""

    request: ModelRequest
    choice: ModelChoice
    engine: Any
    label: str
    load_s: float = 0.0
    warmup_s: float = 0.0


@dataclass(frozen=True)
class SwapReport:
    """Where a swap stands: ``loading``, ``serving`` (the new model answers) or ``failed`` (``message``)."""

    state: str
    model: str  # the model serving now ("" while paused without one)
    requested: str
    mode: str
    message: str = ""
    load_s: float = 0.0
    warmup_s: float = 0.0
    memory: dict[str, float] = field(default_factory=dict)  # MB: rss_before, rss_peak, rss_after, cuda_*
    gap_frames: int = -1  # camera frames between the old model's last answer and the new one's first
    gap_ms: float = -1.0  # time between their publication (-1: not known yet)
    gap_camera: str = ""


def load_model(request: ModelRequest, warmup: bool) -> ServedModel:
    """Check, load and (``warmup``) warm up the model ``request`` asks for (raises with the reason)."""
    choice = check_model(request)
    t0 = time.perf_counter()
    engine = load_engine(request, choice)
    load_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    try:
        if warmup:
            engine.warmup()
    except BaseException:
        close_engine(engine)
        raise
    return ServedModel(request, choice, engine, request.label, load_s, time.perf_counter() - t0)


def close_engine(engine: Any, warn: Callable[[str], None] | None = None) -> None:
    """Free an engine and the accelerator memory it held."""
    if engine is not None:
        try:
            engine.close()
        except Exception as exc:  # noqa: BLE001 - freeing is best effort
            if warn is not None:
                warn(f"engine.close failed: {exc}")
    gc.collect()
    free_accelerator_cache()
    release_host_memory()


class MemoryProbe:
    """Process memory around a swap: resident set (its peak through the kernel's high-water mark, reset at
    the start when the kernel allows, else the largest sample) and, on CUDA, allocated memory and its peak."""

    def __init__(self) -> None:
        self._samples: list[float] = []
        self._before: dict[str, float] = {}

    @staticmethod
    def _status_mb(key: str) -> float:
        try:
            for line in Path("/proc/self/status").read_text().splitlines():
                if line.startswith(key + ":"):
                    return int(line.split()[1]) / 1024.0
        except OSError:
            pass
        return 0.0

    @staticmethod
    def _cuda() -> Any:
        try:
            import torch

            return torch.cuda if torch.cuda.is_available() and torch.cuda.is_initialized() else None
        except Exception:  # noqa: BLE001
            return None

    def start(self) -> None:
        try:  # "5" resets the peak resident set size (VmHWM) of this process
            Path("/proc/self/clear_refs").write_text("5")
            self._hwm_reset = True
        except OSError:
            self._hwm_reset = False
        cuda = self._cuda()
        if cuda is not None:
            cuda.reset_peak_memory_stats()
        self._before = self.now()
        self._samples = [self._before["rss"]]

    def sample(self) -> None:
        self._samples.append(self.now()["rss"])

    def now(self) -> dict[str, float]:
        values = {"rss": self._status_mb("VmRSS")}
        cuda = self._cuda()
        if cuda is not None:
            values["cuda"] = cuda.memory_allocated() / 2**20
        return values

    def finish(self) -> dict[str, float]:
        after = self.now()
        peak = max(self._samples + [after["rss"]])
        if getattr(self, "_hwm_reset", False):
            peak = max(peak, self._status_mb("VmHWM"))
        out = {"rss_before_mb": self._before.get("rss", 0.0), "rss_peak_mb": peak, "rss_after_mb": after["rss"]}
        cuda = self._cuda()
        if cuda is not None:
            out.update(cuda_before_mb=self._before.get("cuda", 0.0), cuda_peak_mb=cuda.max_memory_allocated() / 2**20,
                       cuda_after_mb=after.get("cuda", 0.0))
        return {k: round(v, 1) for k, v in out.items()}


class ModelKeeper:
    """Owns the served model of ``worker`` (an InferenceWorker); ``report`` hears every swap step (from the
    swap thread, or the publishing thread for the gap)."""

    def __init__(
        self,
        worker: Any,
        report: Callable[[SwapReport], None],
        warmup: bool = True,
        loader: Callable[[ModelRequest, bool], ServedModel] = load_model,
        free: Callable[[Any], None] = close_engine,
        probe: MemoryProbe | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._worker, self._report, self.warmup = worker, report, warmup
        self._loader, self._free, self._probe, self._clock = loader, free, probe or MemoryProbe(), clock
        self._lock = threading.Lock()
        self._current: ServedModel | None = None
        self._thread: threading.Thread | None = None
        self._busy = False  # a swap is under way (cleared just before its final report)
        self._generation = 0
        self._gap_label: str | None = None  # a swapped-in model whose first answer gives the gap
        self._gap_since = 0.0  # when the old model stopped answering at the latest (the gap starts here or later)
        self._gap_found: tuple[int, float, str] | None = None  # the gap, seen before the swap's final report
        self._final: SwapReport | None = None  # the final report, made before the gap was seen
        self._last: dict[str, tuple[str, int, float]] = {}  # camera -> (model, frame seq, published at)

    # -- activation / deactivation -------------------------------------------------------------------
    @property
    def current(self) -> ServedModel | None:
        with self._lock:
            return self._current

    def load(self, request: ModelRequest) -> ServedModel:
        """Load the model for activation (raises with the reason; nothing is kept then)."""
        model = self._loader(request, self.warmup)
        with self._lock:
            self._current = model
        return model

    def free(self) -> None:
        """Free the model (the worker must have stopped serving it)."""
        self.join()
        with self._lock:
            model, self._current = self._current, None
        if model is not None:
            self._free(model.engine)

    # -- swapping ------------------------------------------------------------------------------------
    @property
    def busy(self) -> bool:
        """A swap is under way (false again when its final report is made)."""
        with self._lock:
            return self._busy

    def swap(self, request: ModelRequest, mode: str = "both") -> str | None:
        """Start replacing the served model with ``request``'s; the reason it cannot, or None."""
        if mode not in SWAP_MODES:
            return f"swap_mode {mode!r} is not one of {', '.join(SWAP_MODES)}"
        with self._lock:
            if self._busy:
                return "a model swap is already under way"
            if self._current is None:
                return "no model is served (node inactive)"
            if self._current.request == request:
                return f"already serving {self._current.label}"
            self._busy = True
            self._thread = threading.Thread(target=self._run, args=(request, mode), name="converseg-swap",
                                            daemon=True)
            self._thread.start()
        return None

    def join(self, timeout: float | None = None) -> None:
        """Wait for a swap under way to end."""
        with self._lock:
            thread = self._thread
        if thread is not None:
            thread.join(timeout)

    def _label(self, request: ModelRequest) -> str:
        with self._lock:
            self._generation += 1
            same = self._current is not None and self._current.label == request.label
        return f"{request.label}#{self._generation}" if same else request.label

    def _run(self, request: ModelRequest, mode: str) -> None:
        try:
            final = self._swap(request, mode)
        except Exception as exc:  # noqa: BLE001 - a bug must still end the swap with a report
            final = SwapReport("failed", self._worker.model, request.label, mode, f"{type(exc).__name__}: {exc}")
        with self._lock:
            self._busy = False
            if final.state == "serving" and self._gap_found is not None:
                frames, ms, camera = self._gap_found
                final = replace(final, gap_frames=frames, gap_ms=ms, gap_camera=camera)
            elif final.state == "serving":
                self._final = final
            self._gap_found = None
        self._report(final)

    def _swap(self, request: ModelRequest, mode: str) -> SwapReport:
        old = self.current
        base = SwapReport("loading", old.label, request.label, mode)
        self._report(base)
        self._probe.start()
        if mode == "pause":
            self._gap_since = self._clock()
            installed, replaced = self._worker.swap(None, "")
            if not installed:
                return replace(base, state="failed", message="the node stopped serving during the swap")
            with self._lock:
                self._current = None
            self._free(replaced)
            base = replace(base, model="")
        try:
            new = self._loader(request, self.warmup)
        except Exception as exc:  # noqa: BLE001 - any load failure: the old model stays
            return self._failed(base, old, mode, f"cannot load {request.label}: {type(exc).__name__}: {exc}")
        self._probe.sample()
        new = replace(new, label=self._label(request))
        with self._lock:
            self._gap_label, self._gap_found, self._final = new.label, None, None
            if mode != "pause":
                self._gap_since = self._clock()
        installed, replaced = self._worker.swap(new.engine, new.label)
        if not installed:
            with self._lock:
                self._gap_label = None
            self._free(new.engine)
            return replace(base, state="failed", message="the node stopped serving during the swap")
        with self._lock:
            self._current = new
        if replaced is not None:
            self._free(replaced)
        return replace(base, state="serving", model=new.label, load_s=round(new.load_s, 3),
                       warmup_s=round(new.warmup_s, 3), memory=self._probe.finish())

    def _failed(self, base: SwapReport, old: ServedModel, mode: str, why: str) -> SwapReport:
        if mode == "pause":  # the old model was freed first: load it again
            try:
                back = self._loader(old.request, self.warmup)
            except Exception as exc:  # noqa: BLE001
                return replace(base, state="failed", model="", memory=self._probe.finish(),
                               message=f"{why}; the previous model could not be loaded again either: "
                                       f"{type(exc).__name__}: {exc} (no model is served)")
            self._worker.swap(back.engine, old.label)
            with self._lock:
                self._current = replace(back, label=old.label)
            why += f"; {old.label} loaded again"
        return replace(base, state="failed", model=old.label, memory=self._probe.finish(), message=why)

    # -- the gap ---------------------------------------------------------------------------------------
    def observe(self, batch: Batch) -> None:
        """A published batch (in publication order): after a swap, the first answer of the new model on a
        camera the old one answered gives the gap, reported once."""
        if not batch.outcomes or batch.frame is None:
            return
        now = self._clock()
        with self._lock:
            last = self._last.get(batch.camera)
            self._last[batch.camera] = (batch.model, batch.frame.seq, now)
            if self._gap_label is None or batch.model != self._gap_label or last is None or last[0] == batch.model:
                return
            self._gap_label = None
            frames = max(0, batch.frame.seq - last[1] - 1) if batch.frame.seq and last[1] else -1
            start = max(last[2], self._gap_since)  # (a camera idle before the swap: from the swap on)
            gap = (frames, round((now - start) * 1e3, 1), batch.camera)
            final, self._final = self._final, None
            if final is None:  # the swap has not made its final report yet: it will carry the gap
                self._gap_found = gap
                return
        self._report(replace(final, gap_frames=gap[0], gap_ms=gap[1], gap_camera=gap[2]))
