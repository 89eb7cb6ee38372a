"""The hot swap's ROS side: the model parameters (``preset``, ``release``, ``model_overrides``) changed at run
time start a swap in the serving core (:class:`~converseg_ros.serving.swap.ModelKeeper`); each step is
published on the latched ``model_status``, logged and shown in the diagnostics; a swap that fails puts the
parameters back to the model still serving. A change is refused at once (the parameter set fails with the
reason) while a swap is under way, for an unknown preset and when ``release`` is not a release folder."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rclpy.parameter import Parameter

from converseg_ros.ros.msgs.interfaces import ModelStatus
from converseg_ros.serving.model import ModelRequest, quick_check
from converseg_ros.serving.queries import Batch, clip
from converseg_ros.serving.swap import ModelKeeper, ServedModel, SwapReport

MODEL_PARAMS = ("preset", "release", "model_overrides")


class ModelSwitch:
    """Loads the model at activation and swaps it at run time for ``node`` (``publish``: the ModelStatus
    publisher; ``log(text, warning)``)."""

    def __init__(self, node: Any, worker: Any, publish: Callable[[ModelStatus], None], warmup: bool,
                 log: Callable[[str, bool], None]) -> None:
        self._node, self._worker, self._publish, self._log = node, worker, publish, log
        self.keeper = ModelKeeper(worker, self._report, warmup)
        self._serving_params: dict[str, str] = {}  # the model parameters of the model serving
        self._asked: dict[str, str] = {}  # ... of the swap under way
        self.last: SwapReport | None = None

    @property
    def current(self) -> ServedModel | None:
        return self.keeper.current

    def activate(self, request: ModelRequest, cfg: Any) -> ServedModel:
        """Load the model (raises with the reason) and serve it."""
        model = self.keeper.load(request)
        self._worker.start(model.engine, model.label)
        self._serving_params = self._params(cfg)
        self._report(SwapReport("serving", model.label, model.label, cfg.swap_mode, load_s=round(model.load_s, 3),
                                warmup_s=round(model.warmup_s, 3)))
        return model

    def free(self) -> None:
        """Free the model (after the worker stopped serving it); a swap under way ends first."""
        self.keeper.free()

    def refuse(self, names: list[str], cfg: Any, request: Callable[[Any], ModelRequest]) -> str | None:
        """Why a change of the model parameters cannot be made now (None: it can)."""
        if not set(names) & set(MODEL_PARAMS):
            return None
        if self.keeper.busy:
            return f"a model swap is under way ({self.last.requested if self.last else ''}); try again when " \
                   "model_status says serving or failed"
        try:
            quick_check(request(cfg))
        except Exception as exc:  # noqa: BLE001 - the reason goes back to the caller
            return f"{type(exc).__name__}: {exc}"
        return None

    def apply(self, names: list[str], cfg: Any, request: ModelRequest) -> None:
        """Accepted model parameters: swap while serving (inactive: the next activation loads them)."""
        if not set(names) & set(MODEL_PARAMS) or self.keeper.current is None:
            return
        asked = self._params(cfg)
        if asked == self._serving_params:
            return  # (parameters put back after a failed swap, or set to what serves)
        self._asked = asked
        why = self.keeper.swap(request, cfg.swap_mode)
        if why is not None:
            self._log(f"model not swapped: {why}", True)

    def observe(self, batch: Batch) -> None:
        """A published batch (the swap's gap is measured on them)."""
        self.keeper.observe(batch)

    def diagnostics(self) -> dict[str, str]:
        last = self.last
        if last is None:
            return {}
        return {"model": last.model, "model_state": last.state, "model_requested": last.requested,
                "swap_message": clip(last.message, 300), "swap_gap_frames": str(last.gap_frames),
                "swap_gap_ms": f"{last.gap_ms:.0f}", "swap_peak_rss_mb": f"{last.memory.get('rss_peak_mb', 0):.0f}"}

    @property
    def warning(self) -> str:
        """A failed swap, for the diagnostics' level (until the next change)."""
        last = self.last
        return f"model swap failed: {clip(last.message, 200)}" if last is not None and last.state == "failed" else ""

    # -- reports (swap thread, publishing thread) ------------------------------------------------------
    def _report(self, report: SwapReport) -> None:
        self.last = report
        memory = report.memory
        msg = ModelStatus(
            state=report.state, model=report.model, requested=report.requested, swap_mode=report.mode,
            message=report.message, load_s=report.load_s, warmup_s=report.warmup_s,
            rss_before_mb=memory.get("rss_before_mb", 0.0), rss_peak_mb=memory.get("rss_peak_mb", 0.0),
            rss_after_mb=memory.get("rss_after_mb", 0.0), gpu_before_mb=memory.get("cuda_before_mb", 0.0),
            gpu_peak_mb=memory.get("cuda_peak_mb", 0.0), gpu_after_mb=memory.get("cuda_after_mb", 0.0),
            gap_frames=report.gap_frames, gap_ms=report.gap_ms, gap_camera=report.gap_camera,
        )
        msg.header.stamp = self._node.get_clock().now().to_msg()
        self._publish(msg)
        if report.state == "loading":
            self._log(f"model swap ({report.mode}): loading {report.requested} while {report.model} answers"
                      if report.mode == "both" else f"model swap (pause): {report.model} freed, loading "
                      f"{report.requested}", False)
        elif report.state == "failed":
            self._log(f"model swap to {report.requested} failed: {report.message}", True)
            self._put_back()
        else:
            gap = (f"answers resumed after {report.gap_frames} frame(s) / {report.gap_ms:.0f} ms on camera "
                   f"'{report.gap_camera}'") if report.gap_frames >= 0 else ""
            if self._asked or report.gap_frames < 0:  # (a load; else the gap found after it)
                peak = f"; peak RSS {memory['rss_peak_mb']:.0f} MB" if "rss_peak_mb" in memory else ""
                self._log(f"model loaded in {report.load_s:.1f} s, warm-up {report.warmup_s:.1f} s: serving "
                          f"{report.model}{peak}" + (f"; {gap}" if gap else ""), False)
            else:
                self._log(f"{report.model}: {gap}", False)
            self._serving_params, self._asked = self._asked or self._serving_params, {}

    def _put_back(self) -> None:
        """The parameters say what serves again."""
        self._asked = {}
        back = [Parameter(name, value=value) for name, value in self._serving_params.items()]
        result = self._node.set_parameters_atomically(back)  # (one by one, each would start a swap)
        if not result.successful:
            self._log(f"model parameters not put back: {result.reason}", True)

    @staticmethod
    def _params(cfg: Any) -> dict[str, str]:
        return {"preset": cfg.preset, "release": cfg.release, "model_overrides": cfg.model_overrides}

