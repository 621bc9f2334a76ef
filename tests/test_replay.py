"""`rtfm replay` on bags written here with a known trajectory, read back with plain rosbags."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image as PILImage
from rosbags.highlevel import AnyReader
from scipy.spatial.transform import Rotation

from rtfm_ros import cli
from rtfm_ros.geometry import R_BODY_OPTICAL, PinholeCamera, make_transform
from rtfm_ros.io import bags, messages
from rtfm_ros.io.bags import BagWriter
from rtfm_ros.replay import ReplayError, ReplayOptions, apply_offset, load_poses, parse_offset, replay
from rtfm_ros.world import WorldModel

T0 = 1_700_000_000_000_000_000
MS = 1_000_000
SEED_CAM = PinholeCamera.from_fov(32, 24, 70.0)
T_BASE_CAMLINK = make_transform(translation=[0.2, 0.0, 0.3])


def base_pose(t_s: float) -> np.ndarray:
    return make_transform(Rotation.from_euler("z", 0.3 * t_s).as_matrix(), [t_s, 0.5 * t_s, 0.0])


def optical_pose(t_s: float) -> np.ndarray:
    return base_pose(t_s) @ T_BASE_CAMLINK @ make_transform(R_BODY_OPTICAL)


def write_bag(path: Path, storage: str = "mcap") -> None:
    """1 s of TF at 20 Hz (map -> base_link moving; static camera frames), 5 camera images, a chatter topic."""
    with BagWriter(path, storage=storage) as w:
        w.write_tf([("base_link", "camera_link", T_BASE_CAMLINK),
                    ("camera_link", "camera_optical", make_transform(R_BODY_OPTICAL))], T0, static=True)
        for i in range(21):
            t = T0 + i * 50 * MS
            w.write_tf([("map", "base_link", base_pose(i * 0.05))], t)
            if i % 4 == 1:
                w.write_image("/cam/image_raw", np.full((24, 32, 3), 10 * i, np.uint8), t, "camera_optical")
                w.write_camera_info("/cam/camera_info", SEED_CAM, t, "camera_optical")
            w.write_message("/chatter", bags.typestore().types["std_msgs/msg/String"](data=str(i)), t)


def read(path: Path) -> dict[str, list[tuple[int, object]]]:
    out: dict[str, list[tuple[int, object]]] = {}
    with AnyReader([path], default_typestore=bags.typestore()) as r:
        for c, t, raw in r.messages():
            out.setdefault(c.topic, []).append((t, r.deserialize(raw, c.msgtype)))
    return out


@pytest.fixture(scope="module")
def wm() -> WorldModel:
    return WorldModel.load()  # the bundled default model


@pytest.fixture
def world(wm: WorldModel) -> WorldModel:
    wm.reset()
    return wm


@pytest.fixture(scope="module")
def bag_mcap(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("in") / "in_mcap"
    write_bag(path, "mcap")
    return path


def test_replay_rate_seeds_and_copies(bag_mcap: Path, world: WorldModel, tmp_path: Path) -> None:
    out = tmp_path / "out"
    opt = ReplayOptions(camera_frame="camera_optical", seed_topic="/cam/image_raw", rate_hz=10.0, depth=True,
                        progress=False, batch_size=4)
    res = replay(bag_mcap, out, opt, world_model=world)
    assert (res.rendered, res.seeded, res.skipped, res.bag_seconds) == (11, 5, 0, 1.0)
    # seeds are at their TF poses, in id order, with the seed camera scaled to the memory size
    poses, stamps = world.memory.poses(), world.memory.stamps()
    for k, i in enumerate(range(1, 21, 4)):
        np.testing.assert_allclose(poses[k], optical_pose(i * 0.05), atol=1e-6)
        assert stamps[k] == pytest.approx((T0 + i * 50 * MS) / 1e9)
        assert world.memory.get(k).source == "seed"
    msgs = read(out)
    images, infos = msgs["/rtfm/camera/image_raw"], msgs["/rtfm/camera/camera_info"]
    expected = [T0 + k * 100 * MS for k in range(11)]
    assert [messages.stamp_to_ns(m.header.stamp) for _, m in images] == expected == [t for t, _ in images]
    assert {m.header.frame_id for _, m in images + infos} == {"camera_optical"}
    assert {(m.width, m.height, m.encoding) for _, m in images} == {(64, 64, "rgb8")}
    assert [messages.stamp_to_ns(m.header.stamp) for _, m in infos] == expected
    assert messages.camera_from_info(infos[0][1]) == PinholeCamera.from_fov(64, 64, 90.0)
    depth = msgs["/rtfm/camera/depth/image_raw"]
    assert len(depth) == 11 and depth[0][1].encoding == "32FC1"
    assert len(msgs["/chatter"]) == 21 and len(msgs["/tf"]) == 21 and len(msgs["/cam/image_raw"]) == 5
    assert len(msgs["/tf_static"]) == 1


def test_checked_depth_is_written_like_the_nodes(bag_mcap: Path, world: WorldModel, tmp_path: Path) -> None:
    """--depth-source checked: the rendered depth kept only where a real frame with measured or
    triangulated depth saw the same surface (NaN elsewhere), as the camera node publishes it."""
    def depths(name: str, source: str) -> list[np.ndarray]:
        world.reset()
        opt = ReplayOptions(camera_frame="camera_optical", seed_topic="/cam/image_raw", rate_hz=10.0, depth=True,
                            depth_source=source, copy=False, remember=False, progress=False)
        replay(bag_mcap, tmp_path / name, opt, world_model=world)
        return [messages.decode_depth(m, keep_invalid=True) for _, m in read(tmp_path / name)
                ["/rtfm/camera/depth/image_raw"]]

    rendered, checked = depths("rendered", "rendered"), depths("checked", "checked")
    assert len(rendered) == len(checked) == 11
    for r, c in zip(rendered, checked):
        kept = np.isfinite(c)
        np.testing.assert_array_equal(c[kept], r[kept])  # what is kept is the rendered depth
    dropped = sum(int((np.isfinite(r) & ~np.isfinite(c)).sum()) for r, c in zip(rendered, checked))
    assert dropped > 0 and any(np.isfinite(c).any() for c in checked)
    with pytest.raises(ReplayError, match="depth-source"):
        replay(bag_mcap, tmp_path / "bad", ReplayOptions(camera_frame="camera_optical", depth_source="guessed",
                                                         progress=False), world_model=world)


@pytest.mark.parametrize("storage", ["sqlite3", "mcap"])
def test_at_topic_no_copy_body_frame(tmp_path: Path, world: WorldModel, storage: str) -> None:
    src, out = tmp_path / "in", tmp_path / "out"
    write_bag(src, storage)
    opt = ReplayOptions(camera_frame="camera_link", body_frame=True, seed_topic="/cam/image_raw",
                        at_topic="/cam/camera_info", storage=storage, copy=False, progress=False,
                        camera=PinholeCamera.from_fov(32, 24, 60.0), topic_prefix="/sim/front")
    res = replay(src, out, opt, world_model=world)
    assert res.rendered == 5
    assert (out / f"out.{'db3' if storage == 'sqlite3' else 'mcap'}").is_file()
    msgs = read(out)
    assert set(msgs) == {"/tf_static", "/sim/front/image_raw", "/sim/front/camera_info"}
    images = msgs["/sim/front/image_raw"]
    assert [messages.stamp_to_ns(m.header.stamp) for _, m in images] == [T0 + i * 50 * MS for i in range(1, 21, 4)]
    assert {m.header.frame_id for _, m in images} == {"camera_link_optical"}
    assert {(m.width, m.height) for _, m in images} == {(32, 24)}
    (tf,) = msgs["/tf_static"][0][1].transforms
    assert (tf.header.frame_id, tf.child_frame_id) == ("camera_link", "camera_link_optical")


def test_poses_file_and_offset(bag_mcap: Path, world: WorldModel, tmp_path: Path) -> None:
    poses = tmp_path / "poses.csv"
    poses.write_text("stamp,x,y,z,qx,qy,qz,qw\n1700000000.5,1,2,3,0,0,0,1\n1700000000.25,0,0,1,0,0,0,1\n")
    loaded = load_poses(poses)
    assert [t for t, _ in loaded] == [T0 + 250 * MS, T0 + 500 * MS]
    js = tmp_path / "poses.json"
    js.write_text(json.dumps({"poses": [{"stamp_ns": T0, "T": np.eye(4).tolist()}]}))
    assert load_poses(js)[0][0] == T0
    opt = ReplayOptions(camera_frame="camera_optical", seed_topic="/cam/image_raw", poses=poses,
                        offset=parse_offset("0.5,0,0,90"), copy=False, progress=False, remember=False)
    res = replay(bag_mcap, tmp_path / "out", opt, world_model=world)
    assert res.rendered == 2
    stamps = [messages.stamp_to_ns(m.header.stamp) for _, m in read(tmp_path / "out")["/rtfm/camera/image_raw"]]
    assert stamps == [T0 + 250 * MS, T0 + 500 * MS]
    T = apply_offset(optical_pose(0.0), (0.5, 0.0, 0.0, 90.0))
    np.testing.assert_allclose(T[:3, 3], optical_pose(0.0)[:3, 3] + [0.5, 0, 0])
    np.testing.assert_allclose(T[:3, :3], Rotation.from_euler("z", 90, degrees=True).as_matrix()
                               @ optical_pose(0.0)[:3, :3], atol=1e-12)
    with pytest.raises(ReplayError, match="four numbers"):
        parse_offset("1,2,3")
    bad = tmp_path / "bad.csv"
    bad.write_text("stamp,x,y\n1,2,3\n")
    with pytest.raises(ReplayError, match="stamp"):
        load_poses(bad)


def test_seed_from_compressed_images(tmp_path: Path, world: WorldModel) -> None:
    src = tmp_path / "in"
    with BagWriter(src) as w:
        w.write_tf([("map", "base_link", base_pose(0.0))], T0)
        w.write_tf([("map", "base_link", base_pose(0.5))], T0 + 500 * MS)
        w.write_tf([("base_link", "cam", T_BASE_CAMLINK)], T0, static=True)
        for t in (T0 - MS, T0 + 250 * MS):  # the first lies before any TF: skipped
            buf = io.BytesIO()
            PILImage.fromarray(np.full((24, 32, 3), 200, np.uint8)).save(buf, format="JPEG")
            msg = bags.typestore().types[messages.COMPRESSED_IMAGE](header=messages.header_msg(t, "cam"), format="jpeg",
                                                                 data=np.frombuffer(buf.getvalue(), np.uint8))
            w.write_message("/front/image_raw/compressed", msg, t)
            w.write_camera_info("/front/camera_info", SEED_CAM, t, "cam")
    opt = ReplayOptions(camera_frame="cam", seed_topic="/front/image_raw/compressed", rate_hz=4.0, progress=False)
    res = replay(src, tmp_path / "out", opt, world_model=world)
    assert (res.seeded, res.skipped, res.rendered) == (1, 1, 3)
    np.testing.assert_allclose(world.memory.pose(0), base_pose(0.25) @ T_BASE_CAMLINK, atol=1e-6)
    assert world.memory.camera(0) == world.memory_camera(SEED_CAM)
    with pytest.raises(ReplayError, match="static in this bag"):
        replay(src, tmp_path / "out2", ReplayOptions(camera_frame="cam", world_frame="base_link", progress=False),
               world_model=world)
    with BagWriter(tmp_path / "island") as w:
        for t in (T0, T0 + MS):
            w.write_tf([("map", "a", np.eye(4)), ("b", "cam", np.eye(4))], t)
    with pytest.raises(ReplayError, match="not connected"):
        replay(tmp_path / "island", tmp_path / "out2", ReplayOptions(camera_frame="cam", progress=False),
               world_model=world)
    assert not (tmp_path / "out2").exists()


def test_save_world_round_trip(bag_mcap: Path, world: WorldModel, tmp_path: Path) -> None:
    opt = ReplayOptions(camera_frame="camera_optical", seed_topic="/cam/image_raw", seed_stride=2,
                        save_world=tmp_path / "world", progress=False)
    res = replay(bag_mcap, None, opt, world_model=world)
    assert res.seeded == 3 and res.output is None
    from rtfm_ros.memory import FrameMemory

    with FrameMemory.open(tmp_path / "world", writable=False) as mem:
        assert len(mem) == 3
        np.testing.assert_allclose(mem.poses()[1], optical_pose(9 * 0.05), atol=1e-6)


def _cli(argv: list[str]) -> int:
    return cli.main(["replay", *argv, "--quiet"])


def test_cli_world_dir(bag_mcap: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert _cli([str(bag_mcap), "--camera-frame", "camera_optical", "--seed-topic", "/cam/image_raw",
                 "--save-world", str(tmp_path / "w")]) == 0
    out = tmp_path / "out"
    assert _cli([str(bag_mcap), "-o", str(out), "--camera-frame", "camera_optical", "--world", str(tmp_path / "w"),
                 "--rate", "4", "--storage", "sqlite3", "--width", "16", "--height", "8"]) == 0
    assert "wrote" in capsys.readouterr().out
    imgs = read(out)["/rtfm/camera/image_raw"]
    assert len(imgs) == 5 and (imgs[0][1].width, imgs[0][1].height) == (16, 8)
    from rtfm_ros.memory import FrameMemory

    with FrameMemory.open(tmp_path / "w", writable=False) as mem:  # the input world is left as it was
        assert len(mem) == 5


@pytest.mark.parametrize("args, message", [
    (["--camera-frame", "camera_optical"], "--world"),
    (["--camera-frame", "nope", "--seed-topic", "/cam/image_raw"], "frames in the bag: base_link, camera_link"),
    (["--camera-frame", "camera_optical", "--seed-topic", "/chatter"], "carries std_msgs/msg/String"),
    (["--camera-frame", "camera_optical", "--seed-topic", "/missing"], "not in the bag"),
    (["--camera-frame", "camera_optical", "--seed-topic", "/cam/image_raw", "--width", "5000"], "width must be"),
    (["--camera-frame", "camera_optical", "--seed-topic", "/cam/image_raw", "--rate", "1", "--at-topic", "/tf"],
     "exclusive"),
])
def test_cli_bad_input(bag_mcap: Path, tmp_path: Path, capsys: pytest.CaptureFixture,
                       args: list[str], message: str) -> None:
    out = tmp_path / "out"
    assert _cli([str(bag_mcap), "-o", str(out), *args]) == 2
    assert message in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_cli_bad_bags(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    empty, corrupt, notf = tmp_path / "empty", tmp_path / "corrupt.mcap", tmp_path / "notf"
    with BagWriter(empty) as w:
        w.connection("/tf", bags.TF_MESSAGE)
    corrupt.write_bytes(b"\x89MCAP0\r\n" + b"\x01\x02" * 500)
    with BagWriter(notf) as w:
        w.write_image("/cam/image_raw", np.zeros((8, 8, 3), np.uint8), T0, "cam")
    for bag, message in [(empty, "no messages"), (corrupt, "cannot read"), (notf, "no /tf"),
                         (tmp_path / "missing", "does not exist")]:
        out = tmp_path / "out"
        assert _cli([str(bag), "-o", str(out), "--camera-frame", "cam", "--seed-topic", "/cam/image_raw"]) == 2
        assert message in capsys.readouterr().err
        assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["corrupt.mcap", "empty", "notf"]


def test_seed_with_registered_depth(tmp_path: Path, world: WorldModel) -> None:
    """RGB-D seeds: each colour image takes the depth image nearest in time (16UC1 mm or 32FC1 m)
    as its metric depth; an image with no depth near it gets stereo like any photo."""
    src = tmp_path / "rgbd"
    with BagWriter(src) as w:
        w.write_tf([("map", "base_link", base_pose(0.0))], T0)
        w.write_tf([("map", "base_link", base_pose(0.9))], T0 + 900 * MS)
        w.write_tf([("base_link", "cam", T_BASE_CAMLINK)], T0, static=True)
        for k, t in enumerate((T0 + 100 * MS, T0 + 400 * MS, T0 + 800 * MS)):
            w.write_image("/cam/color", np.full((24, 32, 3), 60 + 40 * k, np.uint8), t, "cam")
            w.write_camera_info("/cam/camera_info", SEED_CAM, t, "cam")
        w.write_depth("/cam/depth", np.full((24, 32), 2.5, np.float32), T0 + 110 * MS, "cam")
        mm = np.full((12, 16), 1500, np.uint16)  # half size: resized to the colour image
        mm[0, 0] = 0  # no return
        msg = bags.typestore().types[messages.IMAGE](header=messages.header_msg(T0 + 390 * MS, "cam"), height=12,
                                                 width=16, encoding="16UC1", is_bigendian=0, step=32,
                                                 data=np.frombuffer(mm.tobytes(), np.uint8))
        w.write_message("/cam/depth", msg, T0 + 390 * MS)
    opt = ReplayOptions(camera_frame="cam", seed_topic="/cam/color", seed_depth_topic="/cam/depth", rate_hz=4.0,
                        progress=False)
    res = replay(src, tmp_path / "out", opt, world_model=world)
    assert res.seeded == 3
    d0, d1, d2 = (world.memory.get(i).depth for i in range(3))
    assert np.allclose(d0, 2.5)
    assert np.isnan(d1[0, 0]) and np.allclose(d1[2:, 2:], 1.5)
    assert d2 is None  # 400 ms from the nearest depth image: not paired
    assert world.prepare(0).source == "sensor"
    with pytest.raises(bags.BagError, match="/missing is not in the bag"):
        replay(src, tmp_path / "out2", ReplayOptions(camera_frame="cam", seed_topic="/cam/color",
                                                     seed_depth_topic="/missing", progress=False), world_model=world)
