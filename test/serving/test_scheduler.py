"""The scheduler alone, on a fake clock (no model, no threads, no ROS): fairness over cameras, each camera's
own rate limit, waiting jobs that expire with their reason, the pre-encoding choice and stale frames."""

from __future__ import annotations

from dataclasses import dataclass

from serving_rig import frame

from converseg_ros.serving.book import QueryBook
from converseg_ros.serving.camera import Cached, CameraFeed
from converseg_ros.serving.queries import MODE_TRACK, Job, Query
from converseg_ros.serving.scheduler import Scheduler
from converseg_ros.serving.settings import CameraSettings, Clocks, WorkerSettings
from converseg_ros.serving.stats import Accounts, WorkerStats

RGB = None  # the scheduler never looks at pixels


class FakeClock:
    """Both clocks of the scheduler, moved by hand."""

    def __init__(self) -> None:
        self.t = 1000.0

    def advance(self, seconds: float) -> None:
        self.t += seconds

    def clocks(self) -> Clocks:
        return Clocks(stamp_ns=lambda: int(self.t * 1e9), monotonic=lambda: self.t)


@dataclass
class Sched:
    scheduler: Scheduler
    feeds: dict[str, CameraFeed]
    book: QueryBook
    clock: FakeClock
    stale: list

    def put(self, camera: str, frame_id: str, age_s: float = 0.0) -> None:
        stamp = int((self.clock.t - age_s) * 1e9)
        self.feeds[camera].slot.put(frame(RGB, frame_id), stamp, int(self.clock.t * 1e9))

    def run(self) -> tuple:
        """Plan, and pretend the plan was run at once (what the worker does after planning)."""
        return self.scheduler.plan()


def make(cameras: list[str], settings: WorkerSettings | None = None, **own: CameraSettings) -> Sched:
    clock = FakeClock()
    feeds = {n: CameraFeed(n, source=f"/{n}/image", settings=own.get(n, CameraSettings())) for n in cameras}
    book = QueryBook(cameras)
    stale: list = []
    scheduler = Scheduler(
        list(feeds.values()), book, settings or WorkerSettings(max_image_age_s=1.0), clock.clocks(),
        Accounts(WorkerStats(), list(feeds.values())), lambda f, age, cam: stale.append((cam, round(age, 3))),
    )
    return Sched(scheduler, feeds, book, clock, stale)


def test_round_robin_serves_slow_cameras_between_a_camera_that_always_has_a_frame() -> None:
    s = make(["fast", "slow_a", "slow_b"])
    for name in s.feeds:
        s.book.of(name).continuous = Query(f"c_{name}", "the cup", 0)
    served = []
    for k in range(12):
        s.put("fast", f"fast{k}")  # a new frame before every plan
        if k % 4 == 0:
            s.put("slow_a", f"a{k}")
            s.put("slow_b", f"b{k}")
        plan, _ = s.run()
        served.append(plan.feed.name if plan else None)
    # slow frames are served right after the camera served last, never after a second fast frame
    assert served == [
        "fast", "slow_a", "slow_b", "fast", "slow_a", "slow_b", "fast", "fast", "slow_a", "slow_b", "fast", "fast"
    ], served


def test_each_camera_keeps_its_own_rate_limit() -> None:
    """head at most 2 Hz, wrist at most 10 Hz, both offered a frame every 10 ms for one second."""
    s = make(
        ["head", "wrist"], head=CameraSettings(max_rate_hz=2.0), wrist=CameraSettings(max_rate_hz=10.0)
    )
    for name in s.feeds:
        s.book.of(name).continuous = Query(f"c_{name}", "the cup", 0)
    count = {"head": 0, "wrist": 0}
    waits = []
    for k in range(100):
        s.put("head", f"h{k}")
        s.put("wrist", f"w{k}")
        while True:
            plan, wait_s = s.run()
            if plan is None:
                waits.append(wait_s)
                break
            count[plan.feed.name] += 1
        s.clock.advance(0.01)
    assert count == {"head": 2, "wrist": 10}, count
    assert 0 < min(waits) <= 0.1  # it sleeps until the next camera is due, not a fixed second


def test_a_new_continuous_query_runs_on_the_frame_already_there() -> None:
    s = make(["cam"])
    s.put("cam", "f0")
    assert s.run()[0] is None  # no query yet
    s.book.of("cam").continuous = Query("a", "the cup", 0)
    plan, _ = s.run()
    assert plan.frame.msg.header.frame_id == "f0" and [q.id for q in plan.queries] == ["a"]
    assert s.run()[0] is None  # ran on f0 already
    s.book.of("cam").continuous = Query("b", "the saucer", 0)  # replaced: runs on f0 again
    assert [q.id for q in s.run()[0].queries] == ["b"]


def test_waiting_jobs_expire_with_the_reason_at_their_deadline() -> None:
    s = make(["a", "b"])
    job = Job(Query("j", "the cup", 0), "next", frame_timeout_s=5.0)
    assert s.scheduler.add(job) is None and s.scheduler.pending == 1
    s.clock.advance(4.9)
    assert s.scheduler.take_expired() == []
    assert abs(s.scheduler.until_next_deadline(1.0) - 0.1) < 0.01
    s.feeds["a"].slot.reject("unsupported image encoding 'jpeg'")
    s.clock.advance(0.1)
    [(expired, reason)] = s.scheduler.take_expired()
    assert expired is job and s.scheduler.pending == 0
    assert reason == (
        "no camera frame received on /a/image, /b/image for 5.0 s "
        "(1 malformed frames rejected, last: unsupported image encoding 'jpeg')"
    )
    assert s.scheduler.add(Job(Query("x", "q", 0), camera="c")) == "unknown camera 'c'"


def test_a_next_job_waits_for_a_frame_after_it_and_a_latest_job_takes_the_fresh_one() -> None:
    s = make(["cam"])
    s.put("cam", "before")
    nxt, latest = Job(Query("n", "q", 0), "next"), Job(Query("l", "q", 0), "latest")
    s.scheduler.add(nxt)
    s.scheduler.add(latest)
    plan, _ = s.run()
    assert plan.jobs == [latest] and plan.frame.msg.header.frame_id == "before"
    assert s.run()[0] is None
    s.put("cam", "after")
    plan, _ = s.run()
    assert plan.jobs == [nxt] and plan.frame.msg.header.frame_id == "after"


def test_pre_encoding_encodes_while_idle_at_its_rate_and_latest_jobs_use_it() -> None:
    s = make(["cam"], WorkerSettings(max_image_age_s=1.0, pre_encode_hz=2.0))
    s.put("cam", "p0")
    plan, _ = s.run()
    assert plan.pre_encode and plan.frame.msg.header.frame_id == "p0" and not plan.queries
    feed = s.feeds["cam"]
    feed.cache = Cached(plan.frame, type("Encoding", (), {"prefix": object()})(), RGB, pre_encoded=True)
    assert s.run()[0] is None  # encoded already
    s.clock.advance(0.1)
    s.put("cam", "p1")
    plan, wait_s = s.run()
    assert plan is None and abs(wait_s - 0.4) < 1e-6  # at most 2 Hz: the next pre-encoding in 0.4 s
    latest, nxt = Job(Query("l", "q", 0), "latest"), Job(Query("n", "q", 0), "next")
    s.scheduler.add(latest)
    s.scheduler.add(nxt)
    plan, _ = s.run()  # the latest job on the encoded p0 (no new encoding), the next job waits
    assert plan.jobs == [latest] and plan.frame.msg.header.frame_id == "p0" and not plan.pre_encode
    assert s.run()[0] is None
    s.put("cam", "p2")  # a frame after the next job's submission
    plan, _ = s.run()
    assert plan.jobs == [nxt] and plan.frame.msg.header.frame_id == "p2"
    s.clock.advance(1.5)  # the encoded frame is older than max_image_age_s: no longer used
    s.scheduler.add(Job(Query("late", "q", 0), "latest"))
    assert s.run()[0] is None


def test_stale_frames_are_counted_once_and_never_planned() -> None:
    s = make(["cam"], WorkerSettings(max_image_age_s=0.5))
    s.book.of("cam").continuous = Query("c", "the cup", 0)
    s.put("cam", "old", age_s=2.0)
    assert s.run()[0] is None and s.run()[0] is None
    assert s.stale == [("cam", 2.0)] and s.feeds["cam"].stats.frames_stale == 1


def test_tracks_start_on_the_next_fresh_frame_and_step_at_the_camera_rate() -> None:
    s = make(["cam"], cam=CameraSettings(max_rate_hz=5.0))
    s.book.of("cam").tracks.start(Query("t", "the cup", 0, MODE_TRACK))
    assert s.run()[0] is None  # no frame yet: the start waits
    s.put("cam", "f0")
    plan, _ = s.run()
    assert set(plan.tracks.starts) == {"t"} and not plan.tracks.step
    s.book.of("cam").tracks.finish_start("t", "running")
    s.clock.advance(0.1)
    s.put("cam", "f1")
    plan, _ = s.run()  # the first step (a start does not count against the rate)
    assert plan.tracks.step and plan.frame.msg.header.frame_id == "f1"
    s.clock.advance(0.1)
    s.put("cam", "f2")
    plan, wait_s = s.run()
    assert plan is None and abs(wait_s - 0.1) < 1e-6  # 0.1 s after the last step < 1 / 5 Hz
    s.clock.advance(0.1)
    plan, _ = s.run()
    assert plan.tracks.step and plan.frame.msg.header.frame_id == "f2"


def test_a_frame_replaced_before_the_worker_looked_is_a_drop_and_one_it_took_is_not() -> None:
    s = make(["cam"])
    s.book.of("cam").continuous = Query("c", "the cup", 0)
    s.put("cam", "f0")
    assert s.run()[0] is not None  # f0 taken
    s.put("cam", "f1")  # replaces f0, which the worker took: no drop
    s.put("cam", "f2")  # replaces f1 before the worker looked: one drop
    assert s.run()[0].frame.msg.header.frame_id == "f2"
    assert s.feeds["cam"].slot.counts().overwritten == 1
