"""Procedural worlds, trajectories and the MuJoCo renderer."""

from __future__ import annotations

import math

import numpy as np
import pytest

from rtfm_ros.geometry import GeometryError, PinholeCamera, look_at, pose_distance
from rtfm_ros.sim.renderer import RenderError, WorldRenderer, fovy_deg
from rtfm_ros.sim.trajectories import TRAJECTORY_KINDS, TrajectoryError, make_trajectory
from rtfm_ros.sim.worlds import KINDS, Box2D, Circle2D, World, WorldError, make_world

CAM = PinholeCamera.from_fov(32, 32, 90.0)


def _test_world(extra: str = "") -> World:
    """A hand-written world: floor, a wall facing -x at x = 3, a camera named 'view'."""
    xml = f"""<mujoco><visual><headlight ambient="0.5 0.5 0.5"/><map znear="0.01" zfar="50"/></visual>
    <statistic extent="1"/>
    <worldbody><light pos="0 0 2.5"/>
      <geom type="plane" size="5 5 0.1" rgba="0.5 0.5 0.5 1"/>
      <geom type="box" pos="3.5 0 3" size="0.5 5 3" rgba="0.2 0.3 0.9 1"/>
      {extra}
      <camera name="view" mode="fixed" pos="0 0 1"/></worldbody></mujoco>"""
    return World(seed=0, kind="room", bounds=(-5.0, -5.0, 3.0, 5.0), obstacles=(Box2D(3.0, -5.0, 4.0, 5.0),),
                 ceiling=3.0, xml=xml, assets={})


@pytest.mark.parametrize("kind", KINDS)
def test_same_seed_same_world_and_different_seeds_differ(kind: str) -> None:
    a, b, c = make_world(7, kind), make_world(7, kind), make_world(8, kind)
    assert a.xml == b.xml and a.assets == b.assets and a.obstacles == b.obstacles
    assert a.xml != c.xml


def test_bad_kind_and_seed_are_refused() -> None:
    with pytest.raises(WorldError, match="unknown world kind 'castle'"):
        make_world(1, "castle")
    with pytest.raises(WorldError, match="non-negative"):
        make_world(-1, "room")


def test_worlds_vary() -> None:
    worlds = [make_world(s, k) for s in range(12) for k in KINDS]
    sizes = {tuple(round(v, 2) for v in w.bounds) for w in worlds}
    assert len(sizes) == len(worlds)
    multi = [w for w in worlds if w.kind == "multiroom"]
    assert all(len(w.rooms) >= 2 for w in multi)
    assert any(isinstance(o, Circle2D) for w in worlds for o in w.obstacles)
    assert any(f'reflectance="{r}' in w.xml for r in ("0.1", "0.2", "0.3") for w in worlds)
    assert any(w.assets for w in worlds), "some worlds use generated PNG textures"
    assert all(b'\x89PNG' == v[:4] for w in worlds for v in w.assets.values())


def test_collision_queries() -> None:
    w = make_world(3, "multiroom")
    xmin, ymin, xmax, ymax = w.bounds
    assert not w.is_free(xmin + 0.01, (ymin + ymax) / 2)  # inside the outer wall
    assert not w.is_free(xmax + 1.0, ymin + 1.0)  # outside
    wall = next(o for o in w.obstacles if isinstance(o, Box2D))
    assert not w.is_free((wall.xmin + wall.xmax) / 2, (wall.ymin + wall.ymax) / 2)
    rng = np.random.default_rng(0)
    for _ in range(50):
        p = w.sample_free_point(rng, 0.3)
        assert w.is_free(p[0], p[1], 0.3) and w.clearance(p[0], p[1]) > 0.3
    with pytest.raises(WorldError, match="no free point"):
        w.sample_free_point(rng, radius=50.0, max_tries=20)


def test_same_seed_renders_byte_identical_and_look_sensible() -> None:
    images = []
    for _ in range(2):
        w = make_world(11, "multiroom")
        p = w.sample_free_point(np.random.default_rng(5), 0.5)
        T = look_at([p[0], p[1], 1.2], [p[0] + 1.0, p[1] + 0.3, 1.0])
        with WorldRenderer(w, CAM) as r:
            images.append(r.render(T))
    (rgb0, d0), (rgb1, d1) = images
    assert rgb0.shape == (32, 32, 3) and rgb0.dtype == np.uint8 and d0.dtype == np.float32
    assert np.array_equal(rgb0, rgb1) and np.array_equal(d0, d1)
    assert rgb0.mean() > 20 and rgb0.std() > 3, "not black, not flat"
    assert np.all(np.isfinite(d0)) and d0.min() > 0.05 and d0.max() < 30


def test_depth_is_planar_and_projection_follows_the_optical_convention() -> None:
    # A marker at a known world point must land on the pixel K @ T^-1 predicts.
    marker = np.array([3.0 - 0.07, 0.6, 1.4])
    w = _test_world(f'<geom type="sphere" pos="{marker[0]} {marker[1]} {marker[2]}" size="0.06" rgba="1 0 0 1"/>')
    cam = PinholeCamera.from_fov(64, 48, 90.0)
    T = look_at([0.0, 0.0, 1.0], [1.0, 0.0, 1.0])  # looking along +x at the wall 3 m away
    with WorldRenderer(w, cam) as r:
        rgb, depth = r.render(T)
        assert np.array_equal(rgb, r.render_rgb(T)) and np.array_equal(depth, r.render_depth(T))
    np.testing.assert_allclose(depth[:20, 36:], 3.0, atol=0.01)  # the wall: planar depth is 3 m all over it
    for v in range(40, 48):  # the floor, 1 m below the camera: z = 1 / ((v + 0.5 - cy) / fy)
        np.testing.assert_allclose(depth[v, :8], cam.fy / (v + 0.5 - cam.cy), rtol=0.01)
    p_cam = np.linalg.inv(T) @ np.append(marker, 1.0)
    u, v = (cam.K @ p_cam[:3])[:2] / p_cam[2]
    near = depth[:30] < 2.99  # the marker is the only thing in front of the wall up there
    assert near.any() and rgb[:30][near][:, 0].mean() > rgb[:30][near][:, 2].mean()
    vs, us = np.nonzero(near)
    assert abs(us.mean() + 0.5 - u) < 1.0 and abs(vs.mean() + 0.5 - v) < 1.0


def test_renderer_is_lazy_and_validates_cameras() -> None:
    w = make_world(0, "room")
    r = WorldRenderer(w, CAM)
    assert r._renderer is None  # no GL context until the first render (fork safety)
    r.close()
    with pytest.raises(RenderError, match="square pixels"):
        WorldRenderer(w, PinholeCamera(32, 32, 20.0, 25.0, 16.0, 16.0))
    with pytest.raises(RenderError, match="principal point"):
        WorldRenderer(w, PinholeCamera(32, 32, 20.0, 20.0, 10.0, 16.0))
    for bad in (0, -4, 5000):
        with pytest.raises(GeometryError):
            PinholeCamera.from_fov(bad, 32, 90.0)
    assert math.isclose(fovy_deg(PinholeCamera.from_fov(64, 32, 90.0)), 2 * math.degrees(math.atan(0.5)))
    with pytest.raises(GeometryError):
        WorldRenderer(w, CAM).render(np.diag([1.0, 2.0, 1.0, 1.0]))


@pytest.mark.parametrize("kind", TRAJECTORY_KINDS)
@pytest.mark.parametrize("world_kind", KINDS)
def test_trajectories_are_smooth_free_and_deterministic(kind: str, world_kind: str) -> None:
    w = make_world(21, world_kind)
    tr = make_trajectory(w, kind, 80, seed=3, step=0.25, max_turn_deg=12.0)
    again = make_trajectory(w, kind, 80, seed=3, step=0.25, max_turn_deg=12.0)
    assert np.array_equal(tr.T_world_camera, again.T_world_camera)
    T = tr.T_world_camera
    assert T.shape == (80, 4, 4) and tr.stamps.shape == (80,) and np.all(np.diff(tr.stamps) > 0)
    for a, b in zip(T[:-1], T[1:]):
        dt, da = pose_distance(a, b)
        assert dt <= 0.25 + 1e-9 and math.degrees(da) <= 12.0 + 1e-6
    for Ti in T:
        np.testing.assert_allclose(Ti[:3, :3].T @ Ti[:3, :3], np.eye(3), atol=1e-9)
        assert w.is_free(Ti[0, 3], Ti[1, 3], 0.3)
        assert 0.15 <= Ti[2, 3] <= w.ceiling - 0.2
    moved = np.linalg.norm(T[-1, :3, 3] - T[0, :3, 3]) + sum(pose_distance(a, b)[0] for a, b in zip(T[:-1], T[1:]))
    assert moved > 1.0
    if kind == "ground_robot":
        assert np.ptp(T[:, 2, 3]) == 0 and 0.2 <= T[0, 2, 3] <= 1.5
        assert np.allclose(T[:, 2, 0], 0.0, atol=1e-9), "no roll: image x axis stays horizontal"
    if kind == "handheld":
        assert np.ptp(T[:, 2, 3]) > 0.01 and np.abs(T[:, 2, 0]).max() > 1e-3, "6-DoF: height and roll vary"


def test_loop_revisits_earlier_poses() -> None:
    w = make_world(4, "room")
    T = make_trajectory(w, "loop", 64, seed=0).T_world_camera
    later_same = [j for j in range(32, 64)
                  if any(pose_distance(T[i], T[j])[0] < 1e-9 and pose_distance(T[i], T[j])[1] < 1e-6
                         for i in range(0, 20))]
    assert len(later_same) >= 5, "the last part retraces the first pass with the same views"
    back = [j for j in range(20, 45) if min(np.linalg.norm(T[j, :3, 3] - T[i, :3, 3]) for i in range(0, 15)) < 1e-9]
    assert len(back) >= 5, "it drives back through the same places"


def test_every_length_is_honoured() -> None:
    w = make_world(0, "room")
    for kind in TRAJECTORY_KINDS:
        for n in (1, 2, 3, 7, 16, 29, 30, 31, 47):
            tr = make_trajectory(w, kind, n, 0)
            assert len(tr) == n and tr.T_world_camera.shape == (n, 4, 4), (kind, n)


def test_bad_trajectory_parameters() -> None:
    w = make_world(0, "room")
    with pytest.raises(TrajectoryError, match="unknown trajectory kind"):
        make_trajectory(w, "teleport", 10, 0)
    with pytest.raises(TrajectoryError, match="at least 1 frame"):
        make_trajectory(w, "loop", 0, 0)
    with pytest.raises(TrajectoryError, match="step"):
        make_trajectory(w, "handheld", 10, 0, step=5.0)
