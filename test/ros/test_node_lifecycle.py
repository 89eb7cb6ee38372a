"""The lifecycle of converseg_node driven through its lifecycle services (``autostart: false``), observed from
this process over DDS: the graph (subscriptions, publishers, services), the node's diagnostics and its
answers. Activation failures: the node stays inactive and keeps serving; with ``autostart`` it exits with 3."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import psutil
import pytest
from diagnostic_msgs.msg import DiagnosticArray
from lifecycle_msgs.msg import Transition
from lifecycle_msgs.srv import ChangeState, GetState
from rclpy.node import Node
from ros_helpers import Collector, call, check_mask, image_msg, photo, spin_for, spin_until
from ros_nodes import start_node
from sensor_msgs.msg import Image

from converseg_ros.modeling.checkpoints import release_files
from converseg_ros.modeling.presets import tiny_root
from converseg_ros.ros.msgs import qos
from converseg_ros.ros.msgs.interfaces import SegmentationQuery, SegmentationResult
from converseg_ros.ros.tools.node_command import node_command
from converseg_ros.srv import Segment

pytestmark = pytest.mark.timeout(240)
NS = "/cs_life"
RGB = photo(120)
WORKER_KEYS = {"frames_encoded", "batches", "queries_answered", "pending_jobs"}  # only while a worker runs


def corrupt_plm(tmp_path: Path) -> Path:
    path = tmp_path / "plm.torch"
    path.write_bytes(b"PK\x03\x04 not a checkpoint")
    return path


def plm_override(path: Path) -> str:
    return f"model_overrides:='{json.dumps({'plm_checkpoint': str(path)})}'"


def test_activation_failure_with_autostart_exits_with_3(tmp_path: Path) -> None:
    """A corrupt checkpoint passes configure (the file exists) and fails activation: exit code 3."""
    cmd = node_command("/cs_bad_ckpt", {"preset": "tiny", "device": "cpu"}, ["-p", plm_override(corrupt_plm(tmp_path))])
    out = subprocess.run(cmd, cwd="/", capture_output=True, text=True, timeout=120, check=False)
    text = out.stdout + out.stderr
    assert out.returncode == 3, text[-3000:]
    assert "activate failed: cannot load the model" in text and "activation failed" in text, text[-3000:]


class Life:
    """Lifecycle clients and graph queries for the node in NS."""

    def __init__(self, ros: Node) -> None:
        self.ros = ros
        self.change = ros.create_client(ChangeState, f"{NS}/converseg_node/change_state")
        self.get = ros.create_client(GetState, f"{NS}/converseg_node/get_state")
        self.segment = ros.create_client(Segment, f"{NS}/segment")
        self.image_pub = ros.create_publisher(Image, f"{NS}/image", qos.output_qos(1))
        self.query_pub = ros.create_publisher(SegmentationQuery, f"{NS}/query", qos.command_qos())
        self.results = Collector(ros, SegmentationResult, f"{NS}/result")
        self.diag = Collector(ros, DiagnosticArray, "/diagnostics")

    def transition(self, tid: int, expect: str, ok: bool = True) -> None:
        resp = call(self.ros, self.change, ChangeState.Request(transition=Transition(id=tid)), timeout=90.0)
        assert resp.success == ok, f"transition {tid}: success {resp.success}"
        assert self.state() == expect

    def state(self) -> str:
        return call(self.ros, self.get, GetState.Request()).current_state.label

    def graph(self) -> dict[str, int]:
        """What the graph shows of the node: subscriptions on its inputs, publishers of its outputs."""
        return {
            "image_subs": self.ros.count_subscribers(f"{NS}/image"),
            "query_subs": self.ros.count_subscribers(f"{NS}/query"),
            "result_pubs": self.ros.count_publishers(f"{NS}/result"),
            "segment": int(self.segment.service_is_ready()),
        }

    def wait_graph(self, expected: dict[str, int]) -> None:
        assert spin_until(self.ros, lambda: self.graph() == expected, 10.0), (self.graph(), expected)

    def status(self) -> dict[str, str]:
        """Key/values of a diagnostics status of this node published after this call (plus its message)."""
        name = f"{NS}/converseg_node:"
        seen = len(self.diag.items)
        got = spin_until(
            self.ros, lambda: [s for m in self.diag.items[seen:] for s in m.status if s.name.startswith(name)], 5.0
        )
        assert got, "no diagnostics"
        return {kv.key: kv.value for kv in got[-1].values} | {"_message": got[-1].message}

    def segment_inline(self, qid: str) -> Segment.Response:
        req = Segment.Request(query="the cup", query_id=qid)
        req.image = image_msg(self.ros, RGB, qid)
        return call(self.ros, self.segment, req)

    def check_inactive(self) -> None:
        """No camera subscriptions, no worker (diagnostics), frames not received, queries and calls refused
        (the query topics stay subscribed while configured: each query is answered with the reason)."""
        self.wait_graph({"image_subs": 0, "query_subs": 1, "result_pubs": 1, "segment": 1})
        before = self.status()
        assert before["_message"] == "inactive (model not loaded)" and not WORKER_KEYS & before.keys(), before
        for k in range(3):
            self.image_pub.publish(image_msg(self.ros, RGB, f"inactive_{k}"))
            spin_for(self.ros, 0.1)
        assert self.status()["frames_received"] == before["frames_received"]
        resp = self.segment_inline("while_inactive")
        assert not resp.success and "not active" in resp.message, resp.message
        qid = f"inactive_q{len(self.results.items)}"
        self.query_pub.publish(SegmentationQuery(id=qid, text="the cup", mode=SegmentationQuery.MODE_ONCE))
        refused = spin_until(self.ros, lambda: self.results.matching(lambda r: r.query_id == qid), 10.0)
        assert refused and not refused[0].success and "node inactive" in refused[0].message, refused

    def check_active(self, qid: str) -> np.ndarray:
        """Inputs subscribed, a worker, topic and service queries answered; the service's mask."""
        self.wait_graph({"image_subs": 1, "query_subs": 1, "result_pubs": 1, "segment": 1})
        values = self.status()
        assert values["_message"] == "running" and WORKER_KEYS <= values.keys(), values
        self.query_pub.publish(SegmentationQuery(id=qid, text="the cup", mode=SegmentationQuery.MODE_ONCE))
        r = spin_until(
            self.ros,
            lambda: self.results.matching(lambda r: r.query_id == qid),
            20.0,
            step=lambda: self.image_pub.publish(image_msg(self.ros, RGB, f"{qid}_topic")),
        )
        assert r and r[0].success, r and r[0].message
        resp = self.segment_inline(f"{qid}_service")
        assert resp.success, resp.message
        return check_mask(resp.result.mask, RGB.shape[1], RGB.shape[0], resp.result.header)


def test_lifecycle_services_and_repeated_deactivate_activate(ros: Node, tmp_path: Path) -> None:
    """unconfigured -> configure -> activate (fails: corrupt checkpoint; stays inactive, serving) -> activate
    (good file) -> 2 x (deactivate, activate) -> deactivate -> cleanup -> configure -> activate -> shutdown,
    then a clean exit."""
    plm = corrupt_plm(tmp_path)
    node = start_node(ros, NS, ["-p", "autostart:=false", "-p", plm_override(plm)], tmp_path / "n.log", active=False)
    life = Life(ros)
    try:
        assert life.state() == "unconfigured"
        life.wait_graph({"image_subs": 0, "query_subs": 0, "result_pubs": 0, "segment": 0})

        life.transition(Transition.TRANSITION_CONFIGURE, "inactive")
        life.check_inactive()

        life.transition(Transition.TRANSITION_ACTIVATE, "inactive", ok=False)  # corrupt checkpoint
        assert "activate failed: cannot load the model" in node.output()
        life.check_inactive()

        shutil.copyfile(release_files(tiny_root())["plm_checkpoint"], plm)
        life.transition(Transition.TRANSITION_ACTIVATE, "active")
        first = life.check_active("cycle_0")
        proc = psutil.Process(node.proc.pid)
        for cycle in (1, 2):
            active_threads = proc.num_threads()
            life.transition(Transition.TRANSITION_DEACTIVATE, "inactive")
            life.check_inactive()
            assert proc.num_threads() < active_threads, "no thread ended on deactivation (the inference thread)"
            life.transition(Transition.TRANSITION_ACTIVATE, "active")
            again = life.check_active(f"cycle_{cycle}")
            np.testing.assert_array_equal(again, first)  # the same model reloaded

        life.transition(Transition.TRANSITION_DEACTIVATE, "inactive")
        life.transition(Transition.TRANSITION_CLEANUP, "unconfigured")
        life.wait_graph({"image_subs": 0, "query_subs": 0, "result_pubs": 0, "segment": 0})
        life.transition(Transition.TRANSITION_CONFIGURE, "inactive")  # configured again from scratch
        life.transition(Transition.TRANSITION_ACTIVATE, "active")
        np.testing.assert_array_equal(life.check_active("reconfigured"), first)
        life.transition(Transition.TRANSITION_ACTIVE_SHUTDOWN, "finalized")  # straight from active
        life.wait_graph({"image_subs": 0, "query_subs": 0, "result_pubs": 0, "segment": 0})
        assert node.alive(), node.output()[-3000:]
    finally:
        code = node.stop()
    out = node.output()
    assert code == 0, f"exit code {code}:\n{out[-3000:]}"
    assert out.count("model loaded in") == 4 and "Traceback" not in out, out[-3000:]


def test_twenty_lifecycle_cycles_do_not_grow_the_node(ros: Node, tmp_path: Path) -> None:
    """20 x (activate, deactivate): the node's RSS after deactivation stays flat (the model is freed and its
    memory handed back to the OS: malloc_trim after the release, a fixed mmap threshold). Bound: at most
    8 MiB from cycle 5 to cycle 20 (0.53 MiB a cycle; it was 2.3-2.9 MiB a cycle before; measured 0.15)."""
    ns = "/cs_life_cycles"  # its own namespace: no client of the previous test's node answers here
    node = start_node(ros, ns, ["-p", "autostart:=false"], tmp_path / "n.log", active=False)
    change = ros.create_client(ChangeState, f"{ns}/converseg_node/change_state")

    def transition(tid: int) -> None:
        assert call(ros, change, ChangeState.Request(transition=Transition(id=tid)), timeout=90.0).success, tid

    try:
        transition(Transition.TRANSITION_CONFIGURE)
        proc = psutil.Process(node.proc.pid)
        rss = []
        for _ in range(20):
            transition(Transition.TRANSITION_ACTIVATE)
            transition(Transition.TRANSITION_DEACTIVATE)
            spin_for(ros, 0.3)
            rss.append(proc.memory_info().rss / 2**20)
        print("RSS after each deactivation (MiB):", [round(r, 1) for r in rss])
        assert rss[-1] - rss[4] <= 8.0, [round(r, 1) for r in rss]
    finally:
        ros.destroy_client(change)
        assert node.stop() == 0, node.output()[-3000:]
