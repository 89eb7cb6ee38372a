"""The inference worker with the real tiny engine, in this process (no ROS): latest-frame slot, shared
encodings, failures that must not stop it (bad frames, a bad query in a batch, out of memory), and every
once-query answered exactly once (refused, expired, deactivated)."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import torch
from serving_rig import Rig, photo

from converseg_ros.engine import ConverSegEngine
from converseg_ros.serving.queries import MAX_PENDING_JOBS, Batch, Job, Query
from converseg_ros.serving.settings import WorkerSettings

pytestmark = pytest.mark.timeout(120)


class FlakyEngine(ConverSegEngine):
    """The real engine with injected faults: the next ``oom`` encode calls raise CUDA out-of-memory."""

    def __init__(self, real: ConverSegEngine) -> None:
        super().__init__(real.net)
        self.oom = 0
        self.entered = threading.Event()  # set when an encoding starts
        self.proceed: threading.Event | None = None  # when set to an Event: encodings wait for it

    def encode_frame(self, image: np.ndarray):  # noqa: ANN201
        self.entered.set()
        if self.proceed is not None:
            assert self.proceed.wait(20.0)
        if self.oom > 0:
            self.oom -= 1
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return super().encode_frame(image)


@pytest.fixture
def rig(tiny_engine):  # noqa: ANN001, ANN201
    """A running worker over FlakyEngine on one unnamed camera; yields (rig, engine, put(frame_id), wait(n))."""
    engine = FlakyEngine(tiny_engine)
    rig = Rig(engine, [""], WorkerSettings(), count=False)
    rgb = photo(96)

    def put(frame_id: str, encoding: str = "rgb8") -> None:
        rig.put("", rgb, frame_id, encoding)

    def wait(n: int, timeout: float = 20.0) -> list[Batch]:
        return rig.wait(lambda b: len(b) >= n, timeout)

    yield rig, engine, put, wait
    rig.worker.stop()


def test_out_of_memory_is_reported_and_the_next_frame_is_answered(rig) -> None:  # noqa: ANN001
    rig, engine, put, wait = rig
    worker = rig.worker
    engine.oom = 1
    worker.set_continuous(Query("c", "the cup", time.time_ns()))
    put("f1")
    first = wait(1)[0]
    assert first.outcomes[0].error and "out of memory" in first.outcomes[0].error
    put("f2")
    second = wait(2)[1]
    assert second.outcomes[0].error is None and second.outcomes[0].output.mask.shape == (64, 96)
    assert worker.stats.errors >= 1 and worker.stats.frames_encoded == 1


def test_a_bad_query_in_a_batch_does_not_sink_the_others(rig) -> None:  # noqa: ANN001
    rig, _, put, _wait = rig
    worker = rig.worker
    put("f1")
    good = worker.submit(Job(Query("g", "the cup", 0)))
    bad = worker.submit(Job(Query("b", "   ", 0)))
    assert good.done.wait(20) and bad.done.wait(20)
    assert good.outcome.error is None and good.outcome.output is not None
    assert bad.outcome.error and "bad query" in bad.outcome.error


def test_bad_frames_are_reported_then_a_good_one_is_answered(rig) -> None:  # noqa: ANN001
    rig, _, put, wait = rig
    worker = rig.worker
    worker.set_continuous(Query("c", "the cup", time.time_ns()))
    put("bad", "yuv422")
    batch = wait(1)[0]
    assert "bad image" in batch.outcomes[0].error and "yuv422" in batch.outcomes[0].error
    put("good")
    assert wait(2)[1].outcomes[0].error is None
    assert worker.stats.frames_bad == 1


def test_jobs_share_the_cached_encoding_of_a_frame(rig) -> None:  # noqa: ANN001
    rig, _, put, _wait = rig
    worker = rig.worker
    put("f1")
    jobs = [worker.submit(Job(Query(f"j{k}", f"query number {k}", 0))) for k in range(3)]
    assert all(j.done.wait(20) for j in jobs)
    assert all(j.outcome.error is None for j in jobs)
    assert worker.stats.frames_encoded == 1  # three queries (in one or more rounds), one encoding


def test_pending_jobs_are_bounded(rig) -> None:  # noqa: ANN001
    worker = rig[0].worker
    worker.set_enabled(False)  # topic once-queries wait while disabled
    jobs = [
        worker.submit(Job(Query(f"o{k}", "the cup", 0), policy="next")) for k in range(MAX_PENDING_JOBS + 1)
    ]
    assert worker.pending_jobs == MAX_PENDING_JOBS
    assert jobs[-1].done.is_set() and "busy" in jobs[-1].outcome.error
    assert not jobs[0].done.is_set()
    assert rig[0].unanswered == [jobs[-1]]  # a topic query refused at once is reported for its answer


def test_jobs_without_a_frame_expire_with_the_reason(rig) -> None:  # noqa: ANN001
    """frame_timeout_s: nothing arrived / only malformed frames were rejected / the frame is stale; a job
    with a frame in time is answered; expiry never blocks a later frame."""
    rig, _, put, _wait = rig
    worker = rig.worker
    worker.feed("").source = "/cam/image"
    expired = rig.unanswered
    t0 = time.monotonic()
    nothing = worker.submit(Job(Query("n", "the cup", 0), policy="next", frame_timeout_s=0.4))
    assert nothing.done.wait(5) and 0.35 < time.monotonic() - t0 < 3.0
    assert nothing.outcome.error == "no camera frame received on /cam/image for 0.4 s", nothing.outcome.error
    assert expired == [nothing] and nothing.batch is None
    rejects = worker.submit(Job(Query("r", "the cup", 0), policy="next", frame_timeout_s=0.4))
    worker.feed("").slot.reject("unsupported image encoding 'jpeg'")
    assert rejects.done.wait(5)
    assert "(1 malformed frames rejected, last: unsupported image encoding 'jpeg')" in rejects.outcome.error
    worker.set_settings(WorkerSettings(max_image_age_s=0.2))
    put("old")
    rig.clock.advance(0.5)  # "old" is now 0.5 s old
    stale = worker.submit(Job(Query("s", "the cup", 0), policy="latest", frame_timeout_s=0.4))
    assert stale.done.wait(5) and "s old > max_image_age_s=0.2" in stale.outcome.error, stale.outcome.error
    answered = worker.submit(Job(Query("a", "the cup", 0), policy="next", frame_timeout_s=5.0))
    put("fresh")
    assert answered.done.wait(20) and answered.outcome.error is None
    assert answered.batch.frame.msg.header.frame_id == "fresh"


def test_every_waiting_query_is_answered_when_the_model_stops_and_while_none_is_loaded(tiny_engine) -> None:
    """Stop answers waiting jobs "node deactivated" (topic ones reported for their result, service ones to the
    caller only); without a model every job is refused at once; a restart serves again."""
    rig = Rig(tiny_engine, ["a", "b"], WorkerSettings(max_image_age_s=0.0))
    worker = rig.worker
    topic = [worker.submit(Job(Query(f"t{k}", "the cup", 0), "next", camera="a")) for k in range(3)]
    call = worker.submit(Job(Query("s", "the cup", 0), "next", from_service=True, camera="b"))
    assert worker.pending_jobs == 4 and not rig.unanswered
    assert worker.stop(30)
    assert all(j.done.is_set() and j.outcome.error == "node deactivated" for j in [*topic, call])
    assert rig.unanswered == topic  # the service call's answer goes back to its caller only
    late = worker.submit(Job(Query("late", "the cup", 0), camera="a"))
    assert late.done.is_set() and late.outcome.error == "node inactive (model not loaded)"
    assert rig.unanswered[-1] is late and worker.pending_jobs == 0
    worker.start(rig.engine)
    again = worker.submit(Job(Query("again", "the cup", 0), "next", camera="a"))
    rig.put("a", photo(64), "a0")
    assert again.done.wait(30) and again.outcome.error is None
    worker.stop()


def test_only_frames_replaced_before_the_worker_took_them_count_as_dropped(tiny_engine) -> None:  # noqa: ANN001
    """frames_dropped_overwritten: the frame being encoded is not dropped when a newer one arrives; a frame
    replaced while it waited is."""
    engine = FlakyEngine(tiny_engine)
    engine.proceed = threading.Event()
    rig = Rig(engine, [""], WorkerSettings(max_image_age_s=0.0), count=False)
    slot = rig.worker.feed("").slot
    try:
        rig.worker.set_continuous(Query("c", "the cup", time.time_ns()))
        rig.put("", photo(96), "1")  # taken by the worker, which then waits in encode
        assert engine.entered.wait(20.0)
        rig.put("", photo(96), "2")  # arrives while 1 is encoded
        assert slot.counts().overwritten == 0  # 1 was taken, not dropped
        rig.put("", photo(96), "3")  # replaces 2, which the worker never took
        assert slot.counts().overwritten == 1
        engine.proceed.set()
        rig.wait(lambda b: len(b) >= 2)
    finally:
        engine.proceed.set()
        rig.worker.stop()
