"""World files: round trips, crash safety (killed saves and appends) and corruption detection."""

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from rtfm_ros.geometry import PinholeCamera, look_at
from rtfm_ros.memory import FrameMemory, WorldFile, WorldFileError
from rtfm_ros.memory.world_schema import SCHEMA_VERSION

CAM = PinholeCamera.from_fov(32, 24, 70.0)


def texture(seed, h=24, w=32):
    """Smooth gradient plus fine texture: compresses like a rendered image, not like noise."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w] / max(h, w)
    base = np.stack([np.sin(3 * x + seed), np.cos(2 * y - seed), np.sin(2 * (x + y))], -1) * 90 + 128
    return np.clip(base + rng.normal(0, 12, (h, w, 3)), 0, 255).astype(np.uint8)


def make_memory(n, path=None, depth=True, **kw):
    mem = FrameMemory(path, **kw)
    rng = np.random.default_rng(0)
    for i in range(n):
        d = None
        if depth:
            d = rng.uniform(0.2, 9.0, (CAM.height, CAM.width)).astype(np.float32)
            d[0, :3] = np.nan
        mem.add(texture(i), look_at([i * 0.3, 0.1 * i, 1.0], [i * 0.3, 0.1 * i + 5.0, 0.5]), CAM, stamp=100.0 + i,
                source=("seed", "observed", "generated")[i % 3], depth=d)
    return mem


def assert_same(a, b, exact_depth=True):
    assert len(a) == len(b)
    np.testing.assert_array_equal(a.poses(), b.poses())
    np.testing.assert_array_equal(a.intrinsics(), b.intrinsics())
    np.testing.assert_array_equal(a.stamps(), b.stamps())
    for i in a:
        fa, fb = a.get(i), b.get(i)
        np.testing.assert_array_equal(fa.rgb, fb.rgb)
        assert fa.source == fb.source and fa.camera == fb.camera
        if exact_depth:
            np.testing.assert_array_equal(fa.depth, fb.depth)


def test_round_trip_is_exact(tmp_path):
    mem = make_memory(7, meta={"scene": "kitchen", "n": [1, 2]}, model="rtfm-small")
    mem.save(tmp_path / "w.rtfm")
    back = FrameMemory.open(tmp_path / "w.rtfm", check="full")
    assert_same(mem, back)
    assert back.meta == {"scene": "kitchen", "n": [1, 2]}
    assert np.isnan(back.get(4).depth[0, 0]) and back.get(4).depth.dtype == np.float32
    assert back.get(4).source == "observed"


def test_appends_are_persisted_and_reopened_for_append(tmp_path):
    path = tmp_path / "live.rtfm"
    mem = make_memory(5, path)
    mem.close()
    again = FrameMemory.open(path)
    assert len(again) == 5
    again.add(texture(99), look_at([0, 0, 0], [1, 0, 0]), CAM, stamp=1.0, source="observed")
    again.close()
    third = FrameMemory.open(path, check="full")
    assert len(third) == 6
    np.testing.assert_array_equal(third.get(5).rgb, texture(99))
    assert third.get(5).depth is None


@pytest.mark.parametrize("depth_format, rel, abs_", [("npz16", 5e-4, 0.0), ("png16mm", 0.0, 0.5e-3 + 1e-6)])
def test_lossy_depth_formats(tmp_path, depth_format, rel, abs_):
    mem = make_memory(3, depth_format=depth_format)
    mem.save(tmp_path / "d.rtfm")
    back = FrameMemory.open(tmp_path / "d.rtfm")
    for i in mem:
        a, b = mem.get(i).depth, back.get(i).depth
        assert np.array_equal(np.isnan(a), np.isnan(b))
        ok = ~np.isnan(a)
        assert np.all(np.abs(a[ok] - b[ok]) <= rel * a[ok] + abs_)
        assert not np.array_equal(a[ok], b[ok])  # it is lossy: the test compares something


@pytest.mark.parametrize("fmt", ["webp", "jpeg"])
def test_lossy_image_formats_are_close_and_smaller(tmp_path, fmt):
    mem = make_memory(4, depth=False, image_format=fmt, image_quality=90)
    mem.save(tmp_path / "i.rtfm")
    back = FrameMemory.open(tmp_path / "i.rtfm")
    for i in mem:
        err = np.abs(mem.get(i).rgb.astype(int) - back.get(i).rgb.astype(int)).mean()
        assert err < 12


def test_save_over_existing_world_and_same_path(tmp_path):
    path = tmp_path / "w.rtfm"
    make_memory(2).save(path)
    live = FrameMemory.open(path)          # leaves -wal / -shm while open
    live.add(texture(5), look_at([0, 0, 0], [0, 1, 0]), CAM, stamp=0.0, source="seed")
    live.save(path, meta={"v": 2})         # same path: metadata only
    live.close()
    bigger = make_memory(4)
    bigger.save(path)
    back = FrameMemory.open(path, check="full")
    assert_same(bigger, back)
    back.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["w.rtfm"]


def test_two_writers_cannot_interleave(tmp_path):
    path = tmp_path / "w.rtfm"
    make_memory(1, path).close()
    a, b = FrameMemory.open(path), FrameMemory.open(path)
    a.add(texture(1), look_at([0, 0, 0], [1, 0, 0]), CAM, stamp=0.0, source="observed")
    with pytest.raises(WorldFileError, match="another writer"):
        b.add(texture(2), look_at([0, 0, 0], [1, 0, 0]), CAM, stamp=0.0, source="observed")
    assert len(b) == 1
    a.close()
    b.close()
    assert len(FrameMemory.open(path, check="full")) == 2


def test_create_refuses_existing_and_bad_options(tmp_path):
    make_memory(1).save(tmp_path / "w.rtfm")
    with pytest.raises(WorldFileError, match="already exists"):
        FrameMemory(tmp_path / "w.rtfm")
    with pytest.raises(WorldFileError, match="image format"):
        FrameMemory(tmp_path / "x.rtfm", image_format="bmp")
    with pytest.raises(WorldFileError, match="JSON"):
        FrameMemory(tmp_path / "y.rtfm", meta={"bad": object()})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["w.rtfm"]  # nothing half-made left behind
    with pytest.raises(WorldFileError, match="does not exist"):
        FrameMemory.open(tmp_path / "missing.rtfm")


# ------------------------------------------------------------------ crash safety

def _spawn(script):
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(script)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)


CHILD_HEAD = f"""
import sys, numpy as np
sys.path.insert(0, {os.path.dirname(__file__)!r})
from test_world_file import make_memory, texture, CAM
from rtfm_ros.memory import FrameMemory
from rtfm_ros.geometry import look_at
"""


def test_killed_save_leaves_previous_world(tmp_path):
    path = tmp_path / "w.rtfm"
    good = make_memory(3)
    good.save(path)
    child = _spawn(CHILD_HEAD + f"""
mem = make_memory(1500, depth=False)
print("ready", flush=True)
mem.save({str(path)!r}, progress=lambda n: print("saved", n, flush=True))
print("finished", flush=True)
""")
    try:
        assert child.stdout.readline().strip() == "ready", child.stderr.read()
        line = child.stdout.readline().strip()
        assert line.startswith("saved"), line + child.stderr.read()
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.wait(30)
    assert child.returncode == -signal.SIGKILL
    leftovers = [p.name for p in tmp_path.iterdir() if p.name != "w.rtfm"]
    assert leftovers and all(n.startswith(f".w.rtfm.{child.pid}.") and ".tmp" in n for n in leftovers)
    back = FrameMemory.open(path, check="full")   # the next open removes what the killed save left
    assert_same(good, back)
    back.close()
    assert [p.name for p in tmp_path.iterdir()] == ["w.rtfm"]


def test_killed_appends_keep_every_committed_frame(tmp_path):
    path = tmp_path / "live.rtfm"
    make_memory(2, path).close()
    child = _spawn(CHILD_HEAD + f"""
mem = FrameMemory.open({str(path)!r})
i = 0
while True:
    fid = mem.add(texture(i), look_at([0.01 * i, 0, 0], [0.01 * i, 1, 0]), CAM, stamp=float(i), source="observed")
    print(fid, flush=True)
    i += 1
""")
    try:
        ids = []
        while len(ids) < 40:
            line = child.stdout.readline()
            assert line, child.stderr.read()
            ids.append(int(line))
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.wait(30)
    back = FrameMemory.open(path, check="full")
    assert len(back) >= ids[-1] + 1
    np.testing.assert_array_equal(back.get(ids[-1]).rgb, texture(ids[-1] - 2))


# ------------------------------------------------------------------ corruption

@pytest.fixture
def saved(tmp_path):
    mem = make_memory(6)
    path = tmp_path / "w.rtfm"
    mem.save(path)
    return mem, path


def _flip(path, offset):
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x5A
    path.write_bytes(bytes(data))


def test_flipped_pose_byte_is_refused(saved):
    mem, path = saved
    pose_bytes = mem.pose(3).astype("<f8").tobytes()
    at = path.read_bytes().find(pose_bytes)
    assert at > 0
    _flip(path, at + 20)
    with pytest.raises(WorldFileError, match=str(path)):
        FrameMemory.open(path)


def test_flipped_pixel_byte_is_refused_when_read(saved):
    mem, path = saved
    with WorldFile.open(path) as w:
        image = w.read_record(2).image
    chunk = image[len(image) // 2: len(image) // 2 + 64]   # the blob may span overflow pages
    at = path.read_bytes().find(chunk)
    assert at > 0
    _flip(path, at + 10)
    opened = FrameMemory.open(path)           # the index is intact...
    opened.get(1)
    with pytest.raises(WorldFileError, match="frame 2"):
        opened.get(2)                         # ...but the damaged pixels are never returned
    with pytest.raises(WorldFileError, match=str(path)):
        FrameMemory.open(path, check="full")


@pytest.mark.parametrize("keep", [0.7, 0.3, 50 / 1e9])
def test_truncated_world_is_refused(saved, keep):
    _, path = saved
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(WorldFileError, match=str(path)):
        FrameMemory.open(path)


def test_not_a_world_is_refused(tmp_path):
    junk = tmp_path / "junk.rtfm"
    junk.write_bytes(b"hello" * 100)
    with pytest.raises(WorldFileError, match="not a world file"):
        FrameMemory.open(junk)
    other = tmp_path / "other.sqlite"
    sqlite3.connect(other).execute("CREATE TABLE t (x)").connection.commit()
    with pytest.raises(WorldFileError, match="not an rtfm_ros world"):
        FrameMemory.open(other)


@pytest.mark.parametrize("sql, match", [
    (f"UPDATE meta SET value = '{SCHEMA_VERSION + 1}' WHERE key = 'schema_version'", "schema version"),
    ("DELETE FROM frames WHERE id = 5", "frames but its meta says"),
    ("UPDATE frames SET stamp = stamp + 1 WHERE id = 1", "checksum mismatch in frame 1"),
    ("UPDATE frames SET source = 'seed' WHERE id = 1", "checksum mismatch in frame 1"),
    ("UPDATE frames SET sha256 = (SELECT sha256 FROM frames WHERE id = 0), "
     "pose = (SELECT pose FROM frames WHERE id = 0), stamp = (SELECT stamp FROM frames WHERE id = 0), "
     "source = (SELECT source FROM frames WHERE id = 0), pixels_sha256 = (SELECT pixels_sha256 FROM frames "
     "WHERE id = 0) WHERE id = 1", "checksum mismatch in frame 1"),
    ("UPDATE meta SET value = '\"00\"' WHERE key = 'digest'", "digest"),
])
def test_edited_rows_are_refused(saved, sql, match):
    _, path = saved
    conn = sqlite3.connect(path)
    conn.execute(sql)
    conn.commit()
    conn.close()
    with pytest.raises(WorldFileError, match=match):
        FrameMemory.open(path)


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_world_of_100k_frames_streams_through_bounded_ram(tmp_path):
    """100k frames at 128x128 (4.9 GB of raw pixels, a 3.8 GB file) save, open and page in within 100-150 MB."""
    import tracemalloc

    from rtfm_ros.memory.codecs import encode_image
    from rtfm_ros.memory.world_file import save_world
    from rtfm_ros.memory.world_schema import FrameRecord

    n, size = 100_000, 128
    cam = PinholeCamera.from_fov(size, size, 90.0)
    intr = np.array([cam.width, cam.height, cam.fx, cam.fy, cam.cx, cam.cy], dtype=np.float64)
    pngs = [encode_image(texture(s, size, size)) for s in range(16)]
    base = look_at([0.0, 0.0, 1.0], [0.0, 1.0, 1.0])

    def records():
        for i in range(n):
            T = base.copy()
            T[0, 3] = i * 0.01
            yield FrameRecord(i, T, intr, float(i), "observed", "png", pngs[i % 16], None, None)

    path = tmp_path / "big.rtfm"
    tracemalloc.start()
    try:
        save_world(path, records(), batch=1024)
        _, peak_save = tracemalloc.get_traced_memory()
        assert path.stat().st_size > 1e9  # more than fits comfortably in a small budget
        tracemalloc.reset_peak()
        mem = FrameMemory.open(path, ram_budget_bytes=8 << 20)
        assert len(mem) == n
        for i in np.random.default_rng(0).integers(0, n, 400):
            assert mem.get(int(i)).rgb.shape == (size, size, 3)
        np.testing.assert_array_equal(mem.get(n - 1).rgb, texture((n - 1) % 16, size, size))
        assert mem.nbytes_pixels <= 8 << 20
        assert mem.select_context(mem.pose(n // 2), cam, 8)[0] == n // 2
        _, peak_open = tracemalloc.get_traced_memory()
        mem.close()
    finally:
        tracemalloc.stop()
        path.unlink(missing_ok=True)
    raw = n * size * size * 3
    assert peak_save < 100e6 and peak_open < 150e6, (peak_save, peak_open, raw)
