"""Real ROS 2 over Fast DDS: a second process publishes, this one subscribes and checks the data."""

import numpy as np
import pytest
import rclpy
from ros_helpers import PublishSpec, collect, pick_domain_id, reliable_qos, ros_context, spawn_publisher
from rtfm_ros_interfaces.msg import WorldStatus
from rtfm_ros_interfaces.srv import RenderView, WorldPath
from sensor_msgs.msg import Image
from tf2_msgs.msg import TFMessage

from rtfm_ros import geometry as g
from rtfm_ros.io import messages, tf_messages
from rtfm_ros.ros import conversions as c
from rtfm_ros.tf_buffer import TransformBuffer

S = 1_000_000_000


@pytest.fixture
def domain_id() -> int:
    return pick_domain_id()


def test_image_and_tf_cross_process(domain_id):
    rng = np.random.default_rng(7)
    rgb = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
    stamp = 1_700_000_000 * S + 123_456_789
    T_map_base = g.make_transform(g.quat_to_matrix([0.1, -0.2, 0.3, 0.9273618495495703]), (1.5, -2.0, 0.25))
    T_base_cam = g.body_to_optical(g.make_transform(translation=(0.2, 0.0, 1.1)))
    tf = TFMessage(transforms=[c.transform_msg(T_map_base, "map", "base_link", stamp)])
    tf_static = TFMessage(transforms=[c.transform_msg(T_base_cam, "base_link", "cam_optical", 0)])
    topics = {
        "/rtfm_test/image": (Image, reliable_qos()),
        "/rtfm_test/tf": (TFMessage, reliable_qos()),
        "/rtfm_test/tf_static": (TFMessage, reliable_qos(latched=True)),
    }
    with spawn_publisher(
        [
            PublishSpec("/rtfm_test/image", c.image_msg(rgb, stamp, "cam_optical")),
            PublishSpec("/rtfm_test/tf", tf),
            PublishSpec("/rtfm_test/tf_static", tf_static, latched=True),  # sent once, before we listen
        ],
        domain_id,
    ) as child, ros_context(domain_id) as context:
        got = collect(context, topics, lambda r: all(r.values()), timeout_s=20.0, process=child)

    image = got["/rtfm_test/image"][0]
    assert image.header.frame_id == "cam_optical" and messages.stamp_to_ns(image.header.stamp) == stamp
    np.testing.assert_array_equal(messages.decode_image(image), rgb)  # pixel-exact

    buf = TransformBuffer()
    assert tf_messages.feed_tf_message(buf, got["/rtfm_test/tf"][0], static=False) == []
    assert tf_messages.feed_tf_message(buf, got["/rtfm_test/tf_static"][0], static=True) == []
    np.testing.assert_allclose(buf.lookup("map", "cam_optical", stamp), T_map_base @ T_base_cam, atol=1e-12)


def test_interfaces_import_and_world_status_in_process(domain_id):
    assert {"header", "frames", "render_latency_ms", "model"} <= set(WorldStatus.get_fields_and_field_types())
    assert "pose" in RenderView.Request.get_fields_and_field_types()
    assert "image" in RenderView.Response.get_fields_and_field_types()
    assert "path" in WorldPath.Request.get_fields_and_field_types()
    assert "frames" in WorldPath.Response.get_fields_and_field_types()

    sent = WorldStatus(frames=1234, frames_in_ram=1000, bytes_in_ram=2**40, coverage_m2=12.5,
                       render_latency_ms=8.25, render_rate_hz=30.0, model="tiny-v1")
    sent.header.frame_id = "map"
    sent.header.stamp = c.time_msg(5 * S)
    with ros_context(domain_id) as context:
        node = rclpy.create_node("rtfm_status_publisher", context=context)
        try:
            pub = node.create_publisher(WorldStatus, "/rtfm_test/status", reliable_qos())
            got = collect(
                context, {"/rtfm_test/status": (WorldStatus, reliable_qos())},
                lambda r: bool(r["/rtfm_test/status"]), timeout_s=20.0, on_spin=lambda: pub.publish(sent),
            )
        finally:
            node.destroy_node()
    status = got["/rtfm_test/status"][0]
    assert status == sent
    assert status.bytes_in_ram == 2**40 and status.model == "tiny-v1"
