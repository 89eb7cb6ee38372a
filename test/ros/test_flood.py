"""Every query gets exactly one answer, at any load, over real DDS (tiny preset, a camera at 10 Hz): a bounded
flood of once, tracked, stop, unknown-camera and too-long queries at 100/s, counted by id; the same across a
deactivation with queries in flight, while inactive, and after activating again. An answer is a result or
a refusal with its reason; nothing may be lost and no once-query answered twice. Also: a huge id or camera
field is cut in the refusal and in the log."""

from __future__ import annotations

import collections
import time

import pytest
from lifecycle_msgs.msg import Transition
from lifecycle_msgs.srv import ChangeState
from ros_helpers import Collector, image_msg, photo, spin_for, spin_until
from ros_nodes import start_node
from sensor_msgs.msg import Image

from converseg_ros.msg import SegmentationQuery, SegmentationResult
from converseg_ros.ros.msgs import qos

pytestmark = pytest.mark.timeout(420)
NS = "/cs_flood"
RGB = photo(96)
ONCE, TRACK, STOP = SegmentationQuery.MODE_ONCE, SegmentationQuery.MODE_TRACK, SegmentationQuery.MODE_STOP


class Flood:
    """A camera at 10 Hz, a query publisher at 100/s and every result, counted by query id."""

    def __init__(self, ros) -> None:  # noqa: ANN001
        self.ros = ros
        self.image = ros.create_publisher(Image, f"{NS}/image", qos.output_qos(1))
        self.query = ros.create_publisher(SegmentationQuery, f"{NS}/query", qos.command_qos())
        self.results = Collector(ros, SegmentationResult, f"{NS}/result", qos.output_qos(qos.CLIENT_RESULT_DEPTH))
        self.change = ros.create_client(ChangeState, f"{NS}/converseg_node/change_state")
        self.sent: dict[str, int] = {}  # id -> mode
        self._next_frame = 0.0
        assert spin_until(
            ros, lambda: self.image.get_subscription_count() and self.query.get_subscription_count()
            and self.results.sub.get_publisher_count(), 20.0,
        )
        self.send("warm_up", ONCE)  # the node follows our reliable camera and answers: the flood starts then
        assert spin_until(ros, lambda: self.answers().get("warm_up"), 60.0, step=self.tick)
        del self.sent["warm_up"]

    def tick(self) -> None:
        """Spin once; a camera frame every 0.1 s."""
        if time.monotonic() >= self._next_frame:
            self.image.publish(image_msg(self.ros, RGB, "cam"))
            self._next_frame = time.monotonic() + 0.1
        rclpy_spin(self.ros)

    def send(self, qid: str, mode: int, text: str = "the cup", camera: str = "") -> None:
        msg = SegmentationQuery(id=qid, text=text, mode=mode, camera=camera)
        msg.header.stamp = self.ros.get_clock().now().to_msg()
        self.query.publish(msg)
        self.sent[qid] = mode

    def flood(self, queries: list[tuple], rate_hz: float = 100.0, during=None) -> None:  # noqa: ANN001
        """Send ``queries`` ((id, mode, text, camera)) at ``rate_hz``, calling ``during(k)`` before each."""
        start = time.monotonic()
        for k, query in enumerate(queries):
            if during is not None:
                during(k)
            while time.monotonic() < start + k / rate_hz:
                self.tick()
            self.send(*query)

    def answers(self) -> dict[str, list[SegmentationResult]]:
        by_id = collections.defaultdict(list)
        for r in self.results.items:
            by_id[r.query_id].append(r)
        return by_id

    def settle(self, timeout: float = 120.0) -> dict[str, list[SegmentationResult]]:
        """Keep the camera going until every sent id has an answer (or ``timeout``); the answers by id."""
        spin_until(self.ros, lambda: all(q in self.answers() for q in self.sent), timeout, step=self.tick)
        for _ in range(20):  # a little longer: a second answer to a once-query would show now
            self.tick()
            time.sleep(0.05)
        return self.answers()


def rclpy_spin(node) -> None:  # noqa: ANN001
    import rclpy

    rclpy.spin_once(node, timeout_sec=0.002)


def table(answers: dict, entries: list[tuple[str, str]]) -> dict[str, dict[str, int]]:
    """Per kind of query (``entries``: (id, kind)): sent / answered / refused / lost / twice (an answer
    given more than once where exactly one is due)."""
    rows: dict[str, dict[str, int]] = {}
    for qid, kind in entries:
        row = rows.setdefault(kind, dict.fromkeys(("sent", "answered", "refused", "lost", "twice"), 0))
        mine = answers.get(qid, [])
        stop_answers = [r for r in mine if r.message.startswith(("stopped", "no continuous or tracked"))]
        if kind == "stop":  # the stop's own answer (the track it names shares the id)
            got = stop_answers
        elif kind == "tracked":  # its answers; stopped before its first frame: the stop answered it
            got = [r for r in mine if r not in stop_answers] or stop_answers
        else:
            got = mine
        row["sent"] += 1
        row["lost"] += not got
        row["answered"] += bool(got) and got[0].success
        row["refused"] += bool(got) and not got[0].success
        row["twice"] += kind != "tracked" and len(got) > 1
    return rows


@pytest.fixture(scope="module")
def flood(ros, tmp_path_factory):  # noqa: ANN001, ANN201
    node = start_node(ros, NS, ["-p", "max_tracks:=64"], tmp_path_factory.mktemp("flood") / "node.log")
    try:
        yield Flood(ros), node
    finally:
        assert node.stop() in (0, -2), node.output()[-3000:]


def test_a_flood_of_every_mode_is_answered_query_by_query(flood) -> None:  # noqa: ANN001
    h, node = flood
    queries, entries = [], []
    for k in range(300):
        kind = k % 5
        if kind == 0:
            queries.append((f"o{k}", ONCE))
            entries.append((f"o{k}", "once"))
        elif kind == 1:
            queries.append((f"t{k}", TRACK))
            entries.append((f"t{k}", "tracked"))
        elif kind == 2:
            queries.append((f"t{k - 51}", STOP))  # the track started 0.5 s earlier (k < 51: no such track)
            entries.append((f"t{k - 51}", "stop"))
        elif kind == 3:
            queries.append((f"u{k}", ONCE, "the cup", "no_such_camera"))
            entries.append((f"u{k}", "unknown camera"))
        else:
            queries.append((f"l{k}", ONCE, "x" * 600))  # longer than max_query_chars
            entries.append((f"l{k}", "too long"))
    h.flood(queries)
    answers = h.settle()
    rows = table(answers, entries)
    print("flood (active):", rows)
    assert all(row["lost"] == 0 and row["twice"] == 0 for row in rows.values()), (rows, node.stacks())
    assert rows["unknown camera"]["refused"] == rows["unknown camera"]["sent"] == 60
    assert rows["too long"]["refused"] == 60 and rows["once"]["answered"] > 0
    assert rows["stop"]["answered"] == 50 and rows["stop"]["refused"] == 10  # 10 named no track yet
    assert "Traceback" not in node.output()


def test_queries_around_a_deactivation_and_while_inactive_are_answered(ros, flood) -> None:  # noqa: ANN001
    h, node = flood
    ids = [f"d{k}" for k in range(150)]
    future = None

    def deactivate_midway(k: int) -> None:
        nonlocal future
        if k == 60:  # queries in flight: waiting for a frame or in the batch being computed
            request = ChangeState.Request(transition=Transition(id=Transition.TRANSITION_DEACTIVATE))
            future = h.change.call_async(request)

    h.flood([(qid, ONCE, "the cup", "") for qid in ids], during=deactivate_midway)
    assert spin_until(ros, lambda: future.done(), 60.0) and future.result().success, node.stacks()
    inactive = [f"i{k}" for k in range(50)]
    h.flood([(qid, ONCE) for qid in inactive])
    activate = h.change.call_async(ChangeState.Request(transition=Transition(id=Transition.TRANSITION_ACTIVATE)))
    assert spin_until(ros, lambda: activate.done(), 120.0, step=h.tick) and activate.result().success
    after = [f"a{k}" for k in range(50)]
    h.flood([(qid, ONCE) for qid in after])
    answers = h.settle()
    rows = {name: table(answers, [(q, "once") for q in group])["once"] for name, group in
            (("around deactivation", ids), ("while inactive", inactive), ("after activation", after))}
    print("flood (lifecycle):", rows)
    print("reasons:", collections.Counter(answers[q][0].message[:60] for q in ids if q in answers))
    assert all(row["lost"] == 0 and row["twice"] == 0 for row in rows.values()), (rows, node.stacks())
    messages = {answers[q][0].message for q in inactive}
    assert messages == {"refused: node inactive (model not loaded)"}, messages
    assert rows["after activation"]["answered"] > 0


def test_huge_id_and_camera_fields_are_cut_in_the_answer_and_the_log(flood) -> None:  # noqa: ANN001
    h, node = flood
    huge = "i" * 1_000_000
    h.send(huge, ONCE, "the cup", "c" * 1_000_000)
    got = spin_until(h.ros, lambda: [r for r in h.results.items if r.query_id.startswith("iiii")], 20.0)
    assert got and not got[0].success and len(got[0].query_id) <= 129
    assert "unknown camera" in got[0].message and len(got[0].message) < 400
    spin_for(h.ros, 0.5)
    assert max(len(line) for line in node.output().splitlines()) < 2000
