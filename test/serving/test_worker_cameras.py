"""The inference worker with several cameras and tracked queries, in this process with the real tiny engine (no
ROS graph): round-robin fairness, what a tracked frame encodes, re-grounding, stops and restarts, bad frames on
one camera. No ROS."""

from __future__ import annotations

import math
import threading
import time

import pytest
from serving_rig import Rig, photo

from converseg_ros.data.synthetic_video import camera_sweep
from converseg_ros.engine.tracking import TrackingConfig
from converseg_ros.serving.queries import MODE_TRACK, Job, Query
from converseg_ros.serving.settings import CameraSettings, WorkerSettings

pytestmark = pytest.mark.timeout(180)
NEVER = TrackingConfig(min_object_score=-math.inf, min_iou=0.0, reground_every=0)  # only requests re-ground


@pytest.fixture
def rig_factory(tiny_engine):  # noqa: ANN001, ANN201
    rigs = []

    def make(cameras: list[str], tracking: TrackingConfig = NEVER) -> Rig:
        rigs.append(Rig(tiny_engine, cameras, WorkerSettings(max_image_age_s=0.0), CameraSettings(tracking=tracking)))
        return rigs[-1]

    yield make
    for rig in rigs:
        rig.worker.stop()


def test_round_robin_serves_a_slow_camera_between_fast_frames(rig_factory) -> None:  # noqa: ANN001
    """The fast camera always has a new frame; the slow ones get one each: both are served within the next
    three batches, whichever camera is listed first."""
    rig = rig_factory(["fast", "slow_a", "slow_b"])
    rig.worker.set_continuous(Query("c", "the cup", time.time_ns()))
    rgb = photo(96)
    stop = threading.Event()

    def fast_camera() -> None:
        k = 0
        while not stop.is_set():
            rig.put("fast", rgb, f"fast_{k}")
            k += 1
            time.sleep(0.002)

    thread = threading.Thread(target=fast_camera)
    thread.start()
    try:
        rig.wait(lambda b: len(b) >= 3)
        for rounds in range(3):
            before = len(rig.batches)
            rig.put("slow_a", rgb, f"slow_a_{rounds}")
            rig.put("slow_b", rgb, f"slow_b_{rounds}")
            batches = rig.wait(lambda b, n=before: {"slow_a", "slow_b"} <= {x.camera for x in b[n:]})
            served = [b.camera for b in batches[before:]]
            assert len(served) <= 4, served  # at most one batch was already running, then round robin
    finally:
        stop.set()
        thread.join()
    assert all(o.error is None for b in rig.batches for o in b.outcomes)


def test_tracked_frames_encode_sam2_only_and_answers_say_so(rig_factory, photos) -> None:  # noqa: ANN001
    rig = rig_factory(["cam"])
    video = camera_sweep(photos["coffee"], n_frames=6, size=(96, 128))
    rig.worker.start_track(Query("t", "the cup on the saucer", time.time_ns(), MODE_TRACK))
    for k, frame in enumerate(video.frames[:4]):
        rig.put("cam", frame, f"f{k}")
        rig.wait(lambda b, n=k + 1: len(b) >= n)
    results = rig.results("t")
    assert [(o.grounded, o.grounding_age, o.reason) for _, o in results] == [
        (True, 0, "start"), (False, 1, ""), (False, 2, ""), (False, 3, "")
    ]
    assert all(o.error is None and o.output.mask.shape == (96, 128) for _, o in results)
    assert all(o.inference_ms > 0 for _, o in results)
    # the grounded frame encoded both branches, the tracked frames SAM2 only: no Qwen image prefix
    assert rig.engine.calls == {"encode_frame": 1, "encode_sam_frame": 3, "add_prefix": 0}
    tracked = rig.batches[1]
    assert 0 < tracked.encode_ms and "qwen_prefix_ms" not in rig.worker.feed("cam").cache.encoding.timings
    # a language query on the cached tracked frame completes its encoding once (reported as encode_ms)
    job = rig.worker.submit(Job(Query("once", "the saucer", 0)))
    assert job.done.wait(30) and job.outcome.error is None
    assert job.batch.frame.msg.header.frame_id == "f3" and job.batch.encode_ms > 0
    assert rig.engine.calls == {"encode_frame": 1, "encode_sam_frame": 3, "add_prefix": 1}


def test_reground_request_stop_and_restart(rig_factory, photos) -> None:  # noqa: ANN001
    rig = rig_factory(["cam"], TrackingConfig(min_object_score=-math.inf, min_iou=0.0, reground_every=3))
    video = camera_sweep(photos["coffee"], n_frames=10, size=(96, 128))
    rig.worker.start_track(Query("a", "the cup", time.time_ns(), MODE_TRACK))
    rig.worker.start_track(Query("b", "the saucer", time.time_ns(), MODE_TRACK))
    frames = iter(video.frames)

    def step(n_batches: int) -> None:
        for _ in range(n_batches):
            before = len(rig.batches)
            rig.put("cam", next(frames), f"f{before}")
            rig.wait(lambda b, n=before: len(b) > n)

    step(3)
    assert rig.worker.reground("b") == 1 and rig.worker.reground("nope") == 0
    step(1)
    ages = {q: [(o.grounding_age, o.reason) for _, o in rig.results(q)] for q in "ab"}
    assert ages["a"] == [(0, "start"), (1, ""), (2, ""), (0, "every_n")]
    assert ages["b"] == [(0, "start"), (1, ""), (2, ""), (0, "request")]
    shared = rig.batches[-1]
    assert {o.query.id for o in shared.outcomes} == {"a", "b"}  # one frame, one encoding, both tracks
    assert rig.worker.stop_query("a") == ["cam"]
    rig.worker.start_track(Query("b", "the cup", time.time_ns(), MODE_TRACK))  # same id: replaces b
    step(1)
    last = rig.batches[-1].outcomes
    assert [(o.query.id, o.query.text, o.reason) for o in last] == [("b", "the cup", "start")]
    step(1)
    assert [(o.query.id, o.grounding_age) for o in rig.batches[-1].outcomes] == [("b", 1)]
    assert rig.worker.tracked("cam") == ["b"]


def test_bad_frame_on_one_camera_leaves_the_other_and_the_tracks(rig_factory, photos) -> None:  # noqa: ANN001
    rig = rig_factory(["left", "right"])
    video = camera_sweep(photos["coffee"], n_frames=4, size=(96, 128))
    rig.worker.start_track(Query("t", "the cup", time.time_ns(), MODE_TRACK))  # on both cameras
    rig.put("left", video.frames[0], "l0")
    rig.put("right", video.frames[0], "r0")
    rig.wait(lambda b: len(b) >= 2)
    rig.put("left", video.frames[1], "l_bad", encoding="yuv422")  # decoding fails in the worker
    rig.put("right", video.frames[1], "r1")
    batches = rig.wait(lambda b: {"l_bad", "r1"} <= {x.frame.msg.header.frame_id for x in b})
    by_frame = {b.frame.msg.header.frame_id: b.outcomes[0] for b in batches}
    assert "bad image" in by_frame["l_bad"].error
    assert by_frame["r1"].error is None and by_frame["r1"].grounding_age == 1
    rig.put("left", video.frames[2], "l2")
    batches = rig.wait(lambda b: "l2" in {x.frame.msg.header.frame_id for x in b})
    left = [b.outcomes[0] for b in batches if b.frame.msg.header.frame_id == "l2"][0]
    assert left.error is None and (left.grounded, left.grounding_age) == (False, 1)  # the bad frame did not count
    assert rig.worker.feed("left").stats.frames_bad == 1 and rig.worker.feed("right").stats.frames_bad == 0


def test_jobs_name_their_camera_or_take_any(rig_factory) -> None:  # noqa: ANN001
    rig = rig_factory(["a", "b"])
    rgb = photo(64)
    named = rig.worker.submit(Job(Query("n", "the cup", 0), policy="next", camera="b", frame_timeout_s=10))
    anyone = rig.worker.submit(Job(Query("y", "the cup", 0), policy="next", frame_timeout_s=10))
    unknown = rig.worker.submit(Job(Query("u", "the cup", 0), camera="c"))
    assert unknown.done.is_set() and "unknown camera 'c'" in unknown.outcome.error
    rig.put("a", rgb, "a0")
    assert anyone.done.wait(30) and anyone.batch.camera == "a"
    assert not named.done.wait(0.5)
    rig.put("b", rgb, "b0")
    assert named.done.wait(30) and named.batch.camera == "b" and named.outcome.error is None
    late = rig.worker.submit(Job(Query("t", "the cup", 0), policy="next", frame_timeout_s=0.3))
    assert late.done.wait(5)
    assert late.outcome.error == "no camera frame received on /rig/a/image, /rig/b/image for 0.3 s"
