"""A running InferenceWorker over the real tiny engine with named cameras, in the test's process and without
ROS: camera frames are plain objects (a header with frame_id and stamp, RGB pixels, an encoding) decoded by a
function that refuses unknown encodings as the node's codec does. Also the engine subclass that counts its
encoder calls."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import numpy as np

from converseg_ros.engine import ConverSegEngine
from converseg_ros.serving.book import QueryBook
from converseg_ros.serving.camera import CameraFeed
from converseg_ros.serving.plain_frame import Header, PlainFrame, decode
from converseg_ros.serving.queries import Batch
from converseg_ros.serving.settings import CameraSettings, Clocks, WorkerSettings
from converseg_ros.serving.worker import InferenceWorker


def photo(width: int = 160, name: str = "coffee") -> np.ndarray:
    """A photo bundled with scikit-image (coffee, chelsea, astronaut, ...), downscaled (RGB uint8)."""
    import cv2
    import skimage.data

    rgb = getattr(skimage.data, name)()
    h = round(rgb.shape[0] * width / rgb.shape[1])
    return np.ascontiguousarray(cv2.resize(rgb, (width, h), interpolation=cv2.INTER_AREA))


def frame(rgb: np.ndarray, frame_id: str, encoding: str = "rgb8") -> PlainFrame:
    return PlainFrame(rgb, Header(frame_id), encoding)


class CountingEngine(ConverSegEngine):
    """The real engine, counting its encoder calls."""

    def __init__(self, real: ConverSegEngine) -> None:
        super().__init__(real.net)
        self.calls = {"encode_frame": 0, "encode_sam_frame": 0, "add_prefix": 0}

    def encode_frame(self, image):  # noqa: ANN001, ANN201
        self.calls["encode_frame"] += 1
        return super().encode_frame(image)

    def encode_sam_frame(self, image):  # noqa: ANN001, ANN201
        self.calls["encode_sam_frame"] += 1
        return super().encode_sam_frame(image)

    def add_prefix(self, frame):  # noqa: ANN001, ANN201
        if frame.prefix is None:
            self.calls["add_prefix"] += 1
        return super().add_prefix(frame)


class StampClock:
    """The clock frame stamps are judged by: real time plus an offset a test moves forward to age every frame
    at once (so no test waits out max_image_age_s in wall-clock time)."""

    def __init__(self) -> None:
        self.offset_ns = 0

    def advance(self, seconds: float) -> None:
        self.offset_ns += int(seconds * 1e9)

    def __call__(self) -> int:
        return time.time_ns() + self.offset_ns


class Rig:
    """A running worker over CountingEngine (or ``engine`` itself with ``count=False``; not started with
    ``start=False``) with named cameras; collects published batches and refused topic jobs.
    ``clock.advance(s)`` ages the frames received."""

    def __init__(
        self,
        engine: ConverSegEngine,
        cameras: list[str],
        settings: WorkerSettings,
        camera: CameraSettings | None = None,
        pipelined: bool = False,
        publish: Callable[[Batch], None] | None = None,
        count: bool = True,
        start: bool = True,
    ) -> None:
        self.engine = CountingEngine(engine) if count else engine
        self.batches: list[Batch] = []
        self.unanswered: list = []
        self._published = threading.Condition()
        feeds = [CameraFeed(n, source=f"/rig/{n}/image", settings=camera or CameraSettings()) for n in cameras]
        self.book = QueryBook(cameras)
        self.clock = StampClock()
        self.worker = InferenceWorker(
            feeds, self.book, decode, publish or self._publish, settings, Clocks(stamp_ns=self.clock),
            on_unanswered=self.unanswered.append, pipelined=pipelined,
        )
        if start:
            self.worker.start(self.engine)

    def _publish(self, batch: Batch) -> None:
        with self._published:
            self.batches.append(batch)
            self._published.notify_all()

    def put(self, camera: str, rgb: np.ndarray, frame_id: str, encoding: str = "rgb8") -> None:
        now = self.clock()
        self.worker.feed(camera).slot.put(frame(rgb, frame_id, encoding), now, now)

    def wait(self, pred, timeout: float = 30.0) -> list[Batch]:  # noqa: ANN001
        with self._published:
            assert self._published.wait_for(lambda: pred(self.batches), timeout), [
                (b.camera, b.frame.msg.header.frame_id) for b in self.batches
            ]
            return list(self.batches)

    def results(self, query_id: str) -> list[tuple[str, object]]:
        with self._published:
            batches = list(self.batches)
        return [(b.frame.msg.header.frame_id, o) for b in batches for o in b.outcomes if o.query.id == query_id]
