"""FrameMemory: validation, spatial queries, context selection, write-back policy, RAM budget."""

import math

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from rtfm_ros.geometry import GeometryError, PinholeCamera, compose, look_at, make_transform
from rtfm_ros.memory import FrameError, FrameMemory, select_context
from rtfm_ros.memory.spatial_index import SpatialIndex

CAM = PinholeCamera.from_fov(16, 12, 60.0)


def img(seed):
    return np.random.default_rng(seed).integers(0, 256, (CAM.height, CAM.width, 3), dtype=np.uint8)


def view(x, y, yaw_deg=0.0):
    a = math.radians(yaw_deg)
    return look_at([x, y, 1.0], [x + math.cos(a), y + math.sin(a), 1.0])


def filled(n, seed=0, path=None, **kw):
    mem = FrameMemory(path, **kw)
    rng = np.random.default_rng(seed)
    for i in range(n):
        x, y = rng.uniform(-10, 10, 2)
        mem.add(img(i), view(x, y, rng.uniform(-180, 180)), CAM, stamp=float(i), source="observed")
    return mem


def test_add_get_iterate():
    mem = FrameMemory()
    depth = np.full((CAM.height, CAM.width), 2.5, np.float64)
    a = mem.add(img(1), view(0, 0), CAM, stamp=3.0, source="seed", depth=depth)
    b = mem.add(img(2), view(1, 0), CAM, stamp=4.0, source="generated")
    assert (a, b) == (0, 1) and len(mem) == 2 and list(mem) == [0, 1]
    assert 1 in mem and 2 not in mem and "x" not in mem
    f = mem.get(0)
    np.testing.assert_array_equal(f.rgb, img(1))
    assert f.depth.dtype == np.float32 and f.depth[0, 0] == 2.5
    assert f.source == "seed" and f.stamp == 3.0 and f.camera == CAM
    np.testing.assert_array_equal(f.T_world_camera, view(0, 0))
    with pytest.raises(ValueError):
        f.rgb[0, 0, 0] = 1  # stored pixels cannot be changed through a returned frame
    assert mem.poses().shape == (2, 4, 4) and mem.nbytes > 2 * img(0).nbytes
    with pytest.raises(KeyError):
        mem.get(2)
    mem.clear()
    assert len(mem) == 0 and mem.nearest([0, 0, 0], 3) == []


@pytest.mark.parametrize("kwargs, err, match", [
    (dict(rgb=np.zeros((12, 16, 3), np.float32)), FrameError, "uint8"),
    (dict(rgb=np.zeros((12, 15, 3), np.uint8)), FrameError, "shape"),
    (dict(rgb=np.zeros((12, 16), np.uint8)), FrameError, "shape"),
    (dict(T=np.full((4, 4), np.nan)), GeometryError, "non-finite"),
    (dict(T=np.eye(4) * 2), GeometryError, "orthonormal"),
    (dict(camera="cam"), FrameError, "PinholeCamera"),
    (dict(stamp=float("inf")), FrameError, "stamp"),
    (dict(stamp="soon"), FrameError, "stamp"),
    (dict(source="imagined"), FrameError, "source"),
    (dict(depth=np.zeros((12, 16), np.uint16)), FrameError, "depth"),
    (dict(depth=np.zeros((11, 16), np.float32)), FrameError, "depth shape"),
    (dict(depth=-np.ones((12, 16), np.float32)), FrameError, "negative"),
])
def test_bad_frames_are_refused_and_nothing_is_stored(kwargs, err, match):
    mem = FrameMemory()
    args = dict(rgb=img(0), T=view(0, 0), camera=CAM, stamp=0.0, source="observed", depth=None)
    args.update(kwargs)
    with pytest.raises(err, match=match):
        mem.add(args["rgb"], args["T"], args["camera"], stamp=args["stamp"], source=args["source"],
                depth=args["depth"])
    assert len(mem) == 0


@pytest.mark.parametrize("min_buffer", [1, 4, 1000])
def test_spatial_index_matches_brute_force(min_buffer):
    rng = np.random.default_rng(min_buffer)
    index = SpatialIndex(rebuild_fraction=0.2, min_buffer=min_buffer, max_buffer=50)
    pts = np.empty((0, 3))
    for _ in range(30):
        new = rng.normal(0, 5, (rng.integers(1, 40), 3))
        index.extend(new)
        pts = np.vstack([pts, new])
        q = rng.normal(0, 5, 3)
        d = np.linalg.norm(pts - q, axis=1)
        k = min(7, len(pts))
        np.testing.assert_array_equal(index.nearest(q, k), np.argsort(d, kind="stable")[:k])
        np.testing.assert_array_equal(index.within(q, 3.0), np.flatnonzero(d <= 3.0))
    assert len(index) == len(pts)


def test_memory_spatial_queries():
    mem = filled(300)
    pos = mem.poses()[:, :3, 3]
    q = np.array([1.0, -2.0, 1.0])
    d = np.linalg.norm(pos - q, axis=1)
    assert mem.nearest(q, 5) == np.argsort(d)[:5].tolist()
    assert mem.within_radius(q, 2.5) == np.flatnonzero(d <= 2.5).tolist()


def test_memory_context_matches_the_pure_function():
    mem = filled(400, seed=3)
    for x, y, yaw in [(0, 0, 0), (3, -2, 120), (-7, 5, -60)]:
        T = view(x, y, yaw)
        cams = [mem.camera(i) for i in mem]
        got = mem.select_context(T, CAM, 6, favour_recent=False)
        want = select_context(T, CAM, mem.poses(), cams, 6)
        assert got == want and len(got) == 6
        exact = mem.add(img(0), T, CAM, stamp=1e6, source="generated")
        assert mem.select_context(T, CAM, 6)[0] == exact


def test_should_remember():
    mem = FrameMemory()
    T = view(2, 3, 40)
    mem.add(img(0), T, CAM, stamp=0.0, source="observed")
    assert not mem.should_remember(T, CAM)
    nudged = compose(T, make_transform(Rotation.from_euler("y", 2, degrees=True).as_matrix(), [0.02, 0, 0]))
    assert not mem.should_remember(nudged, CAM)
    moved = compose(T, make_transform(None, [0.0, 0.0, 0.08]))
    assert mem.should_remember(moved, CAM)
    turned = compose(T, make_transform(Rotation.from_euler("y", 7, degrees=True).as_matrix()))
    assert mem.should_remember(turned, CAM)
    assert mem.should_remember(T, PinholeCamera.from_fov(16, 12, 90.0))  # wider view adds pixels
    assert mem.should_remember(T, CAM.scaled(64, 48))                    # sharper view adds detail
    assert mem.should_remember(moved, CAM, min_translation=0.1) is False
    assert mem.should_remember(turned, CAM, min_rotation=10.0) is False   # degrees


def test_ram_budget_pages_frames_out_and_back(tmp_path):
    frame_bytes = img(0).nbytes
    mem = filled(10, path=tmp_path / "w.rtfm", ram_budget_bytes=3 * frame_bytes)
    assert [mem.is_resident(i) for i in mem] == [False] * 7 + [True] * 3
    assert mem.nbytes_pixels <= 3 * frame_bytes
    np.testing.assert_array_equal(mem.get(0).rgb, img(0))   # paged in from disk, exact
    assert mem.is_resident(0) and not mem.is_resident(7)     # 7 was least recently used
    mem.get(8)
    for i in (1, 2, 3):
        mem.get(i)
    assert not mem.is_resident(8)
    assert mem.nbytes_pixels <= 3 * frame_bytes
    # Geometry never needs the disk: context selection touches no pixels.
    mem.select_context(view(0, 0), CAM, 4)
    assert sum(mem.is_resident(i) for i in mem) == 3


def test_budget_without_world_file_spills_to_a_private_file(tmp_path):
    mem = FrameMemory(ram_budget_bytes=2 * img(0).nbytes)
    for i in range(5):
        mem.add(img(i), view(i, 0), CAM, stamp=0.0, source="seed")
    assert len(mem) == 5 and mem.nbytes_pixels <= 2 * img(0).nbytes and mem.path is None
    spill = mem._world.path
    assert spill.exists()
    np.testing.assert_array_equal(mem.get(0).rgb, img(0))
    mem.attach(tmp_path / "w.rtfm")               # keep them: the spill file goes away
    assert mem.path == tmp_path / "w.rtfm" and not spill.exists()
    mem.add(img(5), view(5, 0), CAM, stamp=0.0, source="seed")
    mem.close()
    back = FrameMemory.open(tmp_path / "w.rtfm")
    assert len(back) == 6
    for i in back:
        np.testing.assert_array_equal(back.get(i).rgb, img(i))
    again = FrameMemory(ram_budget_bytes=img(0).nbytes)
    again.add(img(0), view(0, 0), CAM, stamp=0.0, source="seed")
    again.add(img(1), view(1, 0), CAM, stamp=0.0, source="seed")
    spill = again._world.path
    again.close()
    assert not spill.exists() and len(again) == 0


def test_open_does_not_load_pixels(tmp_path):
    filled(50).save(tmp_path / "w.rtfm")
    mem = FrameMemory.open(tmp_path / "w.rtfm")
    assert mem.nbytes_pixels == 0 and len(mem) == 50
    assert mem.select_context(view(0, 0), CAM, 3) and mem.nbytes_pixels == 0
