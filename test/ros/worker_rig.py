"""A running InferenceWorker over the real tiny engine with named cameras, in the test's process (no ROS
graph), and the engine subclass that counts its encoder calls (imported by this module's own name)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import numpy as np
from sensor_msgs.msg import Image

from converseg_ros.engine import ConverSegEngine
from converseg_ros.ros.msgs.image_codec import encode
from converseg_ros.ros.msgs.image_input import image_to_rgb8
from converseg_ros.serving.camera import CameraFeed
from converseg_ros.serving.frame_slot import LatestSlot
from converseg_ros.serving.worker import Batch, InferenceWorker, WorkerSettings


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


class Rig:
    """A running worker over CountingEngine with named cameras; collects published batches."""

    def __init__(
        self, engine: ConverSegEngine, cameras: list[str], settings: WorkerSettings,
        publish: Callable[[Callable[[Batch], None]], Callable[[Batch], None]] | None = None,
    ) -> None:
        """``publish``: wraps the rig's collector into what the worker calls (e.g. a PublishQueue's put)."""
        self.engine = CountingEngine(engine)
        self.batches: list[Batch] = []
        self._published = threading.Condition()
        feeds = [CameraFeed(name, LatestSlot(), f"/rig/{name}/image") for name in cameras]
        sink = publish(self._publish) if publish is not None else self._publish
        self.worker = InferenceWorker(self.engine, feeds, image_to_rgb8, sink, time.time_ns, settings)
        for feed in feeds:
            feed.slot._on_put = self.worker.notify
        self.worker.start()

    def _publish(self, batch: Batch) -> None:
        with self._published:
            self.batches.append(batch)
            self._published.notify_all()

    def put(self, camera: str, rgb: np.ndarray, frame_id: str, encoding: str = "rgb8") -> None:
        msg = encode(rgb, "rgb8", Image())
        msg.encoding = encoding
        msg.header.frame_id = frame_id
        self.worker.feed(camera).slot.put(msg, time.time_ns(), time.time_ns())

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
