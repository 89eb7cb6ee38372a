"""The inference worker with the real tiny engine, in this process (no ROS graph): latest-frame slot,
shared encodings, and failures that must not stop it (bad frames, a bad query in a batch, out of memory)."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import torch
from ros_helpers import photo
from sensor_msgs.msg import Image

from converseg_ros.engine import ConverSegEngine
from converseg_ros.ros.frame_slot import LatestSlot
from converseg_ros.ros.image_codec import encode
from converseg_ros.ros.image_input import image_to_rgb8
from converseg_ros.ros.worker import Batch, InferenceWorker, Job, Query, WorkerSettings

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
    """A running worker over FlakyEngine; yields (worker, slot, batches published, put(frame_id))."""
    engine = FlakyEngine(tiny_engine)
    batches: list[Batch] = []
    published = threading.Condition()

    def publish(batch: Batch) -> None:
        with published:
            batches.append(batch)
            published.notify_all()

    slot = LatestSlot()
    worker = InferenceWorker(engine, slot, image_to_rgb8, publish, time.time_ns, WorkerSettings())
    slot._on_put = worker.notify
    rgb = photo(96)

    def put(frame_id: str, msg: Image | None = None) -> None:
        msg = msg or encode(rgb, "rgb8", Image())
        msg.header.frame_id = msg.header.frame_id or frame_id
        slot.put(msg, time.time_ns(), time.time_ns())

    def wait(n: int, timeout: float = 20.0) -> list[Batch]:
        with published:
            published.wait_for(lambda: len(batches) >= n, timeout)
        return list(batches)

    worker.start()
    yield worker, engine, put, wait
    worker.stop()


def test_out_of_memory_is_reported_and_the_next_frame_is_answered(rig) -> None:  # noqa: ANN001
    worker, engine, put, wait = rig
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
    worker, _, put, _wait = rig
    put("f1")
    good = worker.submit(Job(Query("g", "the cup", 0)))
    bad = worker.submit(Job(Query("b", "   ", 0)))
    assert good.done.wait(20) and bad.done.wait(20)
    assert good.outcome.error is None and good.outcome.output is not None
    assert bad.outcome.error and "bad query" in bad.outcome.error


def test_bad_frames_are_reported_then_a_good_one_is_answered(rig) -> None:  # noqa: ANN001
    worker, _, put, wait = rig
    worker.set_continuous(Query("c", "the cup", time.time_ns()))
    broken = encode(photo(96), "rgb8", Image())
    broken.encoding = "yuv422"
    put("bad", broken)
    batch = wait(1)[0]
    assert "bad image" in batch.outcomes[0].error and "yuv422" in batch.outcomes[0].error
    put("good")
    assert wait(2)[1].outcomes[0].error is None
    assert worker.stats.frames_bad == 1


def test_jobs_share_the_cached_encoding_of_a_frame(rig) -> None:  # noqa: ANN001
    worker, _, put, _wait = rig
    put("f1")
    jobs = [worker.submit(Job(Query(f"j{k}", f"query number {k}", 0))) for k in range(3)]
    assert all(j.done.wait(20) for j in jobs)
    assert all(j.outcome.error is None for j in jobs)
    assert worker.stats.frames_encoded == 1  # three queries (in one or more rounds), one encoding


def test_pending_jobs_are_bounded(rig) -> None:  # noqa: ANN001
    from converseg_ros.ros.worker import MAX_PENDING_JOBS

    worker, _, _put, _wait = rig
    worker.set_enabled(False)  # topic once-queries wait while disabled
    jobs = [
        worker.submit(Job(Query(f"o{k}", "the cup", 0), policy="next")) for k in range(MAX_PENDING_JOBS + 1)
    ]
    assert worker.pending_jobs == MAX_PENDING_JOBS
    assert jobs[-1].done.is_set() and "busy" in jobs[-1].outcome.error
    assert not jobs[0].done.is_set()


def test_jobs_without_a_frame_expire_with_the_reason(rig) -> None:  # noqa: ANN001
    """frame_timeout_s: nothing arrived / only malformed frames were rejected / the frame is stale; a job
    with a frame in time is answered; expiry never blocks a later frame."""
    worker, _, put, _wait = rig
    worker.source = "/cam/image"
    expired: list[Job] = []
    worker._on_expired = expired.append
    t0 = time.monotonic()
    nothing = worker.submit(Job(Query("n", "the cup", 0), policy="next", frame_timeout_s=0.4))
    assert nothing.done.wait(5) and 0.35 < time.monotonic() - t0 < 3.0
    assert nothing.outcome.error == "no camera frame received on /cam/image for 0.4 s", nothing.outcome.error
    assert expired == [nothing] and nothing.batch is None
    rejects = worker.submit(Job(Query("r", "the cup", 0), policy="next", frame_timeout_s=0.4))
    worker.slot.reject("unsupported image encoding 'jpeg'")
    assert rejects.done.wait(5)
    assert "(1 malformed frames rejected, last: unsupported image encoding 'jpeg')" in rejects.outcome.error
    worker.settings.max_image_age_s = 0.2
    put("old")
    time.sleep(0.3)
    stale = worker.submit(Job(Query("s", "the cup", 0), policy="latest", frame_timeout_s=0.4))
    assert stale.done.wait(5) and "s old > max_image_age_s=0.2" in stale.outcome.error, stale.outcome.error
    answered = worker.submit(Job(Query("a", "the cup", 0), policy="next", frame_timeout_s=5.0))
    put("fresh")
    assert answered.done.wait(20) and answered.outcome.error is None
    assert answered.batch.frame.msg.header.frame_id == "fresh"


def test_only_frames_replaced_before_the_worker_took_them_count_as_dropped(tiny_engine) -> None:  # noqa: ANN001
    """frames_dropped_overwritten: the frame being encoded is not dropped when a newer one arrives; a frame
    replaced while it waited is."""
    engine = FlakyEngine(tiny_engine)
    engine.proceed = threading.Event()
    slot = LatestSlot()
    done = threading.Event()
    worker = InferenceWorker(engine, slot, image_to_rgb8, lambda batch: done.set(), time.time_ns, WorkerSettings())
    slot._on_put = worker.notify
    msg = encode(photo(96), "rgb8", Image())
    worker.start()
    try:
        worker.set_continuous(Query("c", "the cup", time.time_ns()))
        slot.put(msg, time.time_ns(), time.time_ns())  # 1: taken by the worker, which then waits in encode
        assert engine.entered.wait(20.0)
        slot.put(msg, time.time_ns(), time.time_ns())  # 2: arrives while 1 is encoded
        assert slot.overwritten == 0  # 1 was taken, not dropped
        slot.put(msg, time.time_ns(), time.time_ns())  # 3: replaces 2, which the worker never took
        assert slot.overwritten == 1
        engine.proceed.set()
        assert done.wait(20.0)
    finally:
        engine.proceed.set()
        worker.stop()
