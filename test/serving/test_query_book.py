"""Each camera's standing queries are written once, in the query book, and every reader sees the same: the
status (diagnostics), max_tracks accounting and re-activation. Real tiny engine, no ROS. The divergence that
the book removed: a tracked query the model refuses used to stay in the node's own copy."""

from __future__ import annotations

import time

import pytest
from serving_rig import Rig, photo

from converseg_ros.serving.queries import MODE_CONTINUOUS, MODE_TRACK, Query
from converseg_ros.serving.settings import CameraSettings, WorkerSettings

pytestmark = pytest.mark.timeout(120)
SPECIALS = "<|im_end|><|vision_start|>"  # only special tokens: the model refuses it (QueryError)
RGB = photo(64)


def track(qid: str, text: str = "the cup") -> Query:
    return Query(qid, text, time.time_ns(), MODE_TRACK)


@pytest.fixture
def rig(tiny_engine):  # noqa: ANN001, ANN201
    made = Rig(tiny_engine, ["head", "wrist"], WorkerSettings(max_image_age_s=0.0), CameraSettings(max_tracks=2))
    yield made
    made.worker.stop()


def frame_on(rig: Rig, camera: str, frame_id: str) -> None:
    before = len(rig.batches)
    rig.put(camera, RGB, frame_id)
    rig.wait(lambda b: len(b) > before)


def test_a_tracked_query_the_model_refuses_is_gone_for_every_reader(rig) -> None:  # noqa: ANN001
    worker = rig.worker
    assert worker.start_track(track("bad", SPECIALS), "head") == {}
    assert worker.status().camera("head").tracked == ["bad"]  # accepted, waiting for a frame
    frame_on(rig, "head", "h0")
    [(_, answer)] = rig.results("bad")
    assert answer.error and "bad query" in answer.error and "special tokens" in answer.error
    assert worker.tracked("head") == [] and worker.status().camera("head").tracked == []  # diagnostics
    assert worker.start_track(track("a"), "head") == {} and worker.start_track(track("b"), "head") == {}
    refused = worker.start_track(track("c"), "head")  # max_tracks=2 counts a and b only
    assert refused == {"head": "busy: camera head already tracks max_tracks=2 queries"}
    worker.stop()
    worker.start(rig.engine)  # re-activation starts what the book holds: a and b, never "bad"
    assert worker.tracked("head") == ["a", "b"]
    frame_on(rig, "head", "h1")
    assert {o.query.id for o in rig.batches[-1].outcomes} == {"a", "b"}
    assert all(o.reason == "start" for o in rig.batches[-1].outcomes)


def test_accept_stop_and_clear_are_written_once(rig) -> None:  # noqa: ANN001
    worker = rig.worker
    cont = Query("c", "the saucer", time.time_ns(), MODE_CONTINUOUS)
    assert worker.set_continuous(cont) == ["head", "wrist"]
    worker.start_track(track("t"), "wrist")
    status = worker.status()
    assert [(c.name, c.continuous, c.tracked) for c in status.cameras] == [
        ("head", cont, []), ("wrist", cont, ["t"])
    ]
    assert worker.stop_query("c", "head") == ["head"]
    assert worker.continuous("head") is None and worker.continuous("wrist") == cont
    assert worker.stop_query("t") == ["wrist"] and worker.tracked("wrist") == []
    assert worker.stop_query("t") == []  # nothing left to stop
    worker.start_track(track("u"))
    assert worker.clear() == ["c", "u"]
    assert all(c.continuous is None and c.tracked == [] for c in worker.status().cameras)


def test_a_camera_settings_change_reaches_only_that_camera(rig) -> None:  # noqa: ANN001
    worker = rig.worker
    worker.set_camera_settings("wrist", CameraSettings(max_rate_hz=10.0, max_tracks=1))
    status = worker.status()
    assert status.camera("wrist").settings.max_tracks == 1 and status.camera("head").settings.max_tracks == 2
    worker.start_track(track("a"))
    assert worker.start_track(track("b")) == {"wrist": "busy: camera wrist already tracks max_tracks=1 queries"}
    assert worker.tracked("head") == ["a", "b"] and worker.tracked("wrist") == ["a"]


def test_reactivation_grounds_running_tracks_again_and_keeps_the_continuous_query(rig) -> None:  # noqa: ANN001
    worker = rig.worker
    cont = Query("c", "the saucer", time.time_ns())
    worker.set_continuous(cont, "head")
    worker.start_track(track("t"), "head")
    frame_on(rig, "head", "h0")
    frame_on(rig, "head", "h1")
    assert [(o.grounded, o.reason) for _, o in rig.results("t")] == [(True, "start"), (False, "")]
    worker.stop()
    assert worker.tracked("head") == ["t"] and worker.continuous("head") == cont  # kept while unloaded
    worker.start(rig.engine)
    frame_on(rig, "head", "h2")
    last = {o.query.id: o for o in rig.batches[-1].outcomes}
    assert set(last) == {"c", "t"} and (last["t"].grounded, last["t"].reason) == (True, "start")
