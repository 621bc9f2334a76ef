"""The camera node as a separate process (the `rtfm_camera` console script) over real Fast DDS:
nothing blocks it, bad requests get failed replies while it keeps running, the user's world
file is never written, saves refuse to replace other files, and SIGTERM / SIGINT stop it
within seconds even while a long render runs.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import sys
import threading
import time
from pathlib import Path

import pytest
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from node_helpers import POSE_A, T_BASE_CAMERA, Caller
from rclpy.executors import SingleThreadedExecutor
from ros_helpers import collect, pick_domain_id, reliable_qos, spawn_ros_process
from sensor_msgs.msg import Image

from rtfm_ros import geometry as g
from rtfm_ros.io import messages, tf_messages
from rtfm_ros.ros import conversions as c

BIG = 2048  # a render_view of BIG x BIG takes several seconds here (tiled)


@pytest.fixture(scope="module")
def domain() -> int:
    return pick_domain_id(offset=61)


def remembered(msg) -> str:
    """The 'remembered views' value of the camera's diagnostics ('0' if absent)."""
    for status in msg.status:
        for kv in status.values:
            if kv.key == "remembered views":
                return kv.value
    return "0"


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def start_node(assets, domain: int, ns: str, world: Path):
    exe = str(Path(sys.executable).with_name("rtfm_camera"))
    return spawn_ros_process([exe, "--ros-args", "-r", f"__ns:=/{ns}", "-p", f"checkpoint:={assets['ckpt']}",
                              "-p", "device:=cpu", "-p", f"world:={world}", "-p", "width:=96", "-p", "height:=64",
                              "-p", "rate:=4.0", "-p", "publish_depth:=true", "-p", "remember_generated:=true",
                              "-p", f"max_render_pixels:={BIG * BIG}"], domain)


def view_request(size: int, x: float | None = None):
    from rtfm_ros_interfaces.srv import RenderView

    T = g.body_to_optical(tf_messages.pose_to_matrix(POSE_A) @ T_BASE_CAMERA)
    req = RenderView.Request(want_depth=False, remember=False)
    req.pose.header.frame_id = "map"
    req.pose.pose = c.pose_msg(T)
    if x is not None:
        req.pose.pose.position.x = x
    req.camera_info = c.camera_info_msg(g.PinholeCamera.from_fov(size, size, 70), 0, "view_optical")
    return req


class Background:
    """One service call running in a thread of its own (its own node and executor)."""

    def __init__(self, ctx, srv_type, name: str, request, timeout_s: float = 300.0) -> None:
        self.result, self.error = None, None
        self.node = rclpy.create_node(f"rtfm_test_bg_{os.getpid()}_{abs(hash(name)) % 10000}", context=ctx)
        self.client = self.node.create_client(srv_type, name)
        assert self.client.wait_for_service(timeout_sec=30), f"{name} did not appear"
        self.future = self.client.call_async(request)
        self.executor = SingleThreadedExecutor(context=ctx)
        self.executor.add_node(self.node)
        self.thread = threading.Thread(target=self.executor.spin_until_future_complete, args=(self.future, timeout_s),
                                       daemon=True)
        self.thread.start()

    def wait(self, timeout_s: float) -> object:
        self.thread.join(timeout_s)
        assert self.future.done(), "the background request did not answer"
        return self.future.result()

    def close(self) -> None:
        self.executor.shutdown(0.5)
        self.node.destroy_node()


def test_nothing_blocks_bad_requests_fail_and_the_users_world_is_never_written(assets, domain, ctx, tf_child, tmp_path):
    from rcl_interfaces.srv import GetParameters
    from rtfm_ros_interfaces.msg import WorldStatus
    from rtfm_ros_interfaces.srv import RenderView, WorldPath

    user_world = tmp_path / "mine.rtfm"
    shutil.copy(assets["world"], user_world)
    digest = sha256(user_world)
    caller = Caller(ctx)
    with start_node(assets, domain, "robust", user_world) as proc:
        first = collect(ctx, {"/robust/image_raw": (Image, reliable_qos())}, lambda r: len(r["/robust/image_raw"]) >= 3,
                        timeout_s=90, process=proc)
        assert first["/robust/image_raw"][0].width == 96

        # A pose beyond float32 range: a failed reply, and the node keeps serving.
        for x in (1e39, 3.4e38, float("inf")):
            res = caller(RenderView, "/robust/rtfm_camera/render_view", view_request(64, x))
            assert not res.success and res.message, res.message
        proc.check_alive()
        assert caller(RenderView, "/robust/rtfm_camera/render_view", view_request(64)).success
        req = view_request(64)
        req.remember, req.pose.pose.position.y = True, req.pose.pose.position.y + 0.5  # a new place
        assert caller(RenderView, "/robust/rtfm_camera/render_view", req).success
        diag = collect(ctx, {"/diagnostics": (DiagnosticArray, reliable_qos())},
                       lambda r: any(int(remembered(m)) >= 1 for m in r["/diagnostics"]), timeout_s=30, process=proc)
        assert remembered(diag["/diagnostics"][-1]) != "" and proc.alive()

        # A long render_view: parameters, status and the stream keep going while it is in flight.
        long_view = Background(ctx, RenderView, "/robust/rtfm_camera/render_view", view_request(BIG))
        try:
            after = time.time_ns()
            during: dict[str, bool] = {}

            def answered_while_in_flight(r) -> bool:
                fresh = [m for m in r["/robust/image_raw"] if messages.stamp_to_ns(m.header.stamp) > after]
                if len(fresh) >= 2 and r["/robust/rtfm_camera/status"]:
                    during.setdefault("stream", not long_view.future.done())
                    return True
                return False

            got = collect(ctx, {"/robust/image_raw": (Image, reliable_qos()),
                                "/robust/rtfm_camera/status": (WorldStatus, reliable_qos())},
                          answered_while_in_flight, timeout_s=60, process=proc)
            params = caller(GetParameters, "/robust/rtfm_camera/get_parameters",
                            GetParameters.Request(names=["rate"]), timeout_s=10.0)
            assert params.values[0].double_value == 4.0
            during.setdefault("parameters", not long_view.future.done())
            assert during == {"stream": True, "parameters": True}, "the long view answered first"
            assert got["/robust/rtfm_camera/status"][-1].render_rate_hz > 0
            res = long_view.wait(300)
            assert res.success and (res.image.width, res.image.height) == (BIG, BIG), res.message
        finally:
            long_view.close()

        # Saving: never over an existing file; replacing only a world file, and only when asked.
        notes = tmp_path / "notes.json"
        notes.write_text(json.dumps({"keep": "me"}))
        for service in ("save_world", "replace_world"):
            res = caller(WorldPath, f"/robust/rtfm_camera/{service}", WorldPath.Request(path=str(notes)))
            assert not res.success and str(notes) in res.message, res.message
        assert json.loads(notes.read_text()) == {"keep": "me"}
        saved = tmp_path / "saved.rtfm"
        res = caller(WorldPath, "/robust/rtfm_camera/save_world", WorldPath.Request(path=str(saved)))
        assert res.success and saved.is_file(), res.message
        res = caller(WorldPath, "/robust/rtfm_camera/save_world", WorldPath.Request(path=str(saved)))
        assert not res.success and "replace_world" in res.message
        res = caller(WorldPath, "/robust/rtfm_camera/replace_world", WorldPath.Request(path=str(saved)))
        assert res.success and "replaced" in res.message, res.message

        # A FIFO named as a world: refused at once, the services thread is not stuck on it.
        fifo = tmp_path / "world.fifo"
        os.mkfifo(fifo)
        res = caller(WorldPath, "/robust/rtfm_camera/load_world", WorldPath.Request(path=str(fifo)), timeout_s=20.0)
        assert not res.success and "regular file" in res.message
        res = caller(WorldPath, "/robust/rtfm_camera/load_world", WorldPath.Request(path=str(user_world)))
        assert res.success and res.frames == 6, res.message
        proc.check_alive()

        # SIGTERM during a long render: the process ends within a few seconds, cleanly.
        stop_during_render(ctx, proc, "/robust/rtfm_camera/render_view", signal.SIGTERM)
    caller.close()
    assert sha256(user_world) == digest  # remembered views went to the working copy only


def stop_during_render(ctx, proc, service: str, sig: int) -> None:
    """Send ``sig`` while a BIG render_view is in flight: the process must end cleanly within 5 s."""
    from rtfm_ros_interfaces.srv import RenderView

    topic = f"/{service.split('/')[1]}/image_raw"
    long_view = Background(ctx, RenderView, service, view_request(BIG))
    after = time.time_ns()
    collect(ctx, {topic: (Image, reliable_qos())},
            lambda r: any(messages.stamp_to_ns(m.header.stamp) > after for m in r[topic]), timeout_s=60, process=proc)
    assert not long_view.future.done(), "the long view answered before the signal"
    proc.proc.send_signal(sig)
    try:
        code = proc.proc.wait(5.0)  # the bound of a failure: it stops within seconds
    finally:
        long_view.close()
    assert code == 0, (code, proc.output()[-2000:])


def test_sigint_stops_the_node_during_a_long_render(assets, domain, ctx, tf_child, tmp_path):
    world = tmp_path / "w.rtfm"
    shutil.copy(assets["world"], world)
    with start_node(assets, domain, "interrupted", world) as proc:
        collect(ctx, {"/interrupted/image_raw": (Image, reliable_qos())}, lambda r: r["/interrupted/image_raw"],
                timeout_s=90, process=proc)
        stop_during_render(ctx, proc, "/interrupted/rtfm_camera/render_view", signal.SIGINT)
