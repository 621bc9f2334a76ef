"""TransformBuffer: tf2 semantics (chains, interpolation, static, cache, time jumps, errors)."""

import sys
import threading

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.spatial.transform import Rotation

from rtfm_ros import geometry as g
from rtfm_ros.tf_buffer import (
    ConnectivityError,
    ExtrapolationError,
    FrameNotFound,
    FrameTreeError,
    TransformBuffer,
    TransformLookupError,
)

S = 1_000_000_000
finite = st.floats(-20, 20, allow_nan=False, allow_infinity=False)
quats = st.lists(st.floats(-1, 1, allow_nan=False), min_size=4, max_size=4).filter(
    lambda q: np.linalg.norm(q) > 0.1).map(lambda q: np.asarray(q) / np.linalg.norm(q))
poses = st.tuples(st.lists(finite, min_size=3, max_size=3), quats).map(
    lambda tq: g.transform_from_ros(tq[0], tq[1]))


def rot_z(deg: float, t=(0.0, 0.0, 0.0)) -> np.ndarray:
    return g.make_transform(Rotation.from_euler("z", deg, degrees=True).as_matrix(), t)


def robot_tree(T_map_odom, T_odom_base, T_base_cam, T_base_laser, stamp=1 * S) -> TransformBuffer:
    """map -> odom -> base -> {cam, laser}; map->odom dynamic, the sensors static."""
    buf = TransformBuffer()
    buf.set_transform("map", "odom", stamp, T_map_odom)
    buf.set_transform("odom", "base", stamp, T_odom_base)
    buf.set_transform("base", "cam", 0, T_base_cam, static=True)
    buf.set_transform("base", "laser", 0, T_base_laser, static=True)
    return buf


@settings(max_examples=40, deadline=None)
@given(poses, poses, poses, poses)
def test_chains_and_inverse_lookups(T_mo, T_ob, T_bc, T_bl):
    buf = robot_tree(T_mo, T_ob, T_bc, T_bl)
    t = 1 * S
    np.testing.assert_allclose(buf.lookup("map", "cam", t), T_mo @ T_ob @ T_bc, atol=1e-9)
    np.testing.assert_allclose(buf.lookup("cam", "map", t), g.invert(T_mo @ T_ob @ T_bc), atol=1e-9)
    # Siblings meet at their common ancestor, not at the root.
    np.testing.assert_allclose(buf.lookup("cam", "laser", t), g.invert(T_bc) @ T_bl, atol=1e-9)
    for a, b in [("map", "laser"), ("odom", "cam"), ("laser", "base"), ("cam", "laser")]:
        np.testing.assert_allclose(buf.lookup(a, b, t) @ buf.lookup(b, a, t), np.eye(4), atol=1e-9)
    np.testing.assert_array_equal(buf.lookup("cam", "cam", t), np.eye(4))


@settings(max_examples=40, deadline=None)
@given(st.floats(0.0, 1.0), st.floats(-170, 170))
def test_interpolation_between_samples(alpha, angle):
    buf = TransformBuffer()
    buf.set_transform("map", "base", 1 * S, rot_z(0.0, (0.0, 0.0, 0.0)))
    buf.set_transform("map", "base", 3 * S, rot_z(angle, (2.0, -4.0, 1.0)))
    stamp = 1 * S + int(round(alpha * 2 * S))
    a = (stamp - S) / (2 * S)
    T = buf.lookup("map", "base", stamp)
    np.testing.assert_allclose(T[:3, 3], [2.0 * a, -4.0 * a, a], atol=1e-9)
    # SLERP: constant angular speed about the same axis.
    np.testing.assert_allclose(T[:3, :3], Rotation.from_euler("z", a * angle, degrees=True).as_matrix(), atol=1e-9)


def test_interpolation_midpoint_through_a_chain():
    buf = TransformBuffer()
    buf.set_transform("map", "odom", 0, g.make_transform(translation=(10.0, 0.0, 0.0)), static=True)
    buf.set_transform("odom", "base", 2 * S, rot_z(0.0))
    buf.set_transform("odom", "base", 4 * S, rot_z(90.0, (0.0, 2.0, 0.0)))
    T = buf.lookup("map", "base", 3 * S)
    np.testing.assert_allclose(T, rot_z(45.0, (10.0, 1.0, 0.0)), atol=1e-12)


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 2**62))
def test_static_transforms_are_valid_at_any_time(stamp):
    buf = TransformBuffer()
    T = rot_z(30.0, (1.0, 2.0, 3.0))
    buf.set_transform("base", "cam", 5 * S, T, static=True)
    np.testing.assert_allclose(buf.lookup("base", "cam", stamp), T)
    assert buf.latest_common_time("base", "cam") == 0
    assert buf.time_range("base", "cam") is None


def test_extrapolation_raises_with_requested_time_and_range():
    buf = TransformBuffer()
    buf.set_transform("map", "base", 2 * S, g.make_transform())
    buf.set_transform("map", "base", 3 * S, g.make_transform())
    with pytest.raises(ExtrapolationError, match="future") as e:
        buf.lookup("map", "base", 4 * S)
    assert "4.000000000 s" in str(e.value) and "2.000000000 s" in str(e.value) and "3.000000000 s" in str(e.value)
    with pytest.raises(ExtrapolationError, match="past"):
        buf.lookup("base", "map", 1 * S)
    assert not buf.can_transform("map", "base", 4 * S)
    assert buf.can_transform("map", "base", 2 * S + 1)
    # A single sample answers its own stamp only.
    buf.set_transform("base", "arm", 7 * S, g.make_transform())
    buf.lookup("base", "arm", 7 * S)
    with pytest.raises(ExtrapolationError):
        buf.lookup("base", "arm", 7 * S + 1)


def test_missing_frame_names_it_and_lists_known_frames():
    buf = TransformBuffer()
    with pytest.raises(FrameNotFound, match="none yet"):
        buf.lookup("map", "cam")
    buf.set_transform("map", "odom", S, g.make_transform())
    buf.set_transform("odom", "base", S, g.make_transform())
    with pytest.raises(FrameNotFound) as e:
        buf.lookup("map", "camera_optical", S)
    msg = str(e.value)
    assert "'camera_optical'" in msg and "base, map, odom" in msg
    assert isinstance(e.value, LookupError) and isinstance(e.value, TransformLookupError)
    assert buf.frames() == {"map", "odom", "base"}


def test_disconnected_trees():
    buf = TransformBuffer()
    buf.set_transform("map", "base", S, g.make_transform())
    buf.set_transform("world", "table", S, g.make_transform(), static=True)
    with pytest.raises(ConnectivityError, match="'map'.*'world'|'world'.*'map'"):
        buf.lookup("table", "base", S)


def test_zero_stamp_means_latest_common_time():
    buf = TransformBuffer()
    for k in range(5):
        buf.set_transform("map", "odom", k * S, g.make_transform(translation=(k, 0.0, 0.0)))
    for k in range(3):  # this edge lags behind: its newest sample is at 2 s
        buf.set_transform("odom", "base", k * S, g.make_transform(translation=(0.0, k, 0.0)))
    buf.set_transform("base", "cam", 0, g.make_transform(translation=(0.0, 0.0, 1.0)), static=True)
    assert buf.latest_common_time("map", "cam") == 2 * S
    assert buf.latest_common_time("map", "odom") == 4 * S
    np.testing.assert_allclose(buf.lookup("map", "cam", 0)[:3, 3], [2.0, 2.0, 1.0])
    np.testing.assert_allclose(buf.lookup("map", "odom")[:3, 3], [4.0, 0.0, 0.0])


def test_cache_window_drops_old_samples():
    buf = TransformBuffer(cache_time_s=2.0)
    for k in range(11):
        assert buf.set_transform("map", "base", k * S, g.make_transform(translation=(k, 0, 0)))
    assert buf.time_range("map", "base") == (8 * S, 10 * S)
    with pytest.raises(ExtrapolationError, match="past"):
        buf.lookup("map", "base", 7 * S)
    # Late but within the reset threshold: ignored (as tf2), nothing cleared.
    assert not buf.set_transform("map", "base", 7 * S, g.make_transform())
    assert buf.time_range("map", "base") == (8 * S, 10 * S)
    assert buf.resets == 0
    # Repeated stamp: the first sample wins.
    assert not buf.set_transform("map", "base", 9 * S, g.make_transform(translation=(99, 0, 0)))
    np.testing.assert_allclose(buf.lookup("map", "base", 9 * S)[:3, 3], [9, 0, 0])


def test_time_jump_back_resets_dynamic_cache_but_keeps_static():
    buf = TransformBuffer(cache_time_s=10.0)
    buf.set_transform("base", "cam", 0, g.make_transform(translation=(0, 0, 1)), static=True)
    for k in range(90, 101):
        buf.set_transform("map", "base", k * S, g.make_transform(translation=(k, 0, 0)))
    # A bag loop: the next samples are 95 s behind the newest one. The first is held (one
    # stale message is no evidence of a jump), the second confirms it and both are kept.
    assert not buf.set_transform("map", "base", 5 * S, g.make_transform(translation=(5, 0, 0)))
    assert buf.resets == 0 and buf.time_range("map", "base") == (90 * S, 100 * S)
    assert buf.set_transform("map", "base", 5 * S + S // 10, g.make_transform(translation=(5.1, 0, 0)))
    assert buf.resets == 1
    assert buf.time_range("map", "base") == (5 * S, 5 * S + S // 10)
    assert not buf.can_transform("map", "base", 100 * S)
    np.testing.assert_allclose(buf.lookup("map", "cam", 5 * S)[:3, 3], [5, 0, 1])

    # The clock going back by more than 1 s clears too; small jitter does not.
    buf.set_transform("map", "base", 6 * S, g.make_transform(translation=(6, 0, 0)))
    assert not buf.note_time(6 * S)
    assert not buf.note_time(6 * S - S // 2)
    assert buf.can_transform("map", "base", 6 * S)
    assert buf.note_time(3 * S)
    assert buf.resets == 2
    assert not buf.can_transform("map", "base", 6 * S) and buf.frames() == {"base", "cam"}
    # After a reset a frame may attach elsewhere (the old tree is gone).
    buf.set_transform("odom", "map", 3 * S, g.make_transform())


def test_clear_keeps_static_unless_asked():
    buf = robot_tree(*(g.make_transform() for _ in range(4)))
    buf.clear()
    assert buf.frames() == {"base", "cam", "laser"}
    assert buf.can_transform("cam", "laser", 123)
    buf.clear(include_static=True)
    assert buf.frames() == set()
    assert buf.resets == 0


def test_parent_conflict_loops_and_kind_mixing_are_refused():
    buf = TransformBuffer()
    buf.set_transform("map", "odom", S, g.make_transform())
    buf.set_transform("odom", "base", S, g.make_transform())
    before = buf.frames()
    with pytest.raises(FrameTreeError, match="'base' already has parent 'odom'.*'map'"):
        buf.set_transform("map", "base", 2 * S, g.make_transform())
    with pytest.raises(FrameTreeError, match="loop"):
        buf.set_transform("base", "map", 2 * S, g.make_transform())
    with pytest.raises(FrameTreeError, match="itself"):
        buf.set_transform("base", "/base", 2 * S, g.make_transform())
    with pytest.raises(FrameTreeError, match="dynamic; refusing a static"):
        buf.set_transform("odom", "base", 2 * S, g.make_transform(), static=True)
    assert buf.frames() == before
    assert buf.parent_of("base") == "odom" and buf.parent_of("map") is None
    assert buf.time_range("odom", "base") == (S, S)


@pytest.mark.parametrize(
    "T",
    [
        np.full((4, 4), np.nan),
        np.diag([2.0, 1.0, 1.0, 1.0]),  # not a rotation
        np.diag([-1.0, 1.0, 1.0, 1.0]),  # a reflection
        np.eye(3),
        "garbage",
    ],
)
def test_bad_matrices_raise_and_leave_buffer_unchanged(T):
    buf = TransformBuffer()
    buf.set_transform("map", "base", S, g.make_transform(translation=(1, 2, 3)))
    with pytest.raises(g.GeometryError):
        buf.set_transform("map", "base", 2 * S, T)
    with pytest.raises(g.GeometryError):
        buf.set_transform("map", "other", 2 * S, T)
    assert buf.frames() == {"map", "base"} and buf.time_range("map", "base") == (S, S)


def test_frame_names_and_stamps_are_checked():
    buf = TransformBuffer()
    for parent, child in [("", "a"), ("a", ""), ("/", "a"), ("a", "   ")]:
        with pytest.raises(FrameTreeError, match="empty"):
            buf.set_transform(parent, child, S, g.make_transform())
    with pytest.raises(FrameTreeError):
        buf.lookup("", "a")
    for stamp in (1.5, -1, True, "1"):
        with pytest.raises(g.GeometryError, match="stamp_ns"):
            buf.set_transform("a", "b", stamp, g.make_transform())
    buf.set_transform("/map", "/base", np.int64(S), g.make_transform(translation=(1, 0, 0)))
    assert buf.frames() == {"map", "base"}
    np.testing.assert_allclose(buf.lookup("/map", "base", S)[:3, 3], [1, 0, 0])
    with pytest.raises(g.GeometryError):
        TransformBuffer(cache_time_s=0.0)


def test_concurrent_writers_and_readers_see_consistent_chains():
    """Both edges get the same value per stamp, so a lookup at the latest common time has x == y."""
    buf = TransformBuffer(cache_time_s=0.05)
    n = 800
    errors: list[BaseException] = []
    done = threading.Event()

    def write():
        try:
            for k in range(1, n + 1):
                buf.set_transform("map", "odom", k * 1_000_000, g.make_transform(translation=(k, 0, 0)))
                buf.set_transform("odom", "base", k * 1_000_000, g.make_transform(translation=(0, k, 0)))
        except BaseException as e:  # noqa: BLE001 - surfaced below
            errors.append(e)
        finally:
            done.set()

    def read():
        try:
            while not done.is_set():
                if buf.can_transform("map", "base"):
                    t = buf.lookup("map", "base", 0)[:3, 3]
                    assert t[0] == t[1], t
                    ts = buf.latest_common_time("map", "base")
                    try:
                        T = buf.lookup("base", "map", ts)
                    except ExtrapolationError:
                        continue  # pruned by the writer in between: allowed
                    assert T[0, 3] == T[1, 3] == -ts // 1_000_000, (T, ts)
        except BaseException as e:  # noqa: BLE001 - surfaced below
            errors.append(e)

    threads = [threading.Thread(target=write)] + [threading.Thread(target=read) for _ in range(3)]
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)  # switch threads often, so races would show
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=30)
    finally:
        sys.setswitchinterval(interval)
    assert not errors, errors[0]
    assert buf.time_range("odom", "base") == (n * 1_000_000 - 50_000_000, n * 1_000_000)


def test_wait_for_returns_when_data_arrives_and_times_out_otherwise():
    buf = TransformBuffer()
    timer = threading.Timer(0.1, lambda: buf.set_transform("map", "base", S, g.make_transform(translation=(1, 0, 0))))
    timer.start()
    try:
        T = buf.wait_for("map", "base", S, timeout_s=5.0)
    finally:
        timer.cancel()
    np.testing.assert_allclose(T[:3, 3], [1, 0, 0])
    with pytest.raises(ExtrapolationError):
        buf.wait_for("map", "base", 2 * S, timeout_s=0.05)


def _live_stream(buf, start_s, end_s, hz=20):
    """map -> base at hz, as a robot's localisation publishes it; returns how many were refused."""
    refused = 0
    for k in range(int(start_s * hz), int(end_s * hz)):
        try:
            buf.set_transform("map", "base", k * S // hz, g.make_transform(translation=(k / hz, 0, 0)))
        except FrameTreeError:
            refused += 1
    return refused


def test_one_stale_transform_with_a_wrong_parent_cannot_hijack_the_tree():
    buf = TransformBuffer(cache_time_s=10.0)
    assert _live_stream(buf, 100, 101) == 0
    # 12 s behind the newest sample (beyond window + jump threshold), naming another parent.
    with pytest.raises(FrameTreeError, match="already has parent 'map'"):
        buf.set_transform("odom", "base", 89 * S, g.make_transform())
    assert buf.resets == 0 and buf.parent_of("base") == "map"
    assert _live_stream(buf, 101, 104.45) == 0  # the real stream goes on being taken
    np.testing.assert_allclose(buf.lookup("map", "base", 104 * S)[:3, 3], [104, 0, 0])


def test_one_stale_sample_neither_resets_nor_blanks_the_tree():
    buf = TransformBuffer(cache_time_s=10.0)
    buf.set_transform("base", "cam", 0, g.make_transform(), static=True)
    _live_stream(buf, 100, 101)
    buf.set_transform("map", "odom", 100 * S, g.make_transform())
    assert not buf.set_transform("map", "base", 50 * S, g.make_transform())  # held, not stored
    assert buf.resets == 0 and buf.can_transform("map", "cam", 100 * S) and buf.can_transform("map", "odom")
    _live_stream(buf, 101, 101.1)  # a current sample: the held one was only late
    assert not buf.set_transform("map", "base", 50 * S + 1, g.make_transform())  # held again, alone
    assert buf.resets == 0 and buf.time_range("map", "base")[1] > 101 * S


def test_a_jump_back_keeps_the_tree_shape_until_the_clock_says_otherwise():
    buf = TransformBuffer(cache_time_s=10.0)
    buf.set_transform("map", "odom", 100 * S, g.make_transform())
    buf.set_transform("odom", "base", 100 * S, g.make_transform())
    # Two samples far behind confirm the jump; the tree keeps its shape (odom still under map).
    assert not buf.set_transform("map", "odom", 5 * S, g.make_transform())
    assert buf.set_transform("odom", "base", 5 * S, g.make_transform())
    assert buf.resets == 1 and buf.parent_of("odom") == "map" and buf.parent_of("base") == "odom"
    with pytest.raises(FrameTreeError):
        buf.set_transform("world", "base", 5 * S, g.make_transform())
