"""Outputs and run-time parameters of the shared converseg_node, observed over DDS from this process: the
overlay drawn only while someone subscribes (the overlay writer's sequence numbers), overlay_alpha,
max_rate_hz, and how the diagnostics fields change."""

from __future__ import annotations

import array
from typing import Any

import cv2
import numpy as np
import pytest
from rcl_interfaces.msg import Parameter, ParameterType, ParameterValue
from rcl_interfaces.srv import SetParameters
from ros_helpers import Harness, call, check_mask, image_msg, photo, spin_for, spin_until
from ros_nodes import NS
from sensor_msgs.msg import Image
from std_srvs.srv import SetBool, Trigger

from converseg_ros.ros.compat import publisher_count
from converseg_ros.ros.msgs import qos
from converseg_ros.ros.msgs.image_codec import decode
from converseg_ros.srv import Segment
from converseg_ros.visualization import BOX, TINT

pytestmark = pytest.mark.timeout(120)
RGB = photo(160)
WIDE = photo(640)  # wide enough that the overlay's title banner leaves most rows untouched
BANNER_ROWS = 80  # rows of WIDE that the banner may darken (two lines of text at most)


@pytest.fixture(scope="module")
def h(ros, node_proc):  # noqa: ANN001
    harness = Harness(ros, NS, RGB, overlay=False)
    yield harness
    harness.close()


@pytest.fixture(autouse=True)
def _clear_between_tests(h: Harness, node_proc) -> None:  # noqa: ANN001
    yield
    assert node_proc.alive(), node_proc.output()[-3000:]
    call(h.ros, h.clear, Trigger.Request())


def set_param(h: Harness, name: str, value: float) -> None:
    client = h.ros.create_client(SetParameters, f"{NS}/converseg_node/set_parameters")
    value_msg = ParameterValue(type=ParameterType.PARAMETER_DOUBLE, double_value=float(value))
    resp = call(h.ros, client, SetParameters.Request(parameters=[Parameter(name=name, value=value_msg)]))
    h.ros.destroy_client(client)
    assert resp.results[0].successful, resp.results[0].reason


class SequencedCollector:
    """Subscribes and keeps (message, the writer's publication sequence number) pairs."""

    def __init__(self, ros: Any, topic: str) -> None:
        self.ros = ros
        self.items: list[tuple[Image, int]] = []
        self.sub = ros.create_subscription(
            Image, topic, lambda msg, info: self.items.append((msg, info["publication_sequence_number"])),
            qos.output_qos(1),
        )

    def for_frame(self, frame_id: str, timeout: float = 5.0) -> tuple[Image, int] | None:
        got = spin_until(self.ros, lambda: [i for i in self.items if i[0].header.frame_id == frame_id], timeout)
        return got[0] if got else None

    def close(self) -> None:
        self.ros.destroy_subscription(self.sub)


def answered(h: Harness, qid: str, frame_id: str) -> Any:
    r = h.result_for(qid, pred=lambda r: r.header.frame_id == frame_id)
    assert r is not None and r.success, f"frame {frame_id} not answered: {r and r.message}"
    return r


def test_overlay_is_drawn_only_while_someone_subscribes(h: Harness) -> None:
    """With a subscriber every answered frame gets an overlay; without one none is drawn: the overlay
    writer's next sample after three unsubscribed frames is numbered right after the last one seen (while
    the mask writer, always publishing, advanced by four)."""
    overlay_topic = f"{NS}/overlay"
    assert spin_until(h.ros, lambda: h.ros.count_subscribers(overlay_topic) == 0, 10.0), "someone subscribes"
    masks = SequencedCollector(h.ros, f"{NS}/mask")
    overlays = SequencedCollector(h.ros, overlay_topic)
    assert spin_until(h.ros, lambda: publisher_count(h.ros, overlays.sub) and publisher_count(h.ros, masks.sub), 10.0)
    spin_for(h.ros, 0.5)  # the node's writer matches our reader too
    h.send_query("ov", "the cup")
    h.send_image("ov_first")
    answered(h, "ov", "ov_first")
    first = overlays.for_frame("ov_first")
    assert first is not None, "no overlay while subscribed"
    overlay, first_seq = first
    assert (overlay.encoding, overlay.width, overlay.height) == ("rgb8", RGB.shape[1], RGB.shape[0])
    assert not np.array_equal(decode(overlay), RGB), "the overlay is the camera image unchanged"

    overlays.close()
    assert spin_until(h.ros, lambda: h.ros.count_subscribers(overlay_topic) == 0, 10.0)
    spin_for(h.ros, 1.0)  # the node's writer sees the reader go too
    for k in range(3):
        h.send_image(f"ov_unwatched_{k}")
        answered(h, "ov", f"ov_unwatched_{k}")

    overlays = SequencedCollector(h.ros, overlay_topic)
    assert spin_until(h.ros, lambda: publisher_count(h.ros, overlays.sub), 10.0)
    spin_for(h.ros, 0.5)
    h.send_image("ov_second")
    answered(h, "ov", "ov_second")
    second = overlays.for_frame("ov_second")
    assert second is not None, "no overlay after subscribing again"
    assert second[1] == first_seq + 1, f"overlay samples {first_seq} -> {second[1]}: drawn without a subscriber"
    mask_seqs = [masks.for_frame(f)[1] for f in ("ov_first", "ov_second")]
    assert mask_seqs[1] - mask_seqs[0] == 4, mask_seqs  # the sequence numbers count every sample written
    overlays.close()
    masks.close()


def ink(overlay: np.ndarray) -> np.ndarray:
    """Pixels near what is drawn over the tint: contours (TINT), boxes (BOX), labels (black), +-2 px."""
    drawn = np.zeros(overlay.shape[:2], bool)
    for colour in (TINT, BOX, (0, 0, 0)):
        drawn |= (overlay == colour).all(axis=2)
    return cv2.dilate(drawn.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)


def tint_match(overlay: np.ndarray, rgb: np.ndarray, where: np.ndarray, alpha: float) -> float:
    """Share of the pixels ``where`` that show ``rgb`` tinted with TINT at opacity ``alpha`` (+-1)."""
    expected = np.floor(rgb.astype(np.float64) * (1.0 - alpha) + np.asarray(TINT, np.float64) * alpha)
    close = np.abs(overlay.astype(np.int16) - expected.astype(np.int16)).max(axis=2) <= 1
    return float(close[where].mean())


def test_overlay_alpha_sets_the_tint_opacity(h: Harness) -> None:
    """overlay_alpha (set at run time): masked pixels are the camera image tinted at that opacity, the
    others untouched (outside the banner, contours, boxes and labels, which cover a few per cent)."""
    overlays = SequencedCollector(h.ros, f"{NS}/overlay")
    assert spin_until(h.ros, lambda: publisher_count(h.ros, overlays.sub), 10.0)
    spin_for(h.ros, 0.5)
    h.send_query("alpha", "the cup")
    try:
        for alpha in (0.0, 0.8):
            set_param(h, "overlay_alpha", alpha)
            name = f"alpha_{alpha}"
            frame = h.send_image(name, rgb=WIDE)
            r = answered(h, "alpha", name)
            got = overlays.for_frame(name)
            assert got is not None, "no overlay"
            overlay = decode(got[0])[BANNER_ROWS:]
            mask = check_mask(r.mask, frame.width, frame.height, frame.header)[BANNER_ROWS:]
            assert mask.sum() > 1000 and (~mask).sum() > 1000, "too little mask (or background) to judge"
            rgb, clean = WIDE[BANNER_ROWS:], ~ink(overlay)
            assert (mask & clean).sum() > 1000 and (~mask & clean).sum() > 1000, "too much drawn over to judge"
            assert tint_match(overlay, rgb, mask & clean, alpha) > 0.98, alpha
            assert tint_match(overlay, rgb, mask & clean, 0.5) < 0.1, alpha  # not the default opacity
            assert tint_match(overlay, rgb, ~mask & clean, 0.0) > 0.98, alpha  # the background is untouched
    finally:
        set_param(h, "overlay_alpha", 0.5)
        overlays.close()


def answered_stamps(h: Harness, qid: str, prefix: str) -> list[float]:
    """Header stamps (s) of the answered frames whose frame_id starts with ``prefix``, in order."""
    found = h.results.matching(lambda r: r.query_id == qid and r.header.frame_id.startswith(prefix))
    return sorted(r.header.stamp.sec + r.header.stamp.nanosec * 1e-9 for r in found)


def stream(h: Harness, prefix: str, seconds: float, rate_hz: float = 10.0, until: Any = None) -> None:
    """Publish frames like a camera for ``seconds`` (or until ``until()``)."""
    for k in range(int(seconds * rate_hz)):
        h.image_pub.publish(image_msg(h.ros, RGB, f"{prefix}{k:03d}"))
        spin_for(h.ros, 1.0 / rate_hz)
        if until is not None and until():
            return


def test_max_rate_hz_caps_the_continuous_query(h: Harness) -> None:
    """A 10 Hz camera with max_rate_hz 0.5 (set at run time): answers at least 2 s apart; with 0 the same
    camera is answered faster than that."""
    period = 2.0
    set_param(h, "max_rate_hz", 1.0 / period)
    try:
        h.send_query("rate", "the cup")
        stream(h, "rate_capped_", 4.5)
        spin_for(h.ros, 0.5)
        capped = answered_stamps(h, "rate", "rate_capped_")
        assert 2 <= len(capped) <= 3, capped
        assert min(np.diff(capped)) >= period - 0.3, np.diff(capped)
    finally:
        set_param(h, "max_rate_hz", 0.0)
    stream(h, "rate_free_", 4.0, until=lambda: len(answered_stamps(h, "rate", "rate_free_")) >= 4)
    spin_for(h.ros, 0.3)
    free = answered_stamps(h, "rate", "rate_free_")
    assert len(free) >= 3 and min(np.diff(free)) < period - 0.3, free


def counters(values: dict[str, str]) -> dict[str, int]:
    names = ("frames_received", "frames_encoded", "batches", "queries_answered", "frames_dropped_overwritten")
    return {n: int(values[n]) for n in names + ("errors", "frames_bad", "pending_jobs")}


def delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    return {k: after[k] - before[k] for k in before}


def test_diagnostics_fields_follow_what_the_node_does(h: Harness) -> None:
    """/diagnostics from this node: identity fields, then each counter moving as the node works."""
    spin_for(h.ros, 1.2)  # earlier tests' last frame gets older than max_image_age_s: no query takes it
    values = h.diag_values(fresh=True)
    assert (values["preset"], values["device"], values["image_topic"]) == ("tiny", "cpu", f"{NS}/image")
    assert (values["image_reliability"], values["enabled"], values["active_query"]) == ("reliable", "True", "")
    before = counters(values)

    h.send_query("diag", "the cup")  # continuous
    assert spin_until(h.ros, lambda: h.fresh_diag("active_query") == "the cup", 5.0)
    h.send_image("diag_1")
    assert answered(h, "diag", "diag_1").encode_ms > 0
    h.send_query("diag_once", "the saucer", once=True)  # on the same (still fresh) frame: encoded once
    assert answered(h, "diag_once", "diag_1").encode_ms == 0.0
    values = h.diag_values(fresh=True)
    after = counters(values)
    assert delta(before, after) == dict.fromkeys(before, 0) | {
        "frames_received": 1, "frames_encoded": 1, "batches": 2, "queries_answered": 2
    }
    assert float(values["encode_ms"]) == 0.0 and float(values["segment_ms"]) > 0  # the last batch: cached

    call(h.ros, h.enable, SetBool.Request(data=False))
    assert h.fresh_diag("enabled") == "False"
    call(h.ros, h.enable, SetBool.Request(data=True))
    assert h.fresh_diag("enabled") == "True"

    before = after  # a service call waiting for the next frame is pending until it comes
    future = h.segment.call_async(Segment.Request(query="the cup", frame_policy="next", timeout_s=20.0))
    assert spin_until(h.ros, lambda: h.fresh_diag("pending_jobs") == "1", 10.0)
    h.send_image("diag_2")
    assert spin_until(h.ros, future.done, 15.0) and future.result().success, future.result()
    answered(h, "diag", "diag_2")
    values = h.diag_values(fresh=True)
    after = counters(values)
    assert float(values["encode_ms"]) > 0
    assert delta(before, after) == dict.fromkeys(before, 0) | {
        "frames_received": 1, "frames_encoded": 1, "batches": 1, "queries_answered": 2
    }

    call(h.ros, h.clear, Trigger.Request())  # no query: the idle worker looks at each frame, none is dropped
    assert spin_until(h.ros, lambda: h.fresh_diag("active_query") == "", 5.0)
    before = after
    for k in range(3):
        h.send_image(f"diag_unasked_{k}")
    after = counters(h.diag_values(fresh=True))
    assert delta(before, after) == dict.fromkeys(before, 0) | {"frames_received": 3}

    before = after  # a malformed image inside a service request: a bad frame and an error, reported
    bad = image_msg(h.ros, RGB, "diag_bad")
    bad.data = array.array("B", bytes(bad.data)[:100])
    resp = call(h.ros, h.segment, Segment.Request(query="the cup", image=bad))
    assert not resp.success and "bad image" in resp.message
    status = h.status(fresh=True)
    after = counters({kv.key: kv.value for kv in status.values})
    assert delta(before, after) == dict.fromkeys(before, 0) | {"frames_bad": 1, "errors": 1}
    assert status.level == status.WARN and "bad image" in status.message, (status.level, status.message)
