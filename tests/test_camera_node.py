"""The camera node over real ROS 2 (Fast DDS): TF from another process in, images and services out.

One node (96x64, 4 Hz, depth on) runs in this process on its own rclpy context and executor
thread; the test robot's TF comes from a child process (node_helpers.py) and the test listens
from a third context. The other node scenarios live beside this file: several cameras, sim time
and seeding (test_node_multi_camera.py), the console script (test_node_console.py), a separate
process under load and signals (test_node_robustness.py), outputs (test_node_outputs.py).
"""

from __future__ import annotations

import os
import shutil
import time

import numpy as np
import pytest
import rclpy
from geometry_msgs.msg import Pose
from node_helpers import (
    POSE_A,
    POSE_B,
    POSE_TOPIC,
    SENSOR,
    T_BASE_CAMERA,
    Caller,
    S,
    SpunNode,
    images_after,
    psnr,
)
from ros_helpers import collect, pick_domain_id, reliable_qos
from sensor_msgs.msg import CameraInfo, Image
from tf2_msgs.msg import TFMessage
from waiting import wait_until

from rtfm_ros import geometry as g
from rtfm_ros.io import messages, tf_messages
from rtfm_ros.ros import conversions as c


# ---------------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def domain() -> int:
    return pick_domain_id(offset=37)


def _same_pose(t, T: np.ndarray) -> bool:
    return bool(np.allclose(tf_messages.transform_to_matrix(t), T, atol=1e-6))


@pytest.fixture(scope="module")
def move(ctx):
    """move(pose): the TF child follows; returns the stamp of its first /tf at the new pose
    (images stamped after it show the new pose)."""
    node = rclpy.create_node(f"rtfm_test_mover_{os.getpid()}", context=ctx)
    pub = node.create_publisher(Pose, POSE_TOPIC, reliable_qos(True))

    def send(pose: Pose) -> int:
        wait_until(lambda: pub.get_subscription_count() > 0, "the TF child subscribes to the test's poses", 10)
        pub.publish(pose)
        T = tf_messages.pose_to_matrix(pose)

        def moved(r) -> list:
            return [t for m in r["/tf"] for t in m.transforms if t.child_frame_id == "base_link" and _same_pose(t, T)]

        got = collect(ctx, {"/tf": (TFMessage, reliable_qos())}, lambda r: moved(r))
        return messages.stamp_to_ns(moved(got)[0].header.stamp)

    yield send
    node.destroy_node()


@pytest.fixture(scope="module")
def call(ctx):
    caller = Caller(ctx)
    yield caller
    caller.close()


@pytest.fixture(scope="module")
def cam_node(assets, domain, tf_child):
    """One 96x64 body-axes camera at 4 Hz, depth on, generated views not remembered."""
    world = assets["root"] / "a.rtfm"
    shutil.copy(assets["world"], world)
    spun = SpunNode(domain, {"checkpoint": str(assets["ckpt"]), "world": str(world), "device": "cpu",
                             "width": 96, "height": 64, "fov": 90.0, "rate": 4.0, "publish_depth": True,
                             "remember_generated": False})
    wait_until(lambda: spun.node.stats.skipped["no subscribers"] > 0, "a tick finds nobody listening (lazy)")
    yield spun.node
    spun.close()


# ---------------------------------------------------------------------------------- the node
def test_images_frames_stamps_info_rate_and_status(cam_node, ctx, tf_child):
    from rtfm_ros_interfaces.msg import WorldStatus

    assert cam_node.stats.rendered == 0 and cam_node.stats.skipped["no subscribers"] > 0  # lazy
    topics = {"/image_raw": (Image, SENSOR), "/camera_info": (CameraInfo, SENSOR), "/depth": (Image, SENSOR),
              "/tf_static": (TFMessage, reliable_qos(latched=True)),
              "/rtfm_camera/status": (WorldStatus, reliable_qos())}
    got = collect(ctx, topics, lambda r: len(r["/image_raw"]) >= 8 and len(r["/camera_info"]) >= 8
                  and r["/depth"] and r["/rtfm_camera/status"]
                  and any(t.child_frame_id == "camera_link_optical" for m in r["/tf_static"] for t in m.transforms),
                  timeout_s=30, process=tf_child)
    images = got["/image_raw"]
    for m in images:
        assert (m.encoding, m.width, m.height, m.header.frame_id) == ("rgb8", 96, 64, "camera_link_optical")
        assert messages.decode_image(m).shape == (64, 96, 3)
    info_by_stamp = {messages.stamp_to_ns(i.header.stamp): i for i in got["/camera_info"]}
    matched = [info_by_stamp[messages.stamp_to_ns(m.header.stamp)] for m in images
               if messages.stamp_to_ns(m.header.stamp) in info_by_stamp]
    assert len(matched) >= len(images) - 2  # best effort may lose one or two
    for info in matched:
        assert info.header.frame_id == "camera_link_optical" and (info.width, info.height) == (96, 64)
        np.testing.assert_allclose(info.k, [48, 0, 47.5, 0, 48, 31.5, 0, 0, 1])  # ROS: pixel centres at integers
    depth = got["/depth"][0]
    assert depth.encoding == "32FC1" and messages.decode_depth(depth).shape == (64, 96)
    stamps = np.array([messages.stamp_to_ns(m.header.stamp) for m in images])
    assert np.all(np.diff(stamps) > 0)
    period = np.median(np.diff(stamps)) / S
    assert 0.2 <= period <= 0.55, f"median period {period:.3f} s at rate 4 Hz"  # loose: a busy 2-core machine
    assert abs(stamps[-1] / S - time.time()) < 5.0  # wall-clock stamps (no sim time)

    optical = [t for m in got["/tf_static"] for t in m.transforms if t.child_frame_id == "camera_link_optical"]
    assert optical and optical[0].header.frame_id == "camera_link"
    np.testing.assert_allclose(tf_messages.transform_to_matrix(optical[0])[:3, :3], g.R_BODY_OPTICAL, atol=1e-9)

    status = got["/rtfm_camera/status"][-1]
    assert status.frames == 6 and status.model == "tiny-test" and status.header.frame_id == "map"
    assert status.coverage_m2 > 1.0 and status.bytes_in_ram > 0 and 1 <= status.frames_in_ram <= 6


def test_revisiting_a_pose_gives_the_same_image(cam_node, ctx, move, tf_child):
    after = move(POSE_A)
    first = messages.decode_image(images_after(ctx, "/image_raw", after, process=tf_child)[0])
    after = move(POSE_B)
    other = messages.decode_image(images_after(ctx, "/image_raw", after, process=tf_child)[0])
    after = move(POSE_A)
    again = messages.decode_image(images_after(ctx, "/image_raw", after, process=tf_child)[0])
    assert psnr(first, again) >= 35.0
    assert psnr(first, other) < psnr(first, again) and not np.array_equal(first, other)


def test_services_reset_save_load_render_view(cam_node, ctx, call, tf_child, assets):
    from rtfm_ros_interfaces.srv import RenderView, WorldPath
    from std_srvs.srv import Trigger

    saved = assets["root"] / "saved.rtfm"
    res = call(WorldPath, "/rtfm_camera/save_world", WorldPath.Request(path=str(saved)))
    assert res.success and res.frames == 6 and saved.is_file(), res.message
    res = call(WorldPath, "/rtfm_camera/save_world", WorldPath.Request(path="/proc/no/such/dir/w.rtfm"))
    assert not res.success and "cannot save" in res.message
    res = call(WorldPath, "/rtfm_camera/load_world", WorldPath.Request(path=str(assets["root"] / "none")))
    assert not res.success and res.frames == 6 and len(cam_node.world.memory) == 6

    T = g.body_to_optical(tf_messages.pose_to_matrix(POSE_A) @ T_BASE_CAMERA)
    req = RenderView.Request(want_depth=True, remember=False)
    req.pose.header.frame_id = "map"
    req.pose.pose = c.pose_msg(T)
    req.camera_info = c.camera_info_msg(g.PinholeCamera.from_fov(64, 48, 70), 0, "view_optical")
    res = call(RenderView, "/rtfm_camera/render_view", req)
    assert res.success, res.message
    assert (res.image.width, res.image.height, res.image.encoding) == (64, 48, "rgb8")
    assert res.depth.encoding == "32FC1" and messages.decode_depth(res.depth).shape == (48, 64)
    # A distorted CameraInfo: its ideal view rendered and remapped, exactly as the lens says.
    from rtfm_ros.camera.lens import Lens

    d = [-0.25, 0.07, 0.0, 0.0, 0.0]
    req.camera_info.d = d
    res = call(RenderView, "/rtfm_camera/render_view", req)
    assert res.success and (res.image.width, res.image.height) == (64, 48), res.message
    lens = Lens(g.PinholeCamera.from_fov(64, 48, 70), "plumb_bob", d)
    req.camera_info = c.camera_info_msg(lens.render_camera, 0, "view_optical")
    ideal = call(RenderView, "/rtfm_camera/render_view", req)
    assert ideal.success, ideal.message
    np.testing.assert_array_equal(messages.decode_image(res.image), lens.remap(messages.decode_image(ideal.image)))
    np.testing.assert_array_equal(messages.decode_depth(res.depth),
                                  lens.remap_depth(messages.decode_depth(ideal.depth)))
    req.camera_info = c.camera_info_msg(g.PinholeCamera.from_fov(2048, 1024, 70), 0, "view_optical")
    res = call(RenderView, "/rtfm_camera/render_view", req)
    assert not res.success and "max_render_pixels" in res.message  # above the pixel budget: refused
    req.camera_info = c.camera_info_msg(g.PinholeCamera.from_fov(64, 64, 70), 0, "view_optical")
    req.pose.header.frame_id, req.remember = "odom", True
    assert not call(RenderView, "/rtfm_camera/render_view", req).success
    req.pose.header.frame_id = "map"
    req.pose.pose = c.pose_msg(g.look_at((2.0, 2.0, 0.5), (3.0, 2.0, 0.5)))  # a new place: remembered
    assert call(RenderView, "/rtfm_camera/render_view", req).success and len(cam_node.world.memory) == 7

    res = call(Trigger, "/rtfm_camera/reset", Trigger.Request())
    assert res.success and len(cam_node.world.memory) == 0
    # An empty world publishes nothing: once a tick has found it empty (nothing in flight since),
    # three more ticks pass while someone listens and not one image goes out.
    empty = cam_node.stats.skipped["empty world"]
    listening = {"/image_raw": (Image, SENSOR)}
    collect(ctx, listening, lambda r: cam_node.stats.skipped["empty world"] > empty)
    published = cam_node.stats.images
    got = collect(ctx, listening, lambda r: cam_node.stats.skipped["empty world"] > empty + 3)
    assert cam_node.stats.images == published and not got["/image_raw"]
    res = call(WorldPath, "/rtfm_camera/load_world", WorldPath.Request(path=str(saved)))
    assert res.success and res.frames == 6, res.message
    assert images_after(ctx, "/image_raw", time.time_ns(), process=tf_child)


def test_bad_transforms_and_absurd_parameters_are_refused(cam_node, ctx, call, tf_child):
    from rtfm_ros.tf_buffer import TransformBuffer

    nan = c.transform_msg(np.eye(4), "odom", "base_link", time.time_ns())
    nan.transform.rotation.x = float("nan")
    zero_q = c.transform_msg(np.eye(4), "odom", "junk", time.time_ns())
    zero_q.transform.rotation.w = 0.0
    second_parent = c.transform_msg(np.eye(4), "elsewhere", "base_link", time.time_ns())
    empty_name = c.transform_msg(np.eye(4), "", "nameless", time.time_ns())
    bad = TFMessage(transforms=[nan, zero_q, second_parent, empty_name])
    assert len(tf_messages.feed_tf_message(TransformBuffer(), bad, static=False)) >= 3  # they are bad indeed
    before = cam_node.stats.bad_transforms
    node = rclpy.create_node("rtfm_test_bad_tf", context=ctx)
    try:
        pub = node.create_publisher(TFMessage, "/tf", reliable_qos())
        wait_until(lambda: cam_node.stats.bad_transforms >= before + 3, "the node counts the bad transforms",
                   on_poll=lambda: pub.publish(bad), poll_s=0.1)
    finally:
        node.destroy_node()

    for name, value in [("rate", -1.0), ("rate", 0), ("rate", 1e-300), ("rate", 1e-10), ("width", 0), ("width", 100000),
                        ("max_render_pixels", 10), ("depth_encoding", "8UC1"), ("noise_stddev", -0.1),
                        ("fov", 0.0), ("fov", 180.0), ("fx", float("nan")), ("qos", "fast"), ("rate", "fast")]:
        (result,) = call.set_params("rtfm_camera", **{name: value})
        assert not result.successful, f"{name}={value!r} was accepted"
        assert result.reason
    assert cam_node.config.rate == 4.0 and cam_node.cameras[0].camera.width == 96
    assert [r.successful for r in call.set_params("rtfm_camera", rate=5)] == [True]
    assert cam_node.config.rate == 5.0
    img = images_after(ctx, "/image_raw", time.time_ns(), process=tf_child)[0]  # still publishing
    assert (img.width, img.height) == (96, 64)
