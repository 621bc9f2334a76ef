"""The camera node with several cameras on sim time, grown from seed images on a topic, and a
seed image whose TF comes late (real ROS 2 over Fast DDS, the node spun in this process)."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import rclpy
from node_helpers import SENSOR, S, SpunNode, images_after
from ros_helpers import collect, pick_domain_id, reliable_qos, ros_context
from sensor_msgs.msg import CameraInfo, Image
from tf2_msgs.msg import TFMessage
from waiting import wait_until

from rtfm_ros import geometry as g
from rtfm_ros.io import messages
from rtfm_ros.ros import conversions as c


@pytest.fixture(scope="module")
def domain() -> int:
    return pick_domain_id(offset=41)


def test_multi_camera_batch_sim_time_and_seeding_from_a_topic(assets, domain, tf_child, ctx):
    from rosgraph_msgs.msg import Clock

    from rtfm_ros.learn.checkpoint import load_checkpoint
    from rtfm_ros.world import WorldModel

    model, meta = load_checkpoint(assets["ckpt"])
    spun = SpunNode(domain, {"cameras": ["front", "left", "rear"], "front.camera_frame": "camera_link",
                             "left.camera_frame": "left_camera_link", "rear.camera_frame": "rear_missing",
                             "rate": 4.0, "lazy": False, "use_sim_time": True,
                             "tf_tolerance": 0.0},  # every image stamped with its tick's /clock time
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
        wait_until(lambda: node.stats.skipped["empty world"] >= 2, "two ticks find the world empty",
                   on_poll=publish_clock)
        assert node.stats.images == 0

        # Seed it from a real camera on ~/seed_image (posed by TF at the image stamp), whose
        # intrinsics come latched on ~/seed_camera_info.
        seed_cam = g.PinholeCamera.from_fov(64, 64, 60)
        info_pub = clock_node.create_publisher(CameraInfo, "/multi/rtfm_multi/seed_camera_info", reliable_qos(True))
        info_pub.publish(c.camera_info_msg(seed_cam, 0, "camera_link_optical"))
        wait_until(lambda: node.world_services.seed_camera is not None, "the seed camera info arrives", 10)
        assert node.world_services.seed_camera == seed_cam
        pub = clock_node.create_publisher(Image, "/multi/rtfm_multi/seed_image", 10)
        for i, (rgb, _) in enumerate(assets["frames"][:3]):
            polls = {"n": 0}

            def seed_and_tick(rgb=rgb, polls=polls) -> None:
                if polls["n"] % 10 == 0:  # an image every 10 clock ticks, until one is placed
                    pub.publish(c.image_msg(rgb, time.time_ns() - S // 20, "camera_link_optical"))
                polls["n"] += 1
                publish_clock()

            wait_until(lambda i=i: node.world_services.seeded > i, f"seed image {i} is placed", on_poll=seed_and_tick)
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
        wait_until(lambda: node.stats.tf_resets >= 1, "the node clears TF after time jumps back", 10,
                   on_poll=publish_clock)
        offset["ns"] = 0
        back = time.time_ns()
        assert images_after(ctx, "/multi/front/image_raw", back, on_spin=publish_clock, process=tf_child)
    finally:
        clock_node.destroy_node()
        spun.close()


def test_seed_image_waits_for_late_tf_while_the_node_keeps_taking_tf(assets):
    """A seed image whose TF comes after the node began looking it up is placed once that TF arrives.

    The lookup waits (tf_timeout 3 s) on the services thread; were it to block the executor,
    the late /tf could not be taken in and the image would be skipped when tf_timeout ran out.
    """
    domain = pick_domain_id(offset=53)  # a domain of its own: no TF but this test's
    spun = SpunNode(domain, {"checkpoint": str(assets["ckpt"]), "device": "cpu", "camera_frame": "cam",
                             "camera_frame_convention": "optical", "tf_timeout": 3.0})
    services = spun.node.world_services
    looking, locate = threading.Event(), services.locate

    def locate_seen(frame: str, stamp_ns: int) -> np.ndarray:
        looking.set()
        return locate(frame, stamp_ns)

    services.locate = locate_seen
    try:
        with ros_context(domain) as pub_ctx:
            node = rclpy.create_node("rtfm_test_late_tf", context=pub_ctx)
            tf_pub = node.create_publisher(TFMessage, "/tf", reliable_qos(depth=100))
            img_pub = node.create_publisher(Image, "/rtfm_camera/seed_image", reliable_qos())
            wait_until(lambda: tf_pub.get_subscription_count() > 0 and img_pub.get_subscription_count() > 0,
                       "the node's /tf and seed_image subscriptions are discovered")
            t = time.time_ns()
            rot = g.look_at([0, 0, 1], [1, 0, 1])[:3, :3]
            before, after = g.make_transform(rot, (0.0, 0.0, 1.0)), g.make_transform(rot, (0.2, 0.0, 1.0))
            tf_pub.publish(TFMessage(transforms=[c.transform_msg(before, "map", "cam", t - S // 10)]))
            img_pub.publish(c.image_msg(assets["frames"][0][0], t, "cam"))
            wait_until(looking.is_set, "the node looks the seed image's pose up")
            tf_pub.publish(TFMessage(transforms=[c.transform_msg(after, "map", "cam", t + S // 10)]))
            wait_until(lambda: services.seeded or spun.node.stats.skipped["seed image"],
                       "the seed image is placed or skipped")
            node.destroy_node()
        assert services.seeded == 1 and spun.node.stats.skipped["seed image"] == 0
        with spun.node.world_handle.lock:
            T = spun.node.world.memory.get(0).T_world_camera
        np.testing.assert_allclose(T[:3, 3], (0.1, 0.0, 1.0), atol=1e-6)  # interpolated at the image's stamp
    finally:
        spun.close()
