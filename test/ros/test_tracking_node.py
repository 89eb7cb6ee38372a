"""Tracked queries (MODE_TRACK) in converseg_node over real DDS: the synthetic camera video (a real photo swept
by a known camera motion) written as a rosbag2 and played by converseg-replay; results say grounded or
tracked with the frame age of the last grounding; re-grounding every N frames, on request (the `reground`
service) and on a low object score or predicted IoU (forced through the thresholds); several tracks share a
frame's encoding; MODE_STOP ends one."""

from __future__ import annotations

import numpy as np
import pytest
from camera_helpers import set_parameters
from ros_helpers import Collector, call, spin_for, spin_until
from ros_nodes import start_camera, start_node

from converseg_ros.data.rosbag_writer import write_video_bag
from converseg_ros.data.synthetic_video import camera_sweep
from converseg_ros.msg import SegmentationQuery, SegmentationResult
from converseg_ros.ros.compat import publisher_count
from converseg_ros.ros.msgs import qos
from converseg_ros.srv import Reground

pytestmark = pytest.mark.timeout(240)
NS = "/cs_track"
NODE = f"{NS}/converseg_node"
EVERY = 4  # track_reground_every


@pytest.fixture(scope="module")
def tracking(ros, photos, tmp_path_factory):  # noqa: ANN001, ANN201
    """The node (grounding only every EVERY frames: the score thresholds are off) and the video playing in a
    loop at 5 Hz from its bag."""
    folder = tmp_path_factory.mktemp("tracking")
    bag = write_video_bag(folder / "sweep", camera_sweep(photos["coffee"], n_frames=24, size=(120, 160)))
    assert (bag / "motion.json").exists()
    params = ["-p", f"track_reground_every:={EVERY}", "-p", "track_min_iou:=0.0",
              "-p", "track_min_object_score:=-1000000.0"]
    node = start_node(ros, NS, params, folder / "converseg_node.log")
    replay = start_camera(["--bag", str(bag)], f"{NS}/image", 5)
    results = Collector(ros, SegmentationResult, f"{NS}/result")
    query_pub = ros.create_publisher(SegmentationQuery, f"{NS}/query", qos.command_qos())
    assert spin_until(ros, lambda: query_pub.get_subscription_count() and publisher_count(ros, results.sub), 20.0)
    try:
        yield results, query_pub, node
    finally:
        replay.terminate()
        replay.wait(10)
        assert node.stop() in (0, -2), node.output()[-3000:]


def send(ros, pub, qid: str, text: str = "the cup on the saucer", mode: int = SegmentationQuery.MODE_TRACK) -> None:  # noqa: ANN001
    msg = SegmentationQuery(id=qid, text=text, mode=mode)
    msg.header.stamp = ros.get_clock().now().to_msg()
    pub.publish(msg)


def answers(results: Collector, qid: str) -> list[SegmentationResult]:
    return results.matching(lambda r: r.query_id == qid)


def wait_answers(ros, results: Collector, qid: str, count: int, timeout: float = 60.0) -> list[SegmentationResult]:  # noqa: ANN001
    got = spin_until(ros, lambda: len(answers(results, qid)) >= count, timeout)
    assert got, f"{len(answers(results, qid))} of {count} results for {qid}"
    return answers(results, qid)


def check_sequence(seq: list[SegmentationResult]) -> None:
    """Each answer follows the one before: tracked with age + 1, or grounded (age 0) with a reason; every
    EVERY-th frame after a grounding is grounded again ('every_n')."""
    for prev, cur in zip(seq, seq[1:], strict=False):
        assert cur.success, cur.message
        if cur.grounded:
            assert cur.grounding_age == 0 and cur.grounding_reason, cur
            if cur.grounding_reason == "every_n":
                assert prev.grounding_age == EVERY - 1
        else:
            assert cur.grounding_age == prev.grounding_age + 1 and cur.grounding_reason == "", (prev, cur)
            assert cur.grounding_age < EVERY


def test_tracking_grounds_then_follows_and_regrounds_every_n(ros, tracking) -> None:  # noqa: ANN001
    results, pub, node = tracking
    send(ros, pub, "trk")
    seq = wait_answers(ros, results, "trk", 2 * EVERY + 2)
    first = seq[0]
    assert (first.grounded, first.grounding_age, first.grounding_reason) == (True, 0, "start")
    assert first.encode_ms > 0 and first.inference_ms > 0 and first.camera == ""
    check_sequence(seq)
    assert [r.grounding_reason for r in seq if r.grounded][:3] == ["start", "every_n", "every_n"]
    tracked = [r for r in seq if not r.grounded]
    assert tracked and all(r.inference_ms > 0 and (r.mask.width, r.mask.height) == (160, 120) for r in tracked)
    costs = {
        kind: np.median([r.encode_ms + r.inference_ms for r in seq if r.grounded == kind]) for kind in (True, False)
    }
    print(f"model ms per frame over DDS: grounded {costs[True]:.1f}, tracked {costs[False]:.1f}")
    assert "query trk (tracked)" in node.output()


def test_reground_on_request_and_on_low_scores(ros, tracking) -> None:  # noqa: ANN001
    results, pub, _ = tracking
    reground = ros.create_client(Reground, f"{NS}/reground")
    wait_answers(ros, results, "trk", 1)  # (started by the test before, or now)
    resp = call(ros, reground, Reground.Request(query_id="nope"))
    assert not resp.success and resp.tracks == 0 and "no running tracked query 'nope'" in resp.message
    resp = call(ros, reground, Reground.Request(camera="left"))
    assert not resp.success and "unknown camera 'left'" in resp.message
    seen = len(answers(results, "trk"))
    resp = call(ros, reground, Reground.Request(query_id="trk"))
    assert resp.success and resp.tracks == 1, resp.message
    later = wait_answers(ros, results, "trk", seen + 3)[seen:]
    assert "request" in [r.grounding_reason for r in later], [(r.grounded, r.grounding_reason) for r in later]
    check_sequence(answers(results, "trk"))

    forced = (("track_min_object_score", 1.0e6, "low_object_score"), ("track_min_iou", 1.0, "low_iou"))
    for name, value, reason in forced:
        set_parameters(ros, NODE, **{"track_min_object_score": -1.0e6, "track_min_iou": 0.0, name: value})
        seen = len(answers(results, "trk"))
        later = wait_answers(ros, results, "trk", seen + 4)[seen + 1 :]  # (one may have been under way)
        reasons = [(r.grounded, r.grounding_reason) for r in later]  # (every_n wins when it is due as well)
        assert all(r.grounded and r.grounding_reason in (reason, "every_n") for r in later), reasons
        assert [r for r in later if r.grounding_reason == reason], reasons
    set_parameters(ros, NODE, track_min_object_score=-1.0e6, track_min_iou=0.0)
    seen = len(answers(results, "trk"))
    later = wait_answers(ros, results, "trk", seen + 3)[seen + 1 :]
    assert not all(r.grounded for r in later)


def test_tracks_share_the_frame_and_stop_ends_one(ros, tracking) -> None:  # noqa: ANN001
    results, pub, _ = tracking
    send(ros, pub, "trk_b", "segment surfaces safe to place hot items")
    both = spin_until(
        ros,
        lambda: [
            (a, b) for a in answers(results, "trk") for b in answers(results, "trk_b")
            if (a.header.stamp.sec, a.header.stamp.nanosec) == (b.header.stamp.sec, b.header.stamp.nanosec)
            and not b.grounded
        ][:2],
        60.0,
    )
    assert both, "the two tracks never answered on the same frame"
    for a, b in both:
        assert a.encode_ms == b.encode_ms  # one encoding of the frame for both tracks
    send(ros, pub, "trk", mode=SegmentationQuery.MODE_STOP)
    spin_for(ros, 1.5)
    acks = [r for r in answers(results, "trk") if r.message == "stopped on 1 camera(s)"]
    assert len(acks) == 1 and acks[0].success and not acks[0].mask.data  # the stop answered once, no mask
    stopped_at = len(answers(results, "trk"))
    wait_answers(ros, results, "trk_b", len(answers(results, "trk_b")) + 3)
    assert len(answers(results, "trk")) == stopped_at, "a stopped track was still answered"
    send(ros, pub, "trk", mode=SegmentationQuery.MODE_STOP)  # no such query any more: refused
    refusal = spin_until(ros, lambda: [r for r in answers(results, "trk") if not r.success], 10.0)
    assert refusal and "no continuous or tracked query 'trk' to stop" in refusal[0].message


def test_a_tracked_query_survives_deactivate_activate(ros, tracking) -> None:  # noqa: ANN001
    """The node keeps its tracked queries while the model is away and grounds them again after reloading."""
    from lifecycle_msgs.msg import Transition
    from lifecycle_msgs.srv import ChangeState

    results, pub, node = tracking
    send(ros, pub, "trk_c")
    wait_answers(ros, results, "trk_c", 2)
    change = ros.create_client(ChangeState, f"{NODE}/change_state")
    for transition in (Transition.TRANSITION_DEACTIVATE, Transition.TRANSITION_ACTIVATE):
        assert call(ros, change, ChangeState.Request(transition=Transition(id=transition)), timeout=60).success
    starts = lambda: [i for i, r in enumerate(answers(results, "trk_c")) if r.grounding_reason == "start"]  # noqa: E731
    assert spin_until(ros, lambda: len(starts()) == 2 and len(answers(results, "trk_c")) > starts()[1] + 1, 60.0)
    seq = answers(results, "trk_c")[starts()[1] :]  # from the grounding after the reload
    assert seq[0].grounded and seq[0].grounding_age == 0 and seq[1].success
    assert (seq[1].grounded, seq[1].grounding_age) == (False, 1)  # (every_n is EVERY=4 frames: tracked next)
    assert node.output().count("model loaded in") == 2
