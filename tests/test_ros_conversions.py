"""numpy <-> ROS message conversions: round trips, encodings, padding, and refused input."""

import array

import numpy as np
import pytest
from builtin_interfaces.msg import Time
from geometry_msgs.msg import TransformStamped
from hypothesis import given, settings
from hypothesis import strategies as st
from rclpy.serialization import serialize_message
from rosbags.typesys import Stores, get_typestore
from sensor_msgs.msg import CameraInfo, Image
from tf2_msgs.msg import TFMessage

from rtfm_ros import geometry as g
from rtfm_ros.io import messages, tf_messages
from rtfm_ros.ros import conversions as c
from rtfm_ros.tf_buffer import FrameTreeError, TransformBuffer

S = 1_000_000_000
finite = st.floats(-50, 50, allow_nan=False, allow_infinity=False)
quats = st.lists(st.floats(-1, 1, allow_nan=False), min_size=4, max_size=4).filter(
    lambda q: np.linalg.norm(q) > 0.1).map(lambda q: np.asarray(q) / np.linalg.norm(q))
poses = st.tuples(st.lists(finite, min_size=3, max_size=3), quats).map(
    lambda tq: g.transform_from_ros(tq[0], tq[1]))
stamps = st.integers(0, (2**31 - 1) * S + S - 1)


def raw_image(pixels: np.ndarray, encoding: str, pad: int = 0, big_endian: bool = False) -> Image:
    """An Image built by hand, with `pad` junk bytes at the end of each row."""
    h, w = pixels.shape[:2]
    rows = pixels.reshape(h, -1).view(np.uint8)
    junk = np.full((h, pad), 0xAB, np.uint8)
    data = np.hstack([rows, junk])
    msg = Image(height=h, width=w, encoding=encoding, is_bigendian=int(big_endian), step=data.shape[1])
    msg.data = array.array("B", data.tobytes())
    return msg


@settings(max_examples=25, deadline=None)
@given(st.integers(1, 17), st.integers(1, 17), stamps, st.data())
def test_image_round_trip(h, w, stamp, data):
    rgb = data.draw(st.binary(min_size=h * w * 3, max_size=h * w * 3)).ljust(h * w * 3, b"\0")
    rgb = np.frombuffer(rgb, np.uint8).reshape(h, w, 3)
    msg = c.image_msg(rgb, stamp, "cam_optical")
    assert (msg.encoding, msg.height, msg.width, msg.step) == ("rgb8", h, w, 3 * w)
    assert msg.header.frame_id == "cam_optical" and messages.stamp_to_ns(msg.header.stamp) == stamp
    np.testing.assert_array_equal(messages.decode_image(msg), rgb)


@pytest.mark.parametrize("encoding", ["rgb8", "bgr8", "rgba8", "bgra8", "mono8"])
@pytest.mark.parametrize("pad", [0, 3])
def test_image_encodings_and_row_padding(encoding, pad):
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (5, 7, 3), dtype=np.uint8)
    if encoding == "mono8":
        pixels, expected = rgb[:, :, 0], np.repeat(rgb[:, :, :1], 3, axis=2)
    else:
        pixels = rgb[:, :, ::-1] if encoding.startswith("bgr") else rgb
        if encoding.endswith("a8"):
            pixels = np.dstack([pixels, np.full((5, 7), 200, np.uint8)])
        expected = rgb
    out = messages.decode_image(raw_image(np.ascontiguousarray(pixels), encoding, pad))
    assert out.shape == (5, 7, 3) and out.dtype == np.uint8 and out.flags.writeable
    np.testing.assert_array_equal(out, expected)


def test_bad_images_are_refused_clearly():
    good = raw_image(np.zeros((4, 4, 3), np.uint8), "rgb8")
    good.encoding = "yuv422"
    with pytest.raises(messages.MessageError, match="'yuv422'.*rgb8, bgr8"):
        messages.decode_image(good)
    short = raw_image(np.zeros((4, 4, 3), np.uint8), "rgb8")
    short.data = short.data[:-1]
    with pytest.raises(messages.MessageError, match="47 bytes, expected"):
        messages.decode_image(short)
    narrow = raw_image(np.zeros((4, 4, 3), np.uint8), "rgb8")
    narrow.step = 8
    with pytest.raises(messages.MessageError, match="step 8"):
        messages.decode_image(narrow)
    with pytest.raises(messages.MessageError, match="uint8"):
        c.image_msg(np.zeros((4, 4, 3), np.float32), 0, "cam")
    with pytest.raises(messages.MessageError, match="HxWx3"):
        c.image_msg(np.zeros((4, 4), np.uint8), 0, "cam")


def test_depth_round_trip_keeps_nan_and_inf():
    depth = np.random.default_rng(1).uniform(0.1, 30.0, (6, 9)).astype(np.float32)
    depth[0, 0], depth[1, 1], depth[2, 2] = np.nan, np.inf, -np.inf
    msg = c.depth_msg(depth, 5 * S, "cam_optical")
    assert (msg.encoding, msg.step) == ("32FC1", 36)
    np.testing.assert_array_equal(messages.decode_depth(msg, keep_invalid=True), depth)
    from_float64 = c.depth_msg(depth.astype(np.float64), 0, "c")
    np.testing.assert_array_equal(messages.decode_depth(from_float64, keep_invalid=True), depth)
    with pytest.raises(messages.MessageError, match="float"):
        c.depth_msg(np.zeros((3, 3), np.uint16), 0, "c")


def test_depth_big_endian_padded_and_millimetres():
    depth = np.array([[1.5, 2.25], [0.5, 7.0]], np.float32)
    out = messages.decode_depth(raw_image(depth.astype(">f4"), "32FC1", pad=2, big_endian=True), keep_invalid=True)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, depth)
    mm = np.array([[1500, 0], [65535, 1]], np.uint16)
    out = messages.decode_depth(raw_image(mm.astype("<u2"), "16UC1", pad=4), keep_invalid=True)
    np.testing.assert_allclose(out, [[1.5, np.nan], [65.535, 0.001]], rtol=1e-6)
    with pytest.raises(messages.MessageError, match="32FC1 or 16UC1"):
        messages.decode_depth(raw_image(np.zeros((2, 2, 3), np.uint8), "rgb8"))


def test_camera_info_round_trip():
    cam = g.PinholeCamera(640, 480, 500.5, 501.25, 319.5, 241.0)
    msg = c.camera_info_msg(cam, 3 * S + 7, "cam_optical")
    assert msg.distortion_model == "plumb_bob" and list(msg.d) == [0.0] * 5
    np.testing.assert_array_equal(np.reshape(msg.r, (3, 3)), np.eye(3))
    ros_k = cam.K - np.array([[0, 0, 0.5], [0, 0, 0.5], [0, 0, 0]])  # ROS: pixel centres at integers
    np.testing.assert_array_equal(np.reshape(msg.k, (3, 3)), ros_k)
    np.testing.assert_array_equal(np.reshape(msg.p, (3, 4))[:, :3], ros_k)
    assert msg.header.frame_id == "cam_optical" and messages.stamp_to_ns(msg.header.stamp) == 3 * S + 7
    assert messages.camera_from_info(msg) == cam


def test_camera_info_refusals():
    with pytest.raises(messages.MessageError, match="uncalibrated"):
        messages.camera_from_info(CameraInfo(width=10, height=10))
    msg = c.camera_info_msg(g.PinholeCamera(64, 48, 50, 50, 32, 24), 0, "c")
    msg.d = array.array("d", [0.1, 0.0, 0.0, 0.0, 0.0])
    with pytest.raises(messages.MessageError, match="distortion"):
        messages.camera_from_info(msg)
    assert messages.camera_from_info(msg, ignore_distortion=True).fx == 50
    msg.k[1] = 0.5
    with pytest.raises(messages.MessageError, match="pinhole"):
        messages.camera_from_info(msg, ignore_distortion=True)
    msg.k[1], msg.width = 0.0, 0
    with pytest.raises(messages.MessageError, match="usable camera"):
        messages.camera_from_info(msg, ignore_distortion=True)


@settings(max_examples=40, deadline=None)
@given(poses, stamps)
def test_transform_and_pose_round_trips(T, stamp):
    msg = c.transform_msg(T, "map", "base_link", stamp)
    assert (msg.header.frame_id, msg.child_frame_id) == ("map", "base_link")
    assert messages.stamp_to_ns(msg.header.stamp) == stamp
    np.testing.assert_allclose(tf_messages.transform_to_matrix(msg), T, atol=1e-12)
    np.testing.assert_allclose(tf_messages.pose_to_matrix(c.pose_msg(T)), T, atol=1e-12)


@given(stamps)
def test_stamp_round_trip(ns):
    t = c.time_msg(ns)
    assert 0 <= t.nanosec < S and messages.stamp_to_ns(t) == ns


def test_stamp_refusals_and_time_passthrough():
    for bad in (-1, 2**31 * S, 1.5):
        with pytest.raises(messages.MessageError, match="stamp"):
            c.time_msg(bad)
    msg = c.image_msg(np.zeros((1, 1, 3), np.uint8), Time(sec=4, nanosec=2), "c")
    assert messages.stamp_to_ns(msg.header.stamp) == 4 * S + 2


def test_bad_quaternion_in_a_transform_names_the_frames():
    msg = c.transform_msg(np.eye(4), "map", "base", 0)
    msg.transform.rotation.w = 0.5
    with pytest.raises(g.GeometryError, match="map -> base.*norm"):
        tf_messages.transform_to_matrix(msg)


def test_feed_tf_message_keeps_good_transforms_and_returns_the_bad():
    good = c.transform_msg(g.make_transform(translation=(1, 2, 3)), "map", "odom", S)
    chained = c.transform_msg(g.make_transform(translation=(0, 0, 1)), "odom", "base", S)
    nan = c.transform_msg(np.eye(4), "map", "nan_frame", S)
    nan.transform.translation.x = float("nan")
    unnormalised = c.transform_msg(np.eye(4), "map", "q_frame", S)
    unnormalised.transform.rotation.w = 3.0
    second_parent = c.transform_msg(np.eye(4), "map", "base", S)
    empty = TransformStamped(child_frame_id="x")
    msg = TFMessage(transforms=[good, nan, chained, unnormalised, second_parent, empty])
    buf = TransformBuffer()
    errors = tf_messages.feed_tf_message(buf, msg, static=False)
    assert len(errors) == 4 and all(isinstance(e, g.GeometryError) for e in errors)
    assert "'nan_frame'" in str(errors[0]) and "non-finite" in str(errors[0])
    assert "'q_frame'" in str(errors[1]) and "norm" in str(errors[1])
    assert isinstance(errors[2], FrameTreeError) and "second parent" in str(errors[2])
    assert "empty" in str(errors[3])
    assert buf.frames() == {"map", "odom", "base"}
    np.testing.assert_allclose(buf.lookup("map", "base", S)[:3, 3], [1, 2, 4])
    assert tf_messages.feed_tf_message(TransformBuffer(), TFMessage(transforms=[good]), static=True) == []


def test_bag_messages_convert_too():
    """Messages deserialised by the rosbags library (bag replay) use the same readers."""
    store = get_typestore(Stores.ROS2_KILTED)
    rgb = np.random.default_rng(2).integers(0, 256, (3, 4, 3), dtype=np.uint8)
    img = store.deserialize_cdr(bytes(serialize_message(c.image_msg(rgb, 9, "c"))), "sensor_msgs/msg/Image")
    np.testing.assert_array_equal(messages.decode_image(img), rgb)
    depth = np.arange(12, dtype=np.float32).reshape(3, 4)
    d = store.deserialize_cdr(bytes(serialize_message(c.depth_msg(depth, 9, "c"))), "sensor_msgs/msg/Image")
    np.testing.assert_array_equal(messages.decode_depth(d, keep_invalid=True), depth)
    cam = g.PinholeCamera(64, 48, 40, 41, 31, 23)
    info = store.deserialize_cdr(bytes(serialize_message(c.camera_info_msg(cam, 9, "c"))), "sensor_msgs/msg/CameraInfo")
    assert messages.camera_from_info(info) == cam
    T = g.make_transform(g.quat_to_matrix([0.0, 0.0, np.sqrt(0.5), np.sqrt(0.5)]), (1.0, 2.0, 3.0))
    tf = store.deserialize_cdr(
        bytes(serialize_message(c.transform_msg(T, "map", "base", 9))), "geometry_msgs/msg/TransformStamped"
    )
    np.testing.assert_allclose(tf_messages.transform_to_matrix(tf), T, atol=1e-12)
