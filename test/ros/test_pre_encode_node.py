"""pre_encode_hz in converseg_node over real DDS: while frames stream and no query is due the node encodes
the newest frame (diagnostics count it), and a once-query with frame policy `latest` is then answered on
that frame without a new encoding (encode_ms 0, frames_encoded unchanged); off (0) nothing is encoded
ahead. The parameter can be changed at run time."""

from __future__ import annotations

import pytest
from camera_helpers import camera_diagnostics, set_parameters, wait_for_camera_diagnostics
from diagnostic_msgs.msg import DiagnosticArray
from ros_helpers import Collector, image_msg, photo, spin_for, spin_until
from ros_nodes import start_node
from sensor_msgs.msg import Image

from converseg_ros.msg import SegmentationQuery, SegmentationResult
from converseg_ros.ros.msgs import qos

pytestmark = pytest.mark.timeout(180)
NS = "/cs_pre"
STATUS = f"{NS}/converseg_node: inference"
RGB = photo(128)


def stream(ros, pub, seconds: float, hz: float = 10.0) -> None:  # noqa: ANN001
    for k in range(int(seconds * hz)):
        pub.publish(image_msg(ros, RGB, f"pre_{k}"))
        spin_for(ros, 1 / hz)


def test_pre_encoding_answers_a_new_query_without_encoding(ros, tmp_path) -> None:  # noqa: ANN001
    node = start_node(ros, NS, ["-p", "pre_encode_hz:=0.0", "-p", "max_image_age_s:=5.0"], tmp_path / "node.log")
    try:
        image = ros.create_publisher(Image, f"{NS}/image", qos.output_qos(1))
        query = ros.create_publisher(SegmentationQuery, f"{NS}/query", qos.command_qos())
        results = Collector(ros, SegmentationResult, f"{NS}/result")
        diagnostics = Collector(ros, DiagnosticArray, "/diagnostics")
        assert spin_until(ros, lambda: image.get_subscription_count() and query.get_subscription_count(), 20.0)

        stream(ros, image, 1.5)  # off: frames arrive, nothing is encoded
        off = wait_for_camera_diagnostics(ros, diagnostics.items, STATUS, "frames_received", lambda v: int(v) >= 10)
        assert off and off["frames_encoded"] == "0" and off["frames_pre_encoded"] == "0", off

        set_parameters(ros, f"{NS}/converseg_node", pre_encode_hz=5.0)
        stream(ros, image, 2.0)
        on = wait_for_camera_diagnostics(ros, diagnostics.items, STATUS, "frames_pre_encoded", lambda v: int(v) >= 3)
        assert on, camera_diagnostics(diagnostics.items, STATUS)
        assert int(on["frames_pre_encoded"]) <= 2.0 * 5 + 2  # bounded by pre_encode_hz
        spin_for(ros, 1.0)  # the last frame is encoded ahead by now (5 Hz)
        seen = len(diagnostics.items)
        assert spin_until(ros, lambda: len(diagnostics.items) >= seen + 2, 10.0)  # counters after that
        encoded = int(camera_diagnostics(diagnostics.items, STATUS)["frames_encoded"])

        msg = SegmentationQuery(id="pre_q", text="the cup", mode=SegmentationQuery.MODE_ONCE)
        msg.header.stamp = ros.get_clock().now().to_msg()
        query.publish(msg)
        got = spin_until(ros, lambda: results.matching(lambda r: r.query_id == "pre_q"), 20.0)
        assert got and got[0].success, got and got[0].message
        assert got[0].encode_ms == 0.0 and got[0].inference_ms > 0  # answered on the encoded frame
        after = wait_for_camera_diagnostics(
            ros, diagnostics.items, STATUS, "answers_pre_encoded", lambda v: int(v) >= 1
        )
        assert after and int(after["frames_encoded"]) == encoded, (encoded, after)
    finally:
        assert node.stop() in (0, -2), node.output()[-3000:]
