"""Pipelining and pre-encoding in the inference worker, with the real tiny engine in this process (no ROS
graph, no ROS): the next frame is encoded while the previous batch is still being published; with pre_encode_hz the
newest frame is encoded before any query and a `latest` query is answered on it without a new encoding,
within max_image_age_s and at most pre_encode_hz encodings a second."""

from __future__ import annotations

import threading
import time

import pytest
from serving_rig import Rig, photo

from converseg_ros.serving.publish_queue import PublishQueue
from converseg_ros.serving.queries import Job, Query
from converseg_ros.serving.settings import WorkerSettings

pytestmark = pytest.mark.timeout(120)
RGB = photo(96)


def wait_for(pred, timeout: float = 30.0) -> bool:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.01)
    return False


@pytest.fixture
def rigs():  # noqa: ANN201
    made = []
    yield made
    for rig in made:
        rig.worker.stop()


def test_next_frame_is_encoded_while_the_previous_batch_is_published(tiny_engine, rigs) -> None:  # noqa: ANN001
    """The worker's own PublishQueue (pipelined, as in the node) holds the first publication."""
    gate = threading.Event()
    published = []

    def slow_publish(batch) -> None:  # noqa: ANN001
        gate.wait(30)  # the first publication is held until the worker has encoded the next frame
        published.append(batch)

    rig = Rig(tiny_engine, ["cam"], WorkerSettings(max_image_age_s=0.0), pipelined=True, publish=slow_publish)
    rigs.append(rig)
    rig.worker.set_continuous(Query("c", "the cup", time.time_ns()))
    rig.put("cam", RGB, "f0")
    assert wait_for(lambda: rig.engine.calls["encode_frame"] == 1)
    rig.put("cam", RGB, "f1")
    assert wait_for(lambda: rig.engine.calls["encode_frame"] == 2, 20.0), "the worker waited for publication"
    assert not published  # nothing published yet: f1 was encoded while f0's publication was held
    gate.set()
    assert wait_for(lambda: len(published) >= 2)
    assert [b.frame.msg.header.frame_id for b in published[:2]] == ["f0", "f1"]
    assert rig.worker.stats.errors == 0


def test_publish_queue_reports_a_failure_and_goes_on() -> None:
    published, errors = [], []

    def publish(item: int) -> None:
        if item == 1:
            raise RuntimeError("broken message")
        published.append(item)

    queue = PublishQueue(publish, lambda item, exc: errors.append((item, str(exc))), max_queued=2)
    for item in range(4):
        queue.put(item)
    assert queue.close(10.0)
    assert published == [0, 2, 3] and errors == [(1, "broken message")] and queue.published == 4
    queue.put(5)  # after close: dropped, nothing runs
    assert published == [0, 2, 3]


def test_pre_encoded_frame_answers_a_latest_query_without_encoding(tiny_engine, rigs) -> None:  # noqa: ANN001
    rig = Rig(tiny_engine, ["cam"], WorkerSettings(max_image_age_s=0.8, pre_encode_hz=50.0))
    rigs.append(rig)
    stats = rig.worker.feed("cam").stats
    rig.put("cam", RGB, "p0")
    assert wait_for(lambda: stats.frames_pre_encoded == 1)
    rig.clock.advance(-5.0)  # however long the encoding took on a loaded CPU, p0 is fresh again
    time.sleep(0.2)
    assert rig.engine.calls["encode_frame"] == 1 and not rig.batches  # once per frame, nothing published
    job = rig.worker.submit(Job(Query("q", "the cup", 0), policy="latest", frame_timeout_s=5))
    assert job.done.wait(30) and job.outcome.error is None, job.outcome
    assert job.batch.frame.msg.header.frame_id == "p0" and job.batch.encode_ms == 0.0
    assert rig.engine.calls["encode_frame"] == 1 and stats.answers_pre_encoded == 1
    later = rig.worker.submit(Job(Query("n", "the cup", 0), policy="next", frame_timeout_s=0.3))
    assert later.done.wait(10) and "no camera frame received" in later.outcome.error  # not the encoded p0

    rig.clock.advance(6.0)  # the encoded frame is now older than max_image_age_s: not used any more
    stale = rig.worker.submit(Job(Query("s", "the cup", 0), policy="latest", frame_timeout_s=0.3))
    assert stale.done.wait(10) and "old > max_image_age_s=0.8" in stale.outcome.error, stale.outcome
    rig.put("cam", RGB, "p1")
    fresh = rig.worker.submit(Job(Query("f", "the cup", 0), policy="latest", frame_timeout_s=5))
    assert fresh.done.wait(30) and fresh.batch.frame.msg.header.frame_id == "p1"
    assert rig.engine.calls["encode_frame"] == 2


def test_pre_encoding_keeps_its_rate_and_is_off_by_default(tiny_engine, rigs) -> None:  # noqa: ANN001
    rig = Rig(tiny_engine, ["a", "b"], WorkerSettings(max_image_age_s=0.0, pre_encode_hz=2.0))
    off = Rig(tiny_engine, ["c"], WorkerSettings(max_image_age_s=0.0))
    rigs += [rig, off]
    start = time.monotonic()
    k = 0
    while time.monotonic() - start < 1.2:  # 100 Hz on both cameras
        for camera in ("a", "b"):
            rig.put(camera, RGB, f"{camera}{k}")
        off.put("c", RGB, f"c{k}")
        k += 1
        time.sleep(0.01)
    time.sleep(0.3)
    counts = [rig.worker.feed(c).stats.frames_pre_encoded for c in ("a", "b")]
    assert all(n <= 4 for n in counts), counts  # at most at t = 0, 0.5, 1.0 s (+1 for timing slack)
    # (the exact rate is checked on a fake clock in test_scheduler.py; here: it does pre-encode, both cameras)
    assert wait_for(lambda: all(rig.worker.feed(c).stats.frames_pre_encoded >= 1 for c in ("a", "b")))
    assert off.engine.calls["encode_frame"] == 0 and off.worker.stats.frames_pre_encoded == 0


def test_a_frame_that_cannot_be_decoded_is_pre_encoded_once(tiny_engine, rigs) -> None:  # noqa: ANN001
    rig = Rig(tiny_engine, ["cam"], WorkerSettings(max_image_age_s=0.0, pre_encode_hz=50.0))
    rigs.append(rig)
    stats = rig.worker.feed("cam").stats
    rig.put("cam", RGB, "broken", encoding="rgb9")  # (the node's callback would have rejected it)
    assert wait_for(lambda: stats.frames_bad == 1)
    time.sleep(0.5)  # 25 pre-encoding periods
    assert stats.frames_bad == 1 and stats.frames_pre_encoded == 0 and "bad image" in stats.last_error
    rig.put("cam", RGB, "good")
    assert wait_for(lambda: stats.frames_pre_encoded == 1)
