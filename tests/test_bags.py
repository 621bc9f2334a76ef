"""Bags written with rtfm_ros.io.bags read back with plain rosbags, in both storages."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image as PILImage
from rosbags.highlevel import AnyReader
from rosbags.interfaces import QosDurability

from rtfm_ros.geometry import PinholeCamera, look_at, make_transform
from rtfm_ros.io import bags, messages
from rtfm_ros.io.bags import BagError, BagWriter

CAM = PinholeCamera(64, 48, 40.0, 41.0, 31.5, 23.0)
T0 = 1_700_000_000_000_000_000


def _read_all(path: Path) -> list[tuple[str, str, int, object]]:
    with AnyReader([path], default_typestore=bags.typestore()) as r:
        return [(c.topic, c.msgtype, t, r.deserialize(raw, c.msgtype)) for c, t, raw in r.messages()]


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_round_trip(tmp_path: Path, storage: str) -> None:
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
    depth = rng.uniform(0.5, 9.0, (48, 64)).astype(np.float32)
    depth[0, 0] = np.nan
    T = look_at([1.0, 2.0, 3.0], [0.0, 0.0, 0.5])
    out = tmp_path / "bag"
    with BagWriter(out, storage=storage) as w:
        w.write_tf([("base", "cam", make_transform(translation=[0.1, 0, 0.2]))], T0, static=True)
        w.write_tf([("map", "base", T)], T0 + 5, timestamp_ns=T0 + 7)
        w.write_image("/c/image_raw", rgb, T0 + 5, "cam")
        w.write_depth("/c/depth", depth, T0 + 5, "cam")
        w.write_camera_info("/c/camera_info", CAM, T0 + 5, "cam")
    assert w.count == 5 and sorted(p.name for p in tmp_path.iterdir()) == ["bag"]
    msgs = {topic: (t, m) for topic, _, t, m in _read_all(out)}
    assert msgs["/tf"][0] == T0 + 7 and msgs["/c/image_raw"][0] == T0 + 5
    img = msgs["/c/image_raw"][1]
    assert (img.encoding, img.width, img.height, img.step, img.header.frame_id) == ("rgb8", 64, 48, 192, "cam")
    assert messages.stamp_to_ns(img.header.stamp) == T0 + 5
    np.testing.assert_array_equal(messages.decode_image(img, messages.IMAGE), rgb)
    d = msgs["/c/depth"][1]
    assert d.encoding == "32FC1"
    np.testing.assert_array_equal(np.frombuffer(d.data.tobytes(), "<f4").reshape(48, 64), depth)
    assert messages.camera_from_info(msgs["/c/camera_info"][1]) == CAM
    ros_k = CAM.K - [[0, 0, 0.5], [0, 0, 0.5], [0, 0, 0]]  # ROS: pixel centres at integers
    np.testing.assert_allclose(msgs["/c/camera_info"][1].p.reshape(3, 4)[:, :3], ros_k)
    reader = bags.open_bag(out)
    try:
        buf, offsets = bags.load_tf(reader)
        static = next(c for c in reader.connections if c.topic == "/tf_static")
        assert static.ext.offered_qos_profiles[0].durability == QosDurability.TRANSIENT_LOCAL
    finally:
        reader.close()
    assert offsets == [2]
    expected = T @ make_transform(translation=[0.1, 0, 0.2])
    np.testing.assert_allclose(buf.lookup("map", "cam", T0 + 5), expected, atol=1e-9)


def test_error_inside_block_leaves_nothing(tmp_path: Path) -> None:
    out = tmp_path / "bag"
    with pytest.raises(RuntimeError, match="boom"):
        with BagWriter(out) as w:
            w.write_image("/c/image_raw", np.zeros((8, 8, 3), np.uint8), T0, "cam")
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_refuses_existing_output_and_bad_input(tmp_path: Path) -> None:
    (tmp_path / "bag").mkdir()
    with pytest.raises(BagError, match="exists already"):
        BagWriter(tmp_path / "bag")
    with pytest.raises(BagError, match="storage"):
        BagWriter(tmp_path / "other", storage="rosbag1")
    with pytest.raises(BagError, match="HxWx3 uint8"):
        with BagWriter(tmp_path / "other") as w:
            w.write_image("/c", np.zeros((8, 8), np.uint8), T0, "cam")
    with pytest.raises(BagError, match="already carries"):
        with BagWriter(tmp_path / "other") as w:
            w.write_image("/c", np.zeros((8, 8, 3), np.uint8), T0, "cam")
            w.write_camera_info("/c", CAM, T0, "cam")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bag"]


def test_copy_keeps_definition_and_qos(tmp_path: Path) -> None:
    src, dst = tmp_path / "src", tmp_path / "dst"
    with BagWriter(src, storage="sqlite3") as w:
        w.write_tf([("a", "b", np.eye(4))], T0, static=True)
        w.write_message("/chatter", bags.typestore().types["std_msgs/msg/String"](data="hi"), T0 + 1)
    reader = bags.open_bag(src)
    try:
        with BagWriter(dst) as w:
            for conn, t, raw in reader.messages():
                w.copy(conn, raw, t, reader.typestore)
            w.write_tf([("a", "c", np.eye(4))], T0 + 2, static=True)  # joins the copied /tf_static
    finally:
        reader.close()
    got = _read_all(dst)
    assert [(topic, t) for topic, _, t, _ in got] == [("/tf_static", T0), ("/chatter", T0 + 1), ("/tf_static", T0 + 2)]
    assert got[1][3].data == "hi"


def test_decode_encodings_and_compressed() -> None:
    types = bags.typestore().types
    rgb = np.arange(4 * 5 * 3, dtype=np.uint8).reshape(4, 5, 3)
    head = messages.header_msg(T0, "cam")
    padded = np.zeros((4, 16), np.uint8)
    padded[:, :15] = rgb[..., ::-1].reshape(4, 15)
    bgr = types[messages.IMAGE](header=head, height=4, width=5, encoding="bgr8", is_bigendian=0, step=16,
                            data=padded.reshape(-1))
    np.testing.assert_array_equal(messages.decode_image(bgr, messages.IMAGE), rgb)
    mono = types[messages.IMAGE](header=head, height=4, width=5, encoding="mono8", is_bigendian=0, step=5,
                             data=rgb[..., 0].reshape(-1).copy())
    np.testing.assert_array_equal(messages.decode_image(mono, messages.IMAGE), np.repeat(rgb[..., :1], 3, axis=2))
    buf = io.BytesIO()
    PILImage.fromarray(rgb).save(buf, format="PNG")
    comp = types[messages.COMPRESSED_IMAGE](header=head, format="png", data=np.frombuffer(buf.getvalue(), np.uint8))
    np.testing.assert_array_equal(messages.decode_image(comp, messages.COMPRESSED_IMAGE), rgb)
    bad = types[messages.COMPRESSED_IMAGE](header=head, format="jpeg", data=np.zeros(10, np.uint8))
    with pytest.raises(messages.MessageError, match="cannot decode"):
        messages.decode_image(bad, messages.COMPRESSED_IMAGE)
    with pytest.raises(messages.MessageError, match="not supported"):
        messages.decode_image(types[messages.IMAGE](header=head, height=4, width=5, encoding="16UC1", is_bigendian=0,
                                            step=10, data=np.zeros(40, np.uint8)), messages.IMAGE)
    with pytest.raises(messages.MessageError, match="does not fit"):
        messages.decode_image(types[messages.IMAGE](header=head, height=4, width=5, encoding="rgb8", is_bigendian=0,
                                            step=15, data=np.zeros(20, np.uint8)), messages.IMAGE)


def test_open_bag_errors(tmp_path: Path) -> None:
    with pytest.raises(BagError, match="does not exist"):
        bags.open_bag(tmp_path / "nope")
    corrupt = tmp_path / "corrupt.mcap"
    corrupt.write_bytes(b"\x89MCAP0\r\n" + bytes(range(256)) * 4)
    with pytest.raises(BagError, match="cannot read"):
        bags.open_bag(corrupt)
    with BagWriter(tmp_path / "empty") as w:
        w.connection("/tf", bags.TF_MESSAGE)
    with pytest.raises(BagError, match="no messages"):
        bags.open_bag(tmp_path / "empty")
