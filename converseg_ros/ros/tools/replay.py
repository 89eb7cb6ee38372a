"""Camera replay: publish images from a folder, bundled photos or a rosbag2 / MCAP / ROS 1 bag as a camera.

    converseg-replay --skimage coffee chelsea --rate 2 --topic /converseg/image
    converseg-replay --images photos/ --rate 5 --loop
    converseg-replay --bag recording/ --bag-topic /camera/color/image_raw      # rosbag2 dir (sqlite3 or mcap)
    converseg-replay --bag recording.mcap                                      # a single MCAP file

In a colcon workspace (console scripts are not on PATH there): ros2 run converseg_ros camera_replay --skimage coffee

Frames are re-stamped with the current time (``--keep-stamps`` keeps the recorded ones, which the node
rejects as stale unless its clock is the bag's: use_sim_time).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import rclpy
from rclpy.node import Node
from sensor_msgs.msg import CompressedImage, Image

from converseg_ros.ros.msgs import qos
from converseg_ros.ros.msgs.image_codec import encode

IMAGE_TYPES = ("sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
SKIMAGE_PHOTOS = ("coffee", "chelsea", "astronaut", "rocket")


def skimage_photos(names: list[str]) -> Iterator[tuple[str, np.ndarray]]:
    """Real photos shipped with scikit-image (RGB uint8)."""
    import skimage.data

    for name in names:
        if name not in SKIMAGE_PHOTOS and not hasattr(skimage.data, name):
            raise SystemExit(f"unknown scikit-image photo {name!r}; try {', '.join(SKIMAGE_PHOTOS)}")
        rgb = np.asarray(getattr(skimage.data, name)())
        if rgb.ndim == 2:
            rgb = np.repeat(rgb[:, :, None], 3, axis=2)
        yield name, np.ascontiguousarray(rgb[:, :, :3], dtype=np.uint8)


def folder_images(paths: list[str]) -> Iterator[tuple[str, np.ndarray]]:
    """Image files (or folders of them, sorted) as RGB uint8."""
    import cv2

    files: list[Path] = []
    for p in map(Path, paths):
        files += sorted(f for f in p.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES) if p.is_dir() else [p]
    if not files:
        raise SystemExit(f"no images in {paths}")
    for f in files:
        bgr = cv2.imread(str(f), cv2.IMREAD_COLOR)
        if bgr is None:
            print(f"skipping unreadable {f}", file=sys.stderr)
            continue
        yield f.name, np.ascontiguousarray(bgr[:, :, ::-1])


def _fill_from_record(record: Any, kind: str) -> Image | CompressedImage:
    """A deserialized bag message (rosbags or mcap_ros2 object) -> rclpy message."""
    data = record.data
    data = data.tobytes() if hasattr(data, "tobytes") else bytes(data)
    if kind.endswith("CompressedImage"):
        msg: Any = CompressedImage(format=record.format)
    else:
        msg = Image(
            height=int(record.height),
            width=int(record.width),
            encoding=record.encoding,
            is_bigendian=int(record.is_bigendian),
            step=int(record.step),
        )
    msg.header.frame_id = record.header.frame_id
    msg.header.stamp.sec, msg.header.stamp.nanosec = (
        int(record.header.stamp.sec),
        int(record.header.stamp.nanosec),
    )
    msg.data = data
    return msg


def bag_messages(path: str, topic: str | None) -> Iterator[tuple[str, Image | CompressedImage]]:
    """Image/CompressedImage messages of a bag: a rosbag2 folder or ROS 1 .bag (rosbags), or an .mcap file
    (mcap + mcap-ros2-support). ``topic`` None = every image topic."""
    p = Path(path)
    if p.suffix == ".mcap" and p.is_file():
        from mcap_ros2.reader import read_ros2_messages

        for item in read_ros2_messages(str(p), topics=[topic] if topic else None):
            schema = item.schema.name if item.schema else ""
            if schema in IMAGE_TYPES:
                kind = schema.rsplit("/", 1)[-1]
                yield item.channel.topic, _fill_from_record(item.ros_msg, kind)
        return
    from rosbags.highlevel import AnyReader

    with AnyReader([p]) as reader:
        conns = [
            c for c in reader.connections if c.msgtype in IMAGE_TYPES and (topic is None or c.topic == topic)
        ]
        if not conns:
            raise SystemExit(
                f"no image topic {topic or ''} in {path}; topics: "
                f"{sorted({c.topic + ' [' + c.msgtype + ']' for c in reader.connections})}"
            )
        for conn, _, raw in reader.messages(connections=conns):
            yield conn.topic, _fill_from_record(reader.deserialize(raw, conn.msgtype), conn.msgtype)


class ReplayPublisher:
    """Publishes frames on ``topic`` at ``rate_hz`` (Image, or CompressedImage for compressed bag data)."""

    def __init__(self, node: Node, topic: str, frame_id: str = "camera_optical_frame") -> None:
        self.node = node
        self.frame_id = frame_id
        self.topic = topic
        self._image_pub = node.create_publisher(Image, topic, qos.output_qos(1))
        self._compressed_pub: Any = None
        self.published = 0

    def subscribers(self) -> int:
        """Subscriptions matched on the image topic."""
        return self._image_pub.get_subscription_count()

    def publish_rgb(self, rgb: np.ndarray, encoding: str = "rgb8") -> Image:
        """Publish an RGB array (as rgb8 or bgr8), stamped now."""
        pixels = rgb[:, :, ::-1] if encoding == "bgr8" else rgb
        msg = encode(np.ascontiguousarray(pixels), encoding, Image())
        msg.header.frame_id = self.frame_id
        msg.header.stamp = self.node.get_clock().now().to_msg()
        self._image_pub.publish(msg)
        self.published += 1
        return msg

    def publish_msg(self, msg: Image | CompressedImage, keep_stamp: bool = False) -> None:
        """Publish a recorded message (re-stamped now unless ``keep_stamp``)."""
        if not keep_stamp:
            msg.header.stamp = self.node.get_clock().now().to_msg()
        msg.header.frame_id = msg.header.frame_id or self.frame_id
        if isinstance(msg, CompressedImage):
            if self._compressed_pub is None:
                self._compressed_pub = self.node.create_publisher(
                    CompressedImage, self.topic.rstrip("/") + "/compressed", qos.output_qos(1)
                )
            self._compressed_pub.publish(msg)
        else:
            self._image_pub.publish(msg)
        self.published += 1


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="converseg-replay", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--images", nargs="+", help="image files or folders")
    src.add_argument("--skimage", nargs="+", help=f"bundled photos: {', '.join(SKIMAGE_PHOTOS)}")
    src.add_argument("--bag", help="rosbag2 folder, ROS 1 .bag or .mcap file")
    p.add_argument("--bag-topic", help="image topic inside the bag (default: every image topic)")
    p.add_argument(
        "--topic", default="/converseg/image", help="topic to publish on (default /converseg/image)"
    )
    p.add_argument("--rate", type=float, default=10.0, help="frames per second (default 10)")
    p.add_argument(
        "--hold",
        type=float,
        default=0.0,
        help="seconds to keep re-publishing each still image (images/skimage; default: one frame)",
    )
    p.add_argument("--loop", action="store_true", help="start over at the end")
    p.add_argument("--count", type=int, default=0, help="stop after this many frames (0 = no limit)")
    p.add_argument("--encoding", default="rgb8", choices=["rgb8", "bgr8"], help="encoding for still images")
    p.add_argument("--frame-id", default="camera_optical_frame", help="frame_id for still images")
    p.add_argument("--keep-stamps", action="store_true", help="keep the recorded stamps of bag messages")
    p.add_argument(
        "--wait-subscriber",
        type=float,
        default=0.0,
        metavar="S",
        help="wait up to S seconds for a subscriber before the first frame (default: don't)",
    )
    p.add_argument("--max-width", type=int, default=0, help="downscale still images wider than this")
    return p.parse_args(argv)


def _resize(rgb: np.ndarray, max_width: int) -> np.ndarray:
    if max_width <= 0 or rgb.shape[1] <= max_width:
        return rgb
    import cv2

    h = round(rgb.shape[0] * max_width / rgb.shape[1])
    return np.ascontiguousarray(cv2.resize(rgb, (max_width, h), interpolation=cv2.INTER_AREA))


def main(argv: list[str] | None = None) -> int:
    """``converseg-replay``: publish frames until done (or Ctrl-C)."""
    from rclpy.utilities import remove_ros_args

    argv = sys.argv if argv is None else argv
    args = parse_args(remove_ros_args(argv)[1:])
    rclpy.init(args=argv)
    node = Node("camera_replay")
    pub = ReplayPublisher(node, args.topic, args.frame_id)
    period = 1.0 / args.rate if args.rate > 0 else 0.0
    deadline = time.monotonic() + args.wait_subscriber
    while time.monotonic() < deadline and pub.subscribers() == 0:
        rclpy.spin_once(node, timeout_sec=0.05)
    next_t = time.monotonic()
    try:
        while True:
            if args.bag:
                frames: Iterator[Any] = (msg for _, msg in bag_messages(args.bag, args.bag_topic))
            else:
                src = skimage_photos(args.skimage) if args.skimage else folder_images(args.images)
                frames = (rgb for _, rgb in src)
            for frame in frames:
                repeats = max(1, round(args.hold * args.rate)) if not args.bag else 1
                for _ in range(repeats):
                    if isinstance(frame, np.ndarray):
                        pub.publish_rgb(_resize(frame, args.max_width), args.encoding)
                    else:
                        pub.publish_msg(frame, args.keep_stamps)
                    if args.count and pub.published >= args.count:
                        return 0
                    next_t += period
                    rclpy.spin_once(node, timeout_sec=max(0.0, next_t - time.monotonic()))
            if not args.loop:
                return 0
    except KeyboardInterrupt:
        return 0
    finally:
        node.get_logger().info(f"published {pub.published} frames on {args.topic}")
        node.destroy_node()
        rclpy.try_shutdown()


if __name__ == "__main__":
    sys.exit(main())
