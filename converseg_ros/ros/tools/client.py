"""ConverSegClient (numpy/str in, result out) and the ``converseg-query`` command.

converseg-query "segment surfaces safe to place hot items"                 # service, camera frame
converseg-query "the cup" --image photo.jpg --save-overlay out.png        # service, inline image
converseg-query "the cup" --publish                                        # continuous topic query
converseg-query "the cup" --publish --once --save-overlay out.png          # once; waits for its result
converseg-query "the cup" --publish --track --id cup --camera wrist        # tracked on camera wrist
converseg-query "" --stop --id cup                                         # stop it
converseg-query --swap release/v2                                          # swap the model, node serving

In a colcon workspace (console scripts are not on PATH there): ros2 run converseg_ros converseg_query "the cup"
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import rclpy
from rclpy.node import Node
from sensor_msgs.msg import Image

from converseg_ros.ros.compat import publisher_count
from converseg_ros.ros.msgs import qos
from converseg_ros.ros.msgs.image_codec import decode, encode
from converseg_ros.ros.msgs.interfaces import Segment, SegmentationQuery, SegmentationResult


class ConverSegClient:
    """Talks to one converseg_node (in ``namespace``) from an existing rclpy node."""

    def __init__(self, node: Node, namespace: str = "", camera: str = "") -> None:
        """``camera``: results and overlays are read from that camera's topics (``<namespace>/<camera>/``)."""
        self.node = node
        self._prefix = prefix = namespace.rstrip("/") + "/" if namespace else ""
        outputs = f"{prefix}{camera}/" if camera else prefix
        self._segment = node.create_client(Segment, f"{prefix}segment")
        self._query_pub = node.create_publisher(SegmentationQuery, f"{prefix}query", qos.command_qos())
        self._results: list[SegmentationResult] = []
        self._overlays: list[Image] = []
        self._result_subs = {camera: self._subscribe_results(camera)}
        self._overlay_topic = f"{outputs}overlay"
        self._overlay_sub: Any = None

    def _subscribe_results(self, camera: str) -> Any:
        topic = f"{self._prefix}{camera}/result" if camera else f"{self._prefix}result"
        return self.node.create_subscription(
            SegmentationResult, topic, self._results.append, qos.output_qos(qos.CLIENT_RESULT_DEPTH)
        )

    def node_cameras(self, timeout_s: float = 10.0) -> list[str]:
        """The node's cameras: ``[""]`` for one unnamed camera, else their names (sorted); [] when no node
        answers on the query topic within ``timeout_s``. Read from the node's ``cameras`` parameter (complete
        at once; the graph may not have shown every camera's topics yet), else from the graph."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._query_pub.get_subscription_count():
                subscribers = [i for i in self.node.get_subscriptions_info_by_topic(self._query_pub.topic_name)
                               if (i.node_name, i.node_namespace) != (self.node.get_name(), self.node.get_namespace())]
                for info in subscribers:
                    cameras = self._cameras_parameter(info.node_namespace, info.node_name, deadline)
                    if cameras is not None:
                        return sorted(cameras)
                found = self._cameras_in_graph()  # (a node without the parameter service)
                if found:
                    return found
            rclpy.spin_once(self.node, timeout_sec=0.05)
        return self._cameras_in_graph()

    def _cameras_parameter(self, namespace: str, name: str, deadline: float) -> list[str] | None:
        """The ``cameras`` parameter of node ``namespace/name``; None if it does not answer by ``deadline``."""
        from rcl_interfaces.msg import ParameterType
        from rcl_interfaces.srv import GetParameters

        client = self.node.create_client(GetParameters, f"{namespace.rstrip('/')}/{name}/get_parameters")
        try:
            if not client.wait_for_service(timeout_sec=max(0.0, deadline - time.monotonic())):
                return None
            future = client.call_async(GetParameters.Request(names=["cameras"]))
            while not future.done() and time.monotonic() < deadline:
                rclpy.spin_once(self.node, timeout_sec=0.05)
            values = future.result().values if future.done() else []
            if not values or values[0].type != ParameterType.PARAMETER_STRING_ARRAY:
                return None
            return list(values[0].string_array_value) or [""]
        finally:
            self.node.destroy_client(client)

    def _cameras_in_graph(self) -> list[str]:
        """Cameras whose result topics the graph shows a publisher for (sorted)."""
        found = []
        result_type = "converseg_ros/msg/SegmentationResult"
        for name, types in self.node.get_topic_names_and_types():
            rest = name[len(self._prefix) :] if name.startswith(self._prefix) else ""
            ours = rest == "result" or rest.count("/") == 1 and rest.endswith("/result")
            if ours and result_type in types and self.node.get_publishers_info_by_topic(name):
                found.append(rest[: -len("result")].rstrip("/"))  # (our own subscription is no camera)
        return sorted(found)

    def follow(self, cameras: list[str]) -> None:
        """Read the results of ``cameras`` (e.g. every camera of the node for a query to all of them) instead."""
        for camera in set(self._result_subs) - set(cameras):
            self.node.destroy_subscription(self._result_subs.pop(camera))
        for camera in cameras:
            if camera not in self._result_subs:
                self._result_subs[camera] = self._subscribe_results(camera)

    def wait_for_service(self, timeout_s: float = 10.0) -> bool:
        """True once the node's segment service is reachable."""
        return self._segment.wait_for_service(timeout_sec=timeout_s)

    def segment(
        self,
        query: str,
        image: np.ndarray | None = None,
        frame_policy: str = "",
        timeout_s: float = 0.0,
        return_overlay: bool = False,
        query_id: str = "",
        camera: str = "",
    ) -> Segment.Response:
        """Call the segment service (``image``: HxWx3 uint8 RGB, else a frame of ``camera``, "" = any); blocks."""
        req = Segment.Request(
            query=query,
            query_id=query_id,
            camera=camera,
            frame_policy=frame_policy,
            timeout_s=float(timeout_s),
            return_overlay=return_overlay,
        )
        if image is not None:
            encode(np.ascontiguousarray(image, dtype=np.uint8), "rgb8", req.image)
            req.image.header.stamp = self.node.get_clock().now().to_msg()
        future = self._segment.call_async(req)
        wait = (timeout_s or 60.0) + 10.0
        rclpy.spin_until_future_complete(self.node, future, timeout_sec=wait)
        if not future.done():
            raise TimeoutError(f"no answer from the segment service within {wait:.0f} s")
        return future.result()

    def publish_query(
        self, text: str, once: bool = False, query_id: str = "", mode: int | None = None, camera: str = ""
    ) -> SegmentationQuery:
        """Publish a query on the node's ``query`` topic: continuous unless ``once``, or any SegmentationQuery
        ``mode`` (MODE_TRACK, MODE_STOP, ...); on ``camera`` ("" = every camera)."""
        if mode is None:
            mode = SegmentationQuery.MODE_ONCE if once else SegmentationQuery.MODE_CONTINUOUS
        msg = SegmentationQuery(id=query_id, text=text, mode=mode, camera=camera)
        msg.header.stamp = self.node.get_clock().now().to_msg()
        self._query_pub.publish(msg)
        return msg

    def wait_for_topics(self, timeout_s: float = 10.0, results: bool = True) -> bool:
        """True once the node subscribes to our queries and (with ``results``) we receive every followed
        camera's results (discovery done)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._query_pub.get_subscription_count() and (
                not results or all(publisher_count(self.node, sub) for sub in self._result_subs.values())
            ):
                return True
            rclpy.spin_once(self.node, timeout_sec=0.05)
        return False

    def watch_overlay(self) -> None:
        """Start collecting overlay images (the node renders them only while someone subscribes)."""
        if self._overlay_sub is None:
            self._overlay_sub = self.node.create_subscription(
                Image, self._overlay_topic, self._overlays.append, qos.output_qos(1)
            )

    def wait_for_result(
        self, query_id: str = "", text: str = "", timeout_s: float = 30.0, camera: str | None = None
    ) -> SegmentationResult:
        """First result for ``query_id`` (or, when the node assigned the id, for ``text``), from ``camera``
        if given."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for result in self._results:
                if camera is not None and result.camera != camera:
                    continue
                if (query_id and result.query_id == query_id) or (not query_id and result.query == text):
                    self._results.remove(result)
                    return result
            rclpy.spin_once(self.node, timeout_sec=0.05)
        raise TimeoutError(f"no result for query {query_id or text!r} within {timeout_s:.0f} s")

    def wait_for_overlay(self, header: Any, timeout_s: float = 5.0) -> Image | None:
        """The overlay whose header matches a result's header (None on timeout)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for overlay in self._overlays:
                if overlay.header.stamp == header.stamp and overlay.header.frame_id == header.frame_id:
                    return overlay
            rclpy.spin_once(self.node, timeout_sec=0.05)
        return None


def describe(result: SegmentationResult) -> str:
    """Human-readable summary of a result."""
    lines = [
        f"query {result.query_id}: {result.query!r}",
        f"  success: {result.success}" + (f" ({result.message})" if result.message else ""),
        f"  frame: {result.header.frame_id or '-'} "
        f"@ {result.header.stamp.sec}.{result.header.stamp.nanosec:09d}",
    ]
    if result.success:
        coverage = 0.0
        if result.mask.width and result.mask.height:
            coverage = float(np.count_nonzero(decode(result.mask))) / (result.mask.width * result.mask.height)
        lines.append(
            f"  mask: {result.mask.width}x{result.mask.height} {result.mask.encoding}, "
            f"{coverage:.1%} of the image, score {result.score:.3f}"
        )
        if result.grounding_reason or not result.grounded:  # a tracked query
            lines.append(
                f"  grounded ({result.grounding_reason})" if result.grounded
                else f"  tracked, {result.grounding_age} frames since grounding"
            )
        lines.append(
            f"  timing: encode {result.encode_ms:.0f} ms, inference {result.inference_ms:.0f} ms, "
            f"latency {result.latency_ms:.0f} ms"
        )
        for r in result.regions:
            b = r.bbox
            pos = (
                f" at ({r.position.x:.2f}, {r.position.y:.2f}, {r.position.z:.2f}) m"
                if r.has_position
                else ""
            )
            lines.append(
                f"  region {r.id}: score {r.score:.2f}, area {r.area_px} px, bbox x={b.x_offset} "
                f"y={b.y_offset} w={b.width} h={b.height}, centroid ({r.centroid_x:.0f}, "
                f"{r.centroid_y:.0f}){pos}"
            )
    return "\n".join(lines)


def save_rgb(msg: Image, path: str) -> None:
    """Write an rgb8/bgr8 image message as PNG/JPEG."""
    import cv2

    from converseg_ros.ros.msgs.image_input import image_to_rgb8

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(path, image_to_rgb8(msg)[:, :, ::-1]):
        raise OSError(f"could not write {path}")


def load_rgb(path: str) -> np.ndarray:
    """Read an image file as HxWx3 uint8 RGB."""
    import cv2

    bgr = cv2.imread(path, cv2.IMREAD_COLOR)
    if bgr is None:
        raise SystemExit(f"cannot read image {path}")
    return np.ascontiguousarray(bgr[:, :, ::-1])


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="converseg-query", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("query", nargs="?", default="", help="the query in natural language")
    p.add_argument(
        "--namespace", default="/converseg", help="namespace of converseg_node (default /converseg)"
    )
    p.add_argument("--image", help="segment this image file (service only; default: a camera frame)")
    p.add_argument("--policy", default="", choices=["", "latest", "next"], help="camera frame policy")
    p.add_argument("--timeout", type=float, default=0.0, help="seconds (0 = the node's default)")
    p.add_argument("--publish", action="store_true", help="publish on the query topic instead of the service")
    p.add_argument("--once", action="store_true", help="with --publish: answer once, not continuously")
    p.add_argument("--track", action="store_true", help="with --publish: a tracked query (prints its first result)")
    p.add_argument("--stop", action="store_true", help="stop the continuous or tracked query --id")
    p.add_argument("--camera", default="", help="camera name (nodes with `cameras`); default: every/any camera")
    p.add_argument("--id", default="", help="query id (echoed in results)")
    p.add_argument("--save-overlay", metavar="PNG", help="write the overlay image here")
    p.add_argument("--wait-service", type=float, default=30.0, help="seconds to wait for the node")
    p.add_argument("--swap", metavar="DIR", help="swap the node's model to this release folder ('' = the preset's "
                   "own) while it serves; prints the outcome (ros/tools/swap.py)")
    return p.parse_args(argv)


def _publish(client: ConverSegClient, args: argparse.Namespace) -> int:
    """``--publish``: send the query (to ``--camera``, or to every camera of the node) and print the first
    result of each camera it went to; exit 1 when one failed."""
    cameras = [args.camera] if args.camera else client.node_cameras(args.wait_service)
    if not cameras:
        print(f"converseg_node not found under {args.namespace!r}", file=sys.stderr)
        return 2
    if args.save_overlay and len(cameras) > 1:
        print(f"--save-overlay needs --camera: this node has cameras {', '.join(cameras)}", file=sys.stderr)
        return 2
    client.follow(cameras)
    if args.save_overlay:
        client.watch_overlay()
    if not client.wait_for_topics(args.wait_service):
        print(f"converseg_node not found under {args.namespace!r}", file=sys.stderr)
        return 2
    qid = args.id or f"cli-{int(time.time() * 1000) % 10**8}"
    mode = SegmentationQuery.MODE_TRACK if args.track else None
    client.publish_query(args.query, once=args.once, query_id=qid, mode=mode, camera=args.camera)
    deadline = time.monotonic() + (args.timeout or 60.0)
    ok = True
    for camera in cameras:
        result = client.wait_for_result(qid, timeout_s=max(0.1, deadline - time.monotonic()), camera=camera)
        print(describe(result) + (f"\n  camera: {camera}" if camera else ""))
        ok = ok and result.success
    if args.save_overlay:
        overlay = client.wait_for_overlay(result.header)
        if overlay is None:
            print("no overlay received", file=sys.stderr)
        else:
            save_rgb(overlay, args.save_overlay)
            print(f"  overlay: {args.save_overlay}")
    return 0 if ok else 1


def main(argv: list[str] | None = None) -> int:
    """``converseg-query``: print the result of one query (exit 1 when it failed)."""
    from rclpy.utilities import remove_ros_args

    argv = sys.argv if argv is None else argv
    args = parse_args(remove_ros_args(argv)[1:])
    rclpy.init(args=argv)
    node = Node("converseg_query")
    client = ConverSegClient(node, args.namespace, args.camera)
    try:
        if args.swap is not None:
            from converseg_ros.ros.tools.swap import swap_model

            return swap_model(node, args.namespace, args.swap, args.timeout or 300.0, args.wait_service)
        if args.stop:  # (a stop without --camera stops the query on every camera)
            if not args.id or not client.wait_for_topics(args.wait_service, results=False):
                print("--stop needs --id and a running converseg_node", file=sys.stderr)
                return 2
            client.publish_query("", query_id=args.id, mode=SegmentationQuery.MODE_STOP, camera=args.camera)
            time.sleep(0.5)  # let the reliable publisher deliver it before the process exits
            print(f"stop sent for query {args.id}" + (f" on camera {args.camera}" if args.camera else ""))
            return 0
        if args.publish:
            return _publish(client, args)
        else:
            if not client.wait_for_service(args.wait_service):
                print(f"segment service not available under {args.namespace!r}", file=sys.stderr)
                return 2
            image = load_rgb(args.image) if args.image else None
            resp = client.segment(
                args.query, image, args.policy, args.timeout, bool(args.save_overlay), args.id, args.camera
            )
            result = resp.result
            if not resp.success:
                result.message = resp.message
            overlay = resp.overlay if resp.overlay.height else None
        print(describe(result))
        if args.save_overlay:
            if overlay is None:
                print("no overlay received", file=sys.stderr)
            else:
                save_rgb(overlay, args.save_overlay)
                print(f"  overlay: {args.save_overlay}")
        return 0 if result.success else 1
    except TimeoutError as exc:
        print(str(exc), file=sys.stderr)
        return 1
    finally:
        node.destroy_node()
        rclpy.try_shutdown()


if __name__ == "__main__":
    sys.exit(main())
