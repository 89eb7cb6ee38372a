"""The hard-case recorder without ROS: each reason keeps a frame, the rate limit (fake clock) and the disk budget
hold, flags record or annotate, a recorder that cannot keep up never blocks its caller, and what it writes is a
rosbag2 that the mcap reader, rosbags and the data engine's bag source (query text as the instruction) read;
a kill leaves the closed chunks readable."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from converseg_ros.engine.core import SegmentationOutput
from converseg_ros.regions import Region
from converseg_ros.serving.frame_slot import Frame
from converseg_ros.serving.plain_frame import Header, PlainFrame
from converseg_ros.serving.queries import MODE_CONTINUOUS, MODE_TRACK, Batch, Outcome, Query
from converseg_ros.serving.recording import bag
from converseg_ros.serving.recording.judge import HardCaseJudge, mask_iou
from converseg_ros.serving.recording.recorder import QUEUE_BATCHES, HardCaseRecorder
from converseg_ros.serving.recording.settings import (
    FLAG,
    LOW_SCORE,
    NOTHING_FOUND,
    REASONS,
    TRACK_DISAGREED,
    RecordSettings,
)

pytestmark = pytest.mark.timeout(120)
H, W = 48, 64
T0 = 1_700_000_000 * 10**9


def Msg() -> PlainFrame:  # noqa: N802 - a frame message as the node stores it (no pixels needed)
    return PlainFrame(header=Header("cam_optical"))


class FakeClock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def output(mask: np.ndarray, score: float) -> SegmentationOutput:
    regions = [Region(0, (0, 0, W, H), (W / 2, H / 2), int(mask.sum()), score, np.zeros((0, 2), np.int32))]
    return SegmentationOutput("p", mask, score, regions if mask.any() else [])


def batch(seq: int, outcomes: list[Outcome], camera: str = "", model: str = "tiny") -> Batch:
    rgb = np.full((H, W, 3), seq % 256, np.uint8)
    return Batch(Frame(Msg(), seq, T0 + seq * 10**8, 0), rgb, outcomes, camera=camera, model=model)


def half(left: bool) -> np.ndarray:
    mask = np.zeros((H, W), bool)
    mask[:, : W // 2] = left
    mask[:, W // 2:] = not left
    return mask


CUP = Query("c1", "the cup on the saucer", 0, MODE_CONTINUOUS)
TRACK = Query("t1", "the handle I can grasp", 0, MODE_TRACK)


def good(query: Query = CUP) -> Outcome:
    return Outcome(query, output=output(half(True), 0.9))


def settings(tmp_path: Path, **kw) -> RecordSettings:  # noqa: ANN003
    return RecordSettings(**{"enabled": True, "dir": str(tmp_path / "records"), "min_interval_s": 0.0, **kw})


def wait_for(pred, timeout: float = 10.0) -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def sessions(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if p.is_dir())


def read_session(session: Path, topics: list[str]) -> list:
    from converseg_ros.data.robot_logs import iter_messages

    return list(iter_messages(session, topics))


def test_judge_each_reason_and_the_track_iou() -> None:
    judge, s = HardCaseJudge(), RecordSettings()
    assert mask_iou(half(True), half(True)) == 1.0 and mask_iou(half(True), half(False)) == 0.0
    assert judge.judge(batch(1, [good()]), s) == []
    low = judge.judge(batch(2, [Outcome(CUP, output=output(half(True), 0.1))]), s)
    assert [f.reason for f in low] == [LOW_SCORE] and "0.100 < 0.3" in low[0].detail
    empty = judge.judge(batch(3, [Outcome(CUP, output=output(np.zeros((H, W), bool), 0.9))]), s)
    assert [f.reason for f in empty] == [NOTHING_FOUND]
    assert judge.judge(batch(4, [Outcome(CUP, error="bad image")]), s) == []  # failures are not judged
    # a track: grounded (start), tracked, re-grounded on a mask that agrees, then on one that does not
    steps = [(half(True), True, "start"), (half(True), False, ""), (half(True), True, "every_n"),
             (half(True), False, ""), (half(False), True, "low_iou")]
    found = [judge.judge(batch(10 + k, [Outcome(TRACK, output=output(m, 0.9), grounded=g, reason=r)]), s)
             for k, (m, g, r) in enumerate(steps)]
    assert found[:4] == [[], [], [], []]
    assert [f.reason for f in found[4]] == [TRACK_DISAGREED] and "IoU 0.000 < 0.5" in found[4][0].detail
    assert "(low_iou)" in found[4][0].detail
    off = RecordSettings(reasons=frozenset({LOW_SCORE}))
    assert judge.judge(batch(20, [Outcome(CUP, output=output(np.zeros((H, W), bool), 0.9))]), off) == []
    latest_batch, latest = judge.latest("t1")
    assert latest_batch.frame.seq == 14 and latest.reason == "low_iou" and judge.latest("nope") is None


def test_each_reason_records_and_the_bag_reads_back(tmp_path: Path) -> None:
    clock = FakeClock()
    rec = HardCaseRecorder(settings(tmp_path, chunk_s=3600.0), node="/ns/converseg_node", clock=clock)
    rec.start()
    rec.offer(batch(1, [good()]))  # nothing hard: not kept
    rec.offer(batch(2, [Outcome(CUP, output=output(half(True), 0.05))]))
    rec.offer(batch(3, [Outcome(CUP, output=output(np.zeros((H, W), bool), 0.8))]))
    rec.offer(batch(4, [Outcome(TRACK, output=output(half(True), 0.9), reason="start")]))
    rec.offer(batch(5, [Outcome(TRACK, output=output(half(False), 0.9), reason="every_n")], camera=""))
    rec.offer(batch(6, [good()]))
    wait_for(lambda: rec.status().records == 3)
    flagged = rec.flag("c1", "", "wrong", "it picked the saucer")
    assert flagged.ok and flagged.record_id.endswith("-000004"), flagged
    again = rec.flag("c1", "", "right")  # the same frame: a note on its record, no second copy
    assert again.ok and again.record_id == flagged.record_id and "noted" in again.message
    assert not rec.flag("nope", "", "wrong").ok and not rec.flag("c1", "", "maybe").ok
    assert rec.stop()
    status = rec.status()
    assert (status.records, status.flags, status.errors, status.enabled) == (4, 2, 0, False)

    (session,) = sessions(tmp_path / "records")
    assert session.name.split("_")[0].endswith("Z") and (session / "metadata.yaml").exists()
    metas = [json.loads(m.value) for m in read_session(session, [bag.META_TOPIC])]
    kept = [m for m in metas if "answers" in m]
    assert [m["reasons"][0]["reason"] for m in kept] == [LOW_SCORE, NOTHING_FOUND, TRACK_DISAGREED, FLAG]
    assert kept[0]["answers"][0]["text"] == CUP.text and kept[0]["answers"][0]["score"] == 0.05
    assert kept[3]["reasons"][0]["detail"] == "wrong: it picked the saucer" and kept[3]["node"] == "/ns/converseg_node"
    assert all(m["model"] == "tiny" and m["session"] == session.name for m in kept)
    notes = [m for m in metas if "flag" in m]
    assert len(notes) == 1 and notes[0]["id"] == flagged.record_id and notes[0]["flag"]["verdict"] == "right"

    images = read_session(session, [bag.image_topic("")])
    assert [m.stamp_ns for m in images] == [T0 + s * 10**8 for s in (2, 3, 5, 6)]  # the cameras' stamps
    assert all(m.value.shape == (H, W, 3) for m in images) and images[0].value[0, 0, 0] == 2

    # the data engine reads the session as one log, each frame with its query as the instruction
    from converseg_ros.dataengine.sources import Sampling, bag_units

    (unit,) = bag_units(session, [bag.image_topic("")], Sampling(every_s=0.0), bag.QUERY_TOPIC)
    items = list(unit.frames())
    assert [i.source["instructions"] for i in items] == [[CUP.text], [CUP.text], [TRACK.text], [CUP.text]]
    assert len({i.id for i in items}) == 4 and {i.source["episode_key"] for i in items} == {str(session)}

    # each chunk opens alone with the mcap reader (rosbag2's schema and CDR encodings)
    from mcap.reader import make_reader
    from mcap_ros2.decoder import DecoderFactory

    topics = set()
    for path in session.glob("*.mcap"):
        with open(path, "rb") as fh:
            reader = make_reader(fh, decoder_factories=[DecoderFactory()])
            for schema, channel, _, msg in reader.iter_decoded_messages():
                topics.add((channel.topic, schema.name, channel.message_encoding))
                if schema.name == "sensor_msgs/msg/Image":
                    assert (msg.encoding, msg.height, msg.width, msg.header.frame_id) == ("rgb8", H, W, "cam_optical")
    assert ("/record/image", "sensor_msgs/msg/Image", "cdr") in topics and (bag.QUERY_TOPIC, "std_msgs/msg/String",
                                                                             "cdr") in topics


def test_rate_limit_on_the_injected_clock(tmp_path: Path) -> None:
    clock = FakeClock()
    rec = HardCaseRecorder(settings(tmp_path, min_interval_s=2.0), clock=clock)
    rec.start()
    low = lambda seq: batch(seq, [Outcome(CUP, output=output(half(True), 0.01))])  # noqa: E731
    kept_at = []
    for seq in range(1, 41):  # a hard case every 0.25 s for 10 s
        before = rec.status().records + rec.status().skipped_rate
        rec.offer(low(seq))
        wait_for(lambda b=before: rec.status().records + rec.status().skipped_rate > b)
        if rec.status().records > len(kept_at):
            kept_at.append(clock.t)
        clock.t += 0.25
    flag = rec.flag("c1", "", "wrong")  # flags are exempt
    rec.stop()
    assert flag.ok
    assert len(kept_at) == 5 and all(b - a >= 2.0 for a, b in zip(kept_at, kept_at[1:], strict=False)), kept_at
    assert rec.status().skipped_rate == 35 and rec.status().records == 6


def test_budget_drops_the_oldest_and_holds(tmp_path: Path, monkeypatch) -> None:  # noqa: ANN001
    from converseg_ros.serving.recording import recorder

    clock = FakeClock()
    root = tmp_path / "records"
    frame_mb = H * W * 3 / 2**20
    s = settings(tmp_path, chunk_s=0.5, max_mb=round(40 * frame_mb + 0.05, 3))
    monkeypatch.setattr(recorder, "session_name", lambda wall_ns: "20200101T000000Z_elsewhere_1_abcd")
    rec = HardCaseRecorder(s, clock=clock)  # an older session of another run: dropped first
    rec.start()
    rec.offer(batch(1, [Outcome(CUP, output=output(half(True), 0.01))]))
    wait_for(lambda: rec.status().records == 1)
    rec.stop()
    monkeypatch.undo()
    (old,) = sessions(root)
    assert len(read_session(old, ["/record/image"])) == 1

    rec = HardCaseRecorder(s, clock=clock)
    rec.start()
    sizes = []
    for seq in range(2, 102):
        rec.offer(batch(seq, [Outcome(CUP, output=output(half(True), 0.01))]))
        wait_for(lambda n=seq - 1: rec.status().records == n)
        clock.t += 0.1  # a chunk closes every 5 records
        sizes.append(sum(p.stat().st_size for p in root.rglob("*") if p.is_file() and p.suffix in (".mcap", ".json")))
    rec.stop()
    status = rec.status()
    assert status.errors == 0, status.last_error
    assert max(sizes) <= s.max_bytes, (max(sizes), s.max_bytes)
    assert status.dropped_budget > 0 and not old.exists()  # the other run's session went first
    (session,) = sessions(root)
    stamps = [m.stamp_ns for m in read_session(session, ["/record/image"])]
    assert stamps == sorted(stamps) and stamps[-1] == T0 + 101 * 10**8 and 25 <= len(stamps) <= 40
    assert stamps[0] > T0 + 2 * 10**8  # the newest records stayed, the oldest went



def test_dropping_chunks_never_lists_a_missing_file(tmp_path: Path, monkeypatch) -> None:  # noqa: ANN001
    """A reader of the live bag (the data engine on the records folder) finds every file metadata.yaml lists,
    at every step of the budget's drops; the session folder goes with its last chunk."""
    import yaml

    clock = FakeClock()
    root = tmp_path / "records"
    rec = HardCaseRecorder(settings(tmp_path, chunk_s=0.5), clock=clock)
    rec.start()
    for seq in range(1, 13):
        rec.offer(batch(seq, [Outcome(CUP, output=output(half(True), 0.01))]))
        wait_for(lambda n=seq: rec.status().records == n)
        clock.t += 0.1  # a chunk closes every 5 records
    rec.stop()
    (session,) = sessions(root)
    chunks = bag.units(root)
    assert len(chunks) >= 2
    checks = []
    real_unlink = Path.unlink

    def unlink_then_check(self: Path, missing_ok: bool = False) -> None:
        real_unlink(self, missing_ok=missing_ok)
        meta = session / "metadata.yaml"
        if meta.exists():
            listed = yaml.safe_load(meta.read_text())["rosbag2_bagfile_information"]["relative_file_paths"]
            checks.append([name for name in listed if not (session / name).exists()])

    monkeypatch.setattr(Path, "unlink", unlink_then_check)
    for unit in chunks[:-1]:
        bag.drop(unit)
        assert len(read_session(session, ["/record/image"])) > 0
    bag.drop(chunks[-1])
    monkeypatch.undo()
    assert checks and all(missing == [] for missing in checks), checks
    assert not session.exists()

def test_a_recorder_behind_never_blocks_and_says_so(tmp_path: Path, monkeypatch) -> None:  # noqa: ANN001
    release = threading.Event()
    real = bag.McapSession.write

    def slow_write(self, record, now):  # noqa: ANN001, ANN202 - a disk that stalls
        release.wait(20)
        return real(self, record, now)

    monkeypatch.setattr(bag.McapSession, "write", slow_write)
    rec = HardCaseRecorder(settings(tmp_path))
    rec.start()
    t0 = time.perf_counter()
    for seq in range(1, 51):
        rec.offer(batch(seq, [Outcome(CUP, output=output(half(True), 0.01))]))
    offered_s = time.perf_counter() - t0
    assert rec.status().dropped_busy >= 50 - QUEUE_BATCHES - 1
    release.set()
    rec.stop()
    assert rec.status().records >= 1 and offered_s < 1.0, offered_s  # 50 offers while the writer stalled


def test_a_kill_loses_only_the_open_chunk_and_the_next_start_sweeps_it(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    root = tmp_path / "records"
    code = f"""
import sys, time, numpy as np
sys.path.insert(0, {str(Path(__file__).parent)!r})
from test_recorder import batch, settings, Outcome, CUP, output, half
from converseg_ros.serving.recording.recorder import HardCaseRecorder
from pathlib import Path
rec = HardCaseRecorder(settings(Path({str(tmp_path)!r}), chunk_s=0.3))
rec.start()
for seq in range(1, 100):
    rec.offer(batch(seq, [Outcome(CUP, output=output(half(True), 0.01))]))
    time.sleep(0.05)
    if seq == 20:
        print("ready", flush=True)
time.sleep(60)
"""
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, cwd=str(tmp_path),
                            env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert proc.stdout.readline().strip() == "ready"
    time.sleep(0.2)
    proc.kill()
    proc.wait(10)
    (session,) = sessions(root)
    assert any(p.name.endswith(".part") for p in session.iterdir())  # the open chunk, cut short
    kept = read_session(session, ["/record/image"])
    assert len(kept) >= 5  # closed chunks read back
    rec = HardCaseRecorder(settings(tmp_path))
    rec.start()
    rec.offer(batch(500, [Outcome(CUP, output=output(half(True), 0.01))]))
    wait_for(lambda: rec.status().records == 1)
    rec.stop()
    assert not any(p.name.endswith(".part") for p in session.iterdir())
    assert len(read_session(session, ["/record/image"])) == len(kept)


def test_folder_format(tmp_path: Path) -> None:
    import cv2

    rec = HardCaseRecorder(settings(tmp_path, format="folder"))
    rec.start()
    rec.offer(batch(7, [Outcome(CUP, output=output(half(True), 0.01))], camera="wrist"))
    wait_for(lambda: rec.status().records == 1)
    assert rec.flag("c1", "wrist", "wrong").ok
    rec.stop()
    (session,) = sessions(tmp_path / "records")
    record = json.loads((session / "000001" / "record.json").read_text())
    assert record["camera"] == "wrist" and record["instruction"] == CUP.text
    assert record["reasons"][0]["reason"] == LOW_SCORE
    image = cv2.imread(str(session / "000001" / "image.png"))[:, :, ::-1]
    assert image.shape == (H, W, 3) and int(image[0, 0, 0]) == 7
    assert json.loads((session / "notes.jsonl").read_text())["flag"]["verdict"] == "wrong"
    assert set(REASONS) == {LOW_SCORE, NOTHING_FOUND, TRACK_DISAGREED, FLAG}
