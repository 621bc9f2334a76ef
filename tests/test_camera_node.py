"""The camera node over real ROS 2 (Fast DDS): TF from another process in, images and services out.

A child process (this file run as a script) publishes the chain map -> odom -> base_link ->
camera_link (odom -> base_link at 50 Hz, stamped now, at a pose the test sends it); the node
runs in this process on its own rclpy context and executor thread, or as the `rtfm_camera`
console script; the test listens from a third context.
"""

from __future__ import annotations

import math
import os
import shutil
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import rclpy
from geometry_msgs.msg import Pose
from rclpy.parameter import Parameter
from rclpy.qos import qos_profile_sensor_data
from ros_helpers import collect, pick_domain_id, reliable_qos, ros_context, spawn_ros_process
from sensor_msgs.msg import CameraInfo, Image
from tf2_msgs.msg import TFMessage

from rtfm_ros import geometry as g
from rtfm_ros.io import messages, tf_messages
from rtfm_ros.ros import conversions as c

S = 1_000_000_000
REPO = Path(__file__).resolve().parent.parent
POSE_TOPIC = "/rtfm_test/base_pose"
T_BASE_CAMERA = g.make_transform(translation=(0.1, 0.0, 0.4))  # camera_link: body axes, x forward
T_BASE_LEFT = g.make_transform(g.quat_to_matrix([0, 0, math.sqrt(0.5), math.sqrt(0.5)]), (0.0, 0.1, 0.4))
SENSOR = qos_profile_sensor_data


def base_pose(x: float, y: float, yaw: float) -> Pose:
    return c.pose_msg(g.make_transform(g.quat_to_matrix([0, 0, math.sin(yaw / 2), math.cos(yaw / 2)]),
                                             (x, y, 0.1)))


POSE_A, POSE_B = base_pose(1.0, 1.0, 0.0), base_pose(1.0, 1.0, math.pi / 2)


# ---------------------------------------------------------------------------------- TF child
def _tf_child() -> int:
    """Publish static map->odom, base_link->camera_link/left_camera_link and odom->base_link at 50 Hz."""
    rclpy.init()
    node = rclpy.create_node(f"rtfm_test_tf_{os.getpid()}")
    static = TFMessage(transforms=[
        c.transform_msg(np.eye(4), "map", "odom", 0),
        c.transform_msg(T_BASE_CAMERA, "base_link", "camera_link", 0),
        c.transform_msg(T_BASE_LEFT, "base_link", "left_camera_link", 0)])
    node.create_publisher(TFMessage, "/tf_static", reliable_qos(latched=True)).publish(static)
    pub = node.create_publisher(TFMessage, "/tf", reliable_qos())
    pose = {"T": tf_messages.pose_to_matrix(POSE_A)}
    node.create_subscription(Pose, POSE_TOPIC, lambda m: pose.update(T=tf_messages.pose_to_matrix(m)),
                             reliable_qos(True))
    parent = os.getppid()

    def tick() -> None:
        stamp = node.get_clock().now().nanoseconds
        pub.publish(TFMessage(transforms=[c.transform_msg(pose["T"], "odom", "base_link", stamp)]))
        if os.getppid() != parent:
            raise SystemExit(0)

    node.create_timer(0.02, tick)
    end = time.monotonic() + 180
    try:
        while rclpy.ok() and time.monotonic() < end:
            rclpy.spin_once(node, timeout_sec=0.1)
    except (SystemExit, KeyboardInterrupt):
        pass
    return 0


# ---------------------------------------------------------------------------------- helpers
def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(255.0**2 / mse)


def images_after(ctx, topic: str, after_ns: int, n: int = 1, timeout_s: float = 15.0, **kw) -> list:
    """The first n images on topic stamped after after_ns."""
    def late(r):
        return [m for m in r[topic] if messages.stamp_to_ns(m.header.stamp) > after_ns]
    got = collect(ctx, {topic: (Image, SENSOR)}, lambda r: len(late(r)) >= n, timeout_s, **kw)
    return late(got)[:n]


class Caller:
    """Service calls from one client node (clients kept, so discovery is paid once per service)."""

    def __init__(self, ctx) -> None:
        from rclpy.executors import SingleThreadedExecutor

        self.node = rclpy.create_node(f"rtfm_test_client_{os.getpid()}", context=ctx)
        self.executor = SingleThreadedExecutor(context=ctx)
        self.executor.add_node(self.node)
        self.clients: dict[str, object] = {}

    def __call__(self, srv_type, name: str, request, timeout_s: float = 20.0):
        if name not in self.clients:
            self.clients[name] = self.node.create_client(srv_type, name)
        client = self.clients[name]
        assert client.wait_for_service(timeout_sec=timeout_s), f"service {name} did not appear"
        future = client.call_async(request)
        self.executor.spin_until_future_complete(future, timeout_sec=timeout_s)
        assert future.done(), f"service {name} did not answer"
        return future.result()

    def set_params(self, node_name: str, **values) -> list:
        from rcl_interfaces.srv import SetParameters
        req = SetParameters.Request(parameters=[Parameter(k, value=v).to_parameter_msg() for k, v in values.items()])
        return self(SetParameters, f"/{node_name}/set_parameters", req).results

    def close(self) -> None:
        self.executor.shutdown()
        self.node.destroy_node()


class SpunNode:
    """A CameraNode on its own context, spun by the node's own executor in a thread."""

    def __init__(self, domain_id: int, overrides: dict, **kwargs) -> None:
        from rtfm_ros.ros.camera_node import CameraNode, make_executor

        self.context = rclpy.Context()
        rclpy.init(context=self.context, domain_id=domain_id)
        params = [Parameter(k, value=v) for k, v in overrides.items()]
        self.node = CameraNode(context=self.context, parameter_overrides=params, **kwargs)
        self.executor = make_executor(self.context)
        self.executor.add_node(self.node)
        self.thread = threading.Thread(target=self.executor.spin, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.executor.shutdown()
        self.thread.join(5)
        self.node.destroy_node()
        self.context.try_shutdown()


# ---------------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def domain_id() -> int:
    return pick_domain_id(offset=37)


@pytest.fixture(scope="module")
def tf_child(domain_id):
    with spawn_ros_process([sys.executable, __file__, "tf-child"], domain_id) as child:
        yield child


@pytest.fixture(scope="module")
def ctx(domain_id):
    with ros_context(domain_id) as context:
        yield context


@pytest.fixture(scope="module")
def move(ctx):
    """move(pose): the TF child follows; returns the time after which images show the new pose."""
    node = rclpy.create_node(f"rtfm_test_mover_{os.getpid()}", context=ctx)
    pub = node.create_publisher(Pose, POSE_TOPIC, reliable_qos(True))

    def send(pose: Pose) -> int:
        deadline = time.monotonic() + 10
        while pub.get_subscription_count() == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        pub.publish(pose)
        time.sleep(0.3)  # delivery + a few TF samples at the new pose
        return time.time_ns()

    yield send
    node.destroy_node()


@pytest.fixture(scope="module")
def call(ctx):
    caller = Caller(ctx)
    yield caller
    caller.close()


@pytest.fixture(scope="module")
def cam_node(assets, domain_id, tf_child):
    """Node A: one 96x64 body-axes camera at 4 Hz, depth on, generated views not remembered."""
    world = assets["root"] / "a.rtfm"
    shutil.copy(assets["world"], world)
    spun = SpunNode(domain_id, {"checkpoint": str(assets["ckpt"]), "world": str(world), "device": "cpu",
                                "width": 96, "height": 64, "fov": 90.0, "rate": 4.0, "publish_depth": True,
                                "remember_generated": False})
    time.sleep(1.0)  # lazy: nobody listens yet
    yield spun.node
    spun.close()


# ---------------------------------------------------------------------------------- node A
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
    time.sleep(0.6)
    quiet_from = time.time_ns()
    with pytest.raises(AssertionError, match="timed out"):
        images_after(ctx, "/image_raw", quiet_from, timeout_s=1.5)
    assert cam_node.stats.skipped["empty world"] > 0
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
        deadline = time.monotonic() + 10
        while cam_node.stats.bad_transforms < before + 3 and time.monotonic() < deadline:
            pub.publish(bad)
            time.sleep(0.1)
    finally:
        node.destroy_node()
    assert cam_node.stats.bad_transforms >= before + 3

    for name, value in [("rate", -1.0), ("rate", 0), ("width", 0), ("width", 100000),
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


# ---------------------------------------------------------------------------------- node B
def test_multi_camera_batch_sim_time_and_seeding_from_a_topic(assets, domain_id, tf_child, ctx):
    from rosgraph_msgs.msg import Clock

    from rtfm_ros.learn.checkpoint import load_checkpoint
    from rtfm_ros.world import WorldModel

    model, meta = load_checkpoint(assets["ckpt"])
    spun = SpunNode(domain_id, {"cameras": ["front", "left", "rear"], "front.camera_frame": "camera_link",
                                "left.camera_frame": "left_camera_link", "rear.camera_frame": "rear_missing",
                                "rate": 4.0, "lazy": False, "use_sim_time": True},
                    world_model=WorldModel(model, device="cpu", checkpoint_info=meta),
                    node_name="rtfm_multi", namespace="multi")
    node = spun.node
    clock_node = rclpy.create_node("rtfm_test_clock", context=ctx)
    clock_pub = clock_node.create_publisher(Clock, "/clock", reliable_qos())
    offset = {"ns": 0}
    sent: set[int] = set()

    def publish_clock() -> None:
        t = time.time_ns() - offset["ns"]
        sent.add(t)
        clock_pub.publish(Clock(clock=c.time_msg(t)))

    try:
        # Empty world: nothing is published, but the ticks run (on sim time).
        topics = {"/multi/front/image_raw": (Image, SENSOR), "/multi/left/image_raw": (Image, SENSOR)}
        deadline = time.monotonic() + 20
        while node.stats.skipped["empty world"] < 2 and time.monotonic() < deadline:
            publish_clock()
            time.sleep(0.02)
        assert node.stats.skipped["empty world"] >= 2 and node.stats.images == 0

        # Seed it from a real camera on ~/seed_image (posed by TF at the image stamp), whose
        # intrinsics come latched on ~/seed_camera_info.
        seed_cam = g.PinholeCamera.from_fov(64, 64, 60)
        info_pub = clock_node.create_publisher(CameraInfo, "/multi/rtfm_multi/seed_camera_info", reliable_qos(True))
        info_pub.publish(c.camera_info_msg(seed_cam, 0, "camera_link_optical"))
        deadline = time.monotonic() + 10
        while node.world_services.seed_camera is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert node.world_services.seed_camera == seed_cam
        pub = clock_node.create_publisher(Image, "/multi/rtfm_multi/seed_image", 10)
        deadline = time.monotonic() + 20
        for i, (rgb, _) in enumerate(assets["frames"][:3]):
            while node.world_services.seeded <= i and time.monotonic() < deadline:
                pub.publish(c.image_msg(rgb, time.time_ns() - S // 20, "camera_link_optical"))
                for _ in range(10):
                    publish_clock()
                    time.sleep(0.02)
        memory = node.world.memory
        observed = [i for i in range(len(memory)) if memory.get(i).source == "observed"]
        assert len(observed) == node.world_services.seeded >= 3
        assert memory.camera(observed[0]).fx == pytest.approx(seed_cam.fx)

        got = collect(ctx, topics, lambda r: all(len(v) >= 4 for v in r.values()), timeout_s=30,
                      process=tf_child, on_spin=publish_clock)
        front, left = got["/multi/front/image_raw"], got["/multi/left/image_raw"]
        assert {m.header.frame_id for m in front} == {"camera_link_optical"}
        assert {m.header.frame_id for m in left} == {"left_camera_link_optical"}
        front_stamps = {messages.stamp_to_ns(m.header.stamp) for m in front}
        left_stamps = {messages.stamp_to_ns(m.header.stamp) for m in left}
        assert front_stamps <= sent and left_stamps <= sent  # stamps are /clock values: sim time honoured
        assert len(front_stamps & left_stamps) >= 2  # both cameras of a tick share the stamp
        with node.stats._lock:
            rendered, batches, published = node.stats.rendered, node.stats.batches, node.stats.images
        # one batch per rendered tick; a tick publishes both cameras, or one while the other's TF lags
        assert batches == rendered and rendered <= published <= 2 * rendered
        assert node.stats.skipped["tf lookup"] > 0  # rear_missing: logged and skipped, others go on

        # A bag loop: time jumps back a minute, the TF buffer is cleared, then time runs on again.
        offset["ns"] = 60 * S
        deadline = time.monotonic() + 10
        while node.stats.tf_resets == 0 and time.monotonic() < deadline:
            publish_clock()
            time.sleep(0.02)
        assert node.stats.tf_resets >= 1
        offset["ns"] = 0
        back = time.time_ns()
        assert images_after(ctx, "/multi/front/image_raw", back, on_spin=publish_clock, process=tf_child)
    finally:
        clock_node.destroy_node()
        spun.close()


# ---------------------------------------------------------------------------------- TF arriving late
def test_seed_image_waits_for_late_tf_while_the_node_keeps_taking_tf(assets):
    """A seed image whose TF comes 0.5 s after it is placed once that TF arrives.

    The lookup waits (tf_timeout 3 s) on the services thread; were it to block the executor,
    the late /tf could not be taken in and the image would be skipped after 3 s.
    """
    domain = pick_domain_id(offset=53)  # a domain of its own: no TF but this test's
    spun = SpunNode(domain, {"checkpoint": str(assets["ckpt"]), "device": "cpu", "camera_frame": "cam",
                             "camera_frame_convention": "optical", "tf_timeout": 3.0})
    try:
        with ros_context(domain) as pub_ctx:
            node = rclpy.create_node("rtfm_test_late_tf", context=pub_ctx)
            tf_pub = node.create_publisher(TFMessage, "/tf", reliable_qos(depth=100))
            img_pub = node.create_publisher(Image, "/rtfm_camera/seed_image", reliable_qos())
            deadline = time.monotonic() + 20
            while (tf_pub.get_subscription_count() == 0 or img_pub.get_subscription_count() == 0) \
                    and time.monotonic() < deadline:
                time.sleep(0.05)
            assert img_pub.get_subscription_count() > 0, "the node's seed_image subscription was not discovered"
            t = time.time_ns()
            rot = g.look_at([0, 0, 1], [1, 0, 1])[:3, :3]
            before, after = g.make_transform(rot, (0.0, 0.0, 1.0)), g.make_transform(rot, (0.2, 0.0, 1.0))
            tf_pub.publish(TFMessage(transforms=[c.transform_msg(before, "map", "cam", t - S // 10)]))
            img_pub.publish(c.image_msg(assets["frames"][0][0], t, "cam"))
            time.sleep(0.5)
            tf_pub.publish(TFMessage(transforms=[c.transform_msg(after, "map", "cam", t + S // 10)]))
            placed_by = time.monotonic() + 2.0  # well before tf_timeout runs out
            while spun.node.world_services.seeded == 0 and time.monotonic() < placed_by:
                time.sleep(0.02)
            node.destroy_node()
        assert spun.node.world_services.seeded == 1
        with spun.node.world_handle.lock:
            T = spun.node.world.memory.get(0).T_world_camera
        np.testing.assert_allclose(T[:3, 3], (0.1, 0.0, 1.0), atol=1e-6)  # interpolated at the image's stamp
    finally:
        spun.close()


# ---------------------------------------------------------------------------------- the console script
def test_console_script_yaml_absurd_start_parameters_and_refusal(assets, domain_id, ctx, tf_child):
    from PIL import Image as PILImage
    from rtfm_ros_interfaces.msg import WorldStatus

    exe = str(Path(sys.executable).with_name("rtfm_camera"))
    paths, poses = [], []
    for i, (rgb, T) in enumerate(assets["frames"][:3]):
        paths.append(str(assets["root"] / f"seed{i}.png"))
        PILImage.fromarray(rgb).save(paths[-1])
        t, q = g.transform_to_ros(T)
        poses += [*t.tolist(), *q.tolist()]
    args = ["--ros-args", "--params-file", str(REPO / "config" / "camera.yaml"), "-r", "__ns:=/front",
            "-p", f"checkpoint:={assets['ckpt']}", "-p", f"seed_images:=[{','.join(paths)}]",
            "-p", f"seed_poses:=[{','.join(map(repr, poses))}]", "-p", "seed_fov:=90.0", "-p", "device:=cpu",
            "-p", "width:=0", "-p", "rate:=-5.0", "-p", "fov:=0.0", "-p", "qos:=bogus"]
    refused = spawn_ros_process([exe, "--ros-args", "-p", "camera_frame_convention:=sideways"], domain_id)
    with spawn_ros_process([exe, *args], domain_id) as proc:
        got = collect(ctx, {"/front/image_raw": (Image, SENSOR), "/front/rtfm_camera/status": (WorldStatus,
                      reliable_qos())}, lambda r: all(r.values()), timeout_s=60, process=proc)
        img, status = got["/front/image_raw"][0], got["/front/rtfm_camera/status"][0]
        assert (img.width, img.height, img.header.frame_id) == (64, 64, "camera_link_optical")
        assert status.frames >= 3  # the seeds (and maybe views remembered since)
        out = proc.output()
        for name in ("width", "rate", "fov", "qos"):
            assert f"parameter '{name}'" in out, out
        assert proc.stop() == 0, proc.output()[-3000:]
    try:
        assert refused.proc.wait(60) == 2
        assert "camera_frame_convention" in refused.output() and "cannot start" in refused.output()
    finally:
        refused.stop()


if __name__ == "__main__":
    if sys.argv[1:] != ["tf-child"]:
        sys.exit("usage: test_camera_node.py tf-child")
    sys.exit(_tf_child())
