"""Swapping the model while serving, without ROS: the worker swaps between two frames keeping the continuous and
tracked queries (tracks grounded again on the new model), the new model's answers differ (other weights), a
pause holds once-queries until the new model serves, and the ModelKeeper loads in the background, reports
memory and the gap, and leaves the old model serving when the new one cannot load (both modes)."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from serving_rig import Rig, photo

from converseg_ros.serving.model import ModelRequest
from converseg_ros.serving.queries import MODE_TRACK, Job, Query
from converseg_ros.serving.settings import WorkerSettings
from converseg_ros.serving.swap import ModelKeeper, SwapReport, load_model

pytestmark = pytest.mark.timeout(300)
RGB = photo(96)


class Camera:
    """Puts the same photo on the rig's camera every ``period`` seconds (a still camera)."""

    def __init__(self, rig: Rig, period: float = 0.1) -> None:
        self.rig, self.period, self.frames = rig, period, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.frames += 1
            self.rig.put("", RGB, f"f{self.frames}")
            self._stop.wait(self.period)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)


def answers(rig: Rig, qid: str) -> list:
    with rig._published:  # noqa: SLF001 - the rig's own lock
        batches = list(rig.batches)
    return [(b.model, b.frame.seq, o) for b in batches for o in b.outcomes if o.query.id == qid]


def wait_answers(rig: Rig, qid: str, pred, timeout: float = 60.0) -> list:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while not pred(answers(rig, qid)):
        assert time.monotonic() < deadline, [(m, s, o.reason, o.error) for m, s, o in answers(rig, qid)][-10:]
        time.sleep(0.05)
    return answers(rig, qid)


def start_queries(rig: Rig) -> None:
    rig.worker.set_continuous(Query("c", "the cup on the saucer", time.time_ns()))
    assert rig.worker.start_track(Query("t", "the saucer", time.time_ns(), MODE_TRACK)) == {}


@pytest.fixture(scope="module")
def engine_b(tiny_release_b):  # noqa: ANN001, ANN201
    return load_model(ModelRequest("tiny", device="cpu", precision="fp32", release=str(tiny_release_b)), False).engine


def test_worker_swaps_between_frames_and_keeps_the_queries(tiny_engine, engine_b) -> None:  # noqa: ANN001
    rig = Rig(tiny_engine, [""], WorkerSettings(), count=False, start=False)
    rig.worker.start(tiny_engine, "tiny")
    camera = Camera(rig)
    try:
        start_queries(rig)
        wait_answers(rig, "t", lambda a: len(a) >= 3)
        installed, replaced = rig.worker.swap(engine_b, "tiny@tiny_b", timeout=60)
        assert installed and replaced is tiny_engine and rig.worker.model == "tiny@tiny_b"
        wait_answers(rig, "t", lambda a: sum(m == "tiny@tiny_b" for m, _, _ in a) >= 3)
        wait_answers(rig, "c", lambda a: sum(m == "tiny@tiny_b" for m, _, _ in a) >= 3)
    finally:
        camera.stop()
        rig.worker.stop()
    for qid in ("c", "t"):
        seq = answers(rig, qid)
        models = [m for m, _, _ in seq]
        switch = models.index("tiny@tiny_b")
        assert set(models[:switch]) == {"tiny"} and set(models[switch:]) == {"tiny@tiny_b"}  # one switch, no return
        assert all(o.error is None for _, _, o in seq)
    tracks = answers(rig, "t")
    first_b = next(o for m, _, o in tracks if m == "tiny@tiny_b")
    assert first_b.grounded and first_b.reason == "start"  # grounded again on the new model
    cont = answers(rig, "c")
    mask_a = next(o for m, _, o in cont if m == "tiny").output
    mask_b = next(o for m, _, o in cont if m == "tiny@tiny_b").output
    same_a = [o.output for m, _, o in cont if m == "tiny"]
    assert all(np.array_equal(o.mask, mask_a.mask) for o in same_a)  # a still camera: A always says the same
    assert not np.array_equal(mask_a.mask, mask_b.mask) or abs(mask_a.score - mask_b.score) > 1e-4


def test_pause_holds_jobs_until_a_model_serves(tiny_engine, engine_b) -> None:  # noqa: ANN001
    rig = Rig(tiny_engine, [""], WorkerSettings(), count=False, start=False)
    rig.worker.start(tiny_engine, "tiny")
    try:
        installed, replaced = rig.worker.swap(None, "", timeout=30)
        assert installed and replaced is tiny_engine and rig.worker.model == "" and rig.worker.running
        job = rig.worker.submit(Job(Query("o", "the cup", time.time_ns(), 1), frame_timeout_s=30.0))
        rig.put("", RGB, "paused")
        assert not job.done.wait(1.0)  # no model: the frame waits
        assert rig.worker.swap(engine_b, "tiny@tiny_b", timeout=30)[0]
        rig.put("", RGB, "served")  # (the paused frame is older than max_image_age_s by now)
        assert job.done.wait(30) and job.outcome.error is None and job.batch.model == "tiny@tiny_b"
    finally:
        rig.worker.stop()


def keeper_rig(tiny_engine, request: ModelRequest):  # noqa: ANN001, ANN201
    reports: list[SwapReport] = []
    lock = threading.Lock()

    def report(r: SwapReport) -> None:
        with lock:
            reports.append(r)

    keeper: ModelKeeper | None = None

    def publish(batch) -> None:  # noqa: ANN001
        rig._publish(batch)  # noqa: SLF001 - the rig collects, the keeper observes
        keeper.observe(batch)

    rig = Rig(tiny_engine, [""], WorkerSettings(), count=False, start=False, publish=publish)
    keeper = ModelKeeper(rig.worker, report, warmup=False)
    model = keeper.load(request)
    rig.worker.start(model.engine, model.label)
    return rig, keeper, reports


def wait_report(reports: list[SwapReport], pred, timeout: float = 120.0) -> SwapReport:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while True:
        found = [r for r in list(reports) if pred(r)]
        if found:
            return found[-1]
        assert time.monotonic() < deadline, reports
        time.sleep(0.05)


@pytest.mark.parametrize("mode", ["both", "pause"])
def test_keeper_swaps_in_the_background_and_reports(tiny_engine, tiny_release_b, corrupt_release, mode) -> None:  # noqa: ANN001
    a = ModelRequest("tiny", device="cpu", precision="fp32")
    b = ModelRequest("tiny", device="cpu", precision="fp32", release=str(tiny_release_b))
    bad = ModelRequest("tiny", device="cpu", precision="fp32", release=str(corrupt_release))
    rig, keeper, reports = keeper_rig(tiny_engine, a)
    camera = Camera(rig)
    try:
        start_queries(rig)
        wait_answers(rig, "c", lambda s: len(s) >= 2)
        assert keeper.swap(a) == "already serving tiny"
        assert keeper.swap(b, mode) is None
        done = wait_report(reports, lambda r: r.state == "serving" and r.gap_frames >= 0)
        assert (done.model, done.requested, done.mode) == ("tiny@tiny_b", "tiny@tiny_b", mode)
        assert done.load_s > 0 and done.memory["rss_peak_mb"] >= max(done.memory["rss_after_mb"], 1.0)
        assert 0 <= done.gap_frames < 100 and done.gap_ms > 0 and not keeper.busy
        assert [r.state for r in reports][0] == "loading" and keeper.current.label == "tiny@tiny_b"

        reports.clear()
        assert keeper.swap(bad, mode) is None
        failed = wait_report(reports, lambda r: r.state == "failed")
        assert "cannot load tiny@tiny_corrupt" in failed.message and "plm" in failed.message, failed.message
        assert failed.model == "tiny@tiny_b" and keeper.current.label == "tiny@tiny_b"
        if mode == "pause":
            assert failed.message.endswith("tiny@tiny_b loaded again")
        seen = len(answers(rig, "c"))
        after = wait_answers(rig, "c", lambda s: len(s) >= seen + 2)
        assert {m for m, _, _ in after[seen:]} == {"tiny@tiny_b"}  # the old model still serves
        wait_answers(rig, "t", lambda s: s[-1][0] == "tiny@tiny_b" and s[-1][2].error is None)
    finally:
        camera.stop()
        rig.worker.stop()
        keeper.free()


def test_keeper_refuses_a_second_swap_and_reports_a_lost_model(tiny_engine) -> None:  # noqa: ANN001
    """A loader that waits (a slow disk): a second swap is refused while the first runs; in pause mode a new
    model and the old one both failing to load is reported with no model served."""
    from converseg_ros.serving.model import ModelChoice
    from converseg_ros.serving.swap import ServedModel

    gate, calls = threading.Event(), []

    def loader(request: ModelRequest, warmup: bool) -> ServedModel:
        calls.append(request.label)
        if request.preset == "slow":
            gate.wait(30)
        if request.preset == "broken" or len(calls) > 3:
            raise OSError(f"cannot read {request.preset}")
        return ServedModel(request, ModelChoice(request.preset, False, "", "cpu", "fp32"), tiny_engine, request.label)

    reports: list[SwapReport] = []
    rig = Rig(tiny_engine, [""], WorkerSettings(), count=False, start=False)
    keeper = ModelKeeper(rig.worker, reports.append, warmup=False, loader=loader, free=lambda engine: None)
    model = keeper.load(ModelRequest("first"))
    rig.worker.start(model.engine, model.label)
    try:
        assert keeper.swap(ModelRequest("slow")) is None and keeper.busy
        assert keeper.swap(ModelRequest("other")) == "a model swap is already under way"
        gate.set()
        assert wait_report(reports, lambda r: r.state == "serving").model == "slow" and not keeper.busy
        assert keeper.swap(ModelRequest("broken"), "pause") is None
        lost = wait_report(reports, lambda r: r.state == "failed")
        assert lost.model == "" and "could not be loaded again either" in lost.message and keeper.current is None
        assert rig.worker.model == "" and rig.worker.running  # paused: standing queries wait for a model
        assert keeper.swap(ModelRequest("x")) == "no model is served (node inactive)"
    finally:
        rig.worker.stop()
