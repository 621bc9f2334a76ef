"""Geometry core: transforms, quaternions, conventions, cameras, pixel rays."""

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.spatial.transform import Rotation

from rtfm_ros import geometry as g
from rtfm_ros.render.rays import camera_directions, splat, unit, unproject

finite = st.floats(-50, 50, allow_nan=False, allow_infinity=False)
quats = st.lists(st.floats(-1, 1, allow_nan=False), min_size=4, max_size=4).filter(
    lambda q: np.linalg.norm(q) > 0.1).map(lambda q: np.asarray(q) / np.linalg.norm(q))
poses = st.tuples(st.lists(finite, min_size=3, max_size=3), quats).map(
    lambda tq: g.transform_from_ros(tq[0], tq[1]))


@given(poses, poses)
def test_invert_and_compose(T1, T2):
    np.testing.assert_allclose(g.compose(T1, g.invert(T1)), np.eye(4), atol=1e-9)
    np.testing.assert_allclose(g.invert(g.compose(T1, T2)), g.compose(g.invert(T2), g.invert(T1)), atol=1e-8)


@given(quats)
def test_quaternion_round_trip(q):
    q2 = g.matrix_to_quat(g.quat_to_matrix(q))
    assert q2[3] >= 0
    # q and -q are the same rotation
    assert min(np.abs(q2 - q).max(), np.abs(q2 + q).max()) < 1e-9


@given(poses)
def test_ros_round_trip(T):
    t, q = g.transform_to_ros(T)
    np.testing.assert_allclose(g.transform_from_ros(t, q), T, atol=1e-9)


def test_quaternion_hand_checked():
    # 90 degrees about z in ROS order (x, y, z, w)
    R = g.quat_to_matrix([0, 0, math.sqrt(0.5), math.sqrt(0.5)])
    np.testing.assert_allclose(R, [[0, -1, 0], [1, 0, 0], [0, 0, 1]], atol=1e-12)


def test_quaternion_validation():
    np.testing.assert_allclose(g.quat_to_matrix([0, 0, 0, 1.0005]), np.eye(3), atol=1e-12)  # normalised
    with pytest.raises(g.GeometryError, match="norm"):
        g.quat_to_matrix([0, 0, 0, 1.1])
    with pytest.raises(g.GeometryError, match="non-finite"):
        g.quat_to_matrix([0, 0, math.nan, 1])
    with pytest.raises(g.GeometryError, match="non-finite"):
        g.transform_from_ros([0, math.inf, 0], [0, 0, 0, 1])
    with pytest.raises(g.GeometryError):
        g.quat_to_matrix([0, 0, 0])


def test_validate_transform_rejects_non_rigid():
    T = np.eye(4)
    T[0, 0] = 2.0
    with pytest.raises(g.GeometryError, match="orthonormal"):
        g.validate_transform(T)
    with pytest.raises(g.GeometryError, match="4x4"):
        g.validate_transform(np.eye(3))


@given(poses, poses, st.floats(0, 1))
@settings(max_examples=50)
def test_interpolate_endpoints_and_geodesic(T0, T1, a):
    np.testing.assert_allclose(g.interpolate(T0, T1, 0.0), T0, atol=1e-8)
    np.testing.assert_allclose(g.interpolate(T0, T1, 1.0), T1, atol=1e-8)
    Ta = g.interpolate(T0, T1, a)
    _, total = g.pose_distance(T0, T1)
    _, first = g.pose_distance(T0, Ta)
    assert first == pytest.approx(a * total, abs=1e-6)


def test_interpolate_midpoint_hand_checked():
    T0 = np.eye(4)
    T1 = g.make_transform(Rotation.from_euler("z", 90, degrees=True).as_matrix(), [2, 0, 0])
    Tm = g.interpolate(T0, T1, 0.5)
    np.testing.assert_allclose(Tm[:3, 3], [1, 0, 0])
    np.testing.assert_allclose(Tm[:3, :3], Rotation.from_euler("z", 45, degrees=True).as_matrix(), atol=1e-12)
    with pytest.raises(g.GeometryError):
        g.interpolate(T0, T1, 1.5)


def test_body_to_optical_axes():
    # A body camera at the origin looking along world +x (x forward, y left, z up).
    T = g.body_to_optical(np.eye(4))
    R = T[:3, :3]
    np.testing.assert_allclose(R[:, 2], [1, 0, 0])   # optical z (forward) = body x
    np.testing.assert_allclose(R[:, 0], [0, -1, 0])  # optical x (right) = -body y
    np.testing.assert_allclose(R[:, 1], [0, 0, -1])  # optical y (down) = -body z
    np.testing.assert_allclose(g.optical_to_body(T), np.eye(4), atol=1e-12)


def test_opengl_to_optical():
    # An OpenGL camera at the origin looks along -z with +y up.
    T = g.opengl_to_optical(np.eye(4))
    np.testing.assert_allclose(T[:3, :3] @ [0, 0, 1], [0, 0, -1])
    np.testing.assert_allclose(T[:3, :3] @ [0, 1, 0], [0, -1, 0])
    np.testing.assert_allclose(g.optical_to_opengl(T), np.eye(4))


def test_look_at():
    T = g.look_at([0, 0, 1], [5, 0, 1])
    np.testing.assert_allclose(T, g.compose(g.make_transform(translation=[0, 0, 1]), g.body_to_optical(np.eye(4))),
                               atol=1e-12)


def test_camera_fov_and_info():
    cam = g.PinholeCamera.from_fov(128, 96, 90.0)
    assert cam.fx == pytest.approx(64.0) and cam.cx == 64.0 and cam.cy == 48.0
    assert cam.fov_deg[0] == pytest.approx(90.0)
    back = g.camera_from_k(128, 96, g.opencv_k(cam))
    assert back == cam
    assert g.opencv_p(cam)[:3] == [cam.fx, 0.0, cam.cx - 0.5]
    half = cam.scaled(64, 48)
    assert half.fx == pytest.approx(32.0) and half.cx == 32.0
    assert half.fov_deg == pytest.approx(cam.fov_deg)


@pytest.mark.parametrize("kwargs", [dict(width=0), dict(width=-3), dict(height=5000), dict(fx=0.0),
                                    dict(cx=math.nan), dict(width=12.5),
                                    # valid in float64, not in the float32 renders use, or no lens at all
                                    dict(fx=1e-300), dict(fy=1e39), dict(fx=1e308), dict(fx=0.01),
                                    dict(cx=1e9)])
def test_camera_rejects_bad_values(kwargs):
    base = dict(width=64, height=64, fx=50.0, fy=50.0, cx=32.0, cy=32.0)
    base.update(kwargs)
    with pytest.raises(g.GeometryError):
        g.PinholeCamera(**base)


def test_a_camera_no_frame_can_be_stored_with_is_refused_before_the_world_sees_it():
    """A focal length of 1e-300 is positive in float64 and 0 in float32: refused at the camera,
    so no world stores a frame whose depth step would fail (and break every later render)."""
    import numpy as np

    from rtfm_ros.world import WorldModel

    wm = WorldModel.load()
    with pytest.raises(g.GeometryError, match="no pinhole lens"):
        wm.add_frame(np.zeros((48, 64, 3), np.uint8), np.eye(4), g.PinholeCamera(64, 48, 1e-300, 1e-300, 32, 24))
    assert len(wm.memory) == 0
    assert g.PinholeCamera.from_fov(32, 32, 179.0).fx > 0  # wide but real lenses stay accepted


@given(poses)
@settings(max_examples=30, deadline=None)
def test_principal_ray_is_optical_axis(T):
    cam = g.PinholeCamera(width=9, height=7, fx=10.0, fy=12.0, cx=4.5, cy=3.5)  # pixel (4, 3) centre = (cx, cy)
    dirs = unit(camera_directions(torch.tensor(cam.K)[None], cam.height, cam.width))
    world = torch.einsum("ij,jhw->ihw", torch.tensor(T[:3, :3]), dirs[0])
    np.testing.assert_allclose(world[:, 3, 4].numpy(), T[:3, 2], atol=1e-9)
    np.testing.assert_allclose(world.norm(dim=0).numpy(), 1, atol=1e-12)  # every direction is unit length


def test_splat_identity_is_exact():
    cam = g.PinholeCamera.from_fov(16, 12, 70)
    T = torch.tensor(g.look_at([0, 0, 1], [4, 1, 1]))
    img = torch.rand(1, 1, 3, 12, 16, dtype=torch.float64)
    depth = torch.rand(1, 1, 12, 16, dtype=torch.float64) * 3 + 1
    K = torch.tensor(cam.K)
    out, zbuf, mask = splat(img, depth, K[None, None], T[None, None], K[None], T[None], 12, 16)
    assert mask.min() == 1
    torch.testing.assert_close(out.double(), img[:, 0], atol=1e-6, rtol=0)
    torch.testing.assert_close(zbuf.double(), depth[:, 0], atol=1e-5, rtol=0)


def test_unproject_projects_back():
    cam = g.PinholeCamera.from_fov(10, 10, 80)
    T = torch.tensor(g.look_at([0, 0, 1], [3, 0, 1]))[None]
    depth = torch.full((1, 10, 10), 2.0, dtype=torch.float64)
    pts = unproject(depth, torch.tensor(cam.K)[None], T)
    # planar depth 2: every point lies on the plane x = 2
    assert pts[0, 0].mean().item() == pytest.approx(2.0)


def test_one_camera_pose_from_a_heading():
    from rtfm_ros.geometry import camera_from_heading, level_turn, look_at

    for yaw, pitch in [(0.0, 0.0), (0.7, 0.3), (-2.5, -0.4)]:
        eye = np.array([1.0, -2.0, 0.5])
        fwd = np.array([np.cos(pitch) * np.cos(yaw), np.cos(pitch) * np.sin(yaw), np.sin(pitch)])
        np.testing.assert_allclose(camera_from_heading(eye, yaw, pitch), look_at(eye, eye + fwd), atol=1e-12)
    many = camera_from_heading(np.zeros((3, 3)), [0.0, 1.0, 2.0], 0.1, [0.0, 0.2, -0.2])
    assert many.shape == (3, 4, 4)
    np.testing.assert_allclose(many[1], camera_from_heading((0, 0, 0), 1.0, 0.1, 0.2))
    # a level camera turning on the spot to its right by 90 degrees: its view axis goes from +x to -y
    turned = camera_from_heading((0, 0, 0), 0.0)[:3, :3] @ level_turn(np.pi / 2)
    np.testing.assert_allclose(turned[:, 2], [0.0, -1.0, 0.0], atol=1e-12)


def test_one_resize_for_images_and_depth():
    from rtfm_ros.images import resize_depth, resize_image

    img = np.zeros((4, 4, 3), np.uint8)
    img[:2, :2] = 200
    small = resize_image(img, 2, 2)
    assert small.dtype == np.uint8 and small.tolist()[0][0] == [200] * 3 and small[1, 1].tolist() == [0, 0, 0]
    assert resize_image(img, 4, 4) is img
    depth = np.array([[1.0, np.nan], [3.0, 4.0]], np.float32)
    big = resize_depth(depth, 4, 4)
    assert big.dtype == np.float32 and np.isnan(big[0, 3]) and big[3, 0] == 3.0  # nearest: nothing averaged


def test_validate_poses_matches_validate_pose():
    """The batched check gives what validate_pose gives pose by pose: as is, repaired, or its error."""
    rigid = g.transform_from_ros([1.0, 2.0, 0.5], [0.1, 0.2, 0.3, np.sqrt(1 - 0.14)])
    rounded = np.round(rigid, 4)  # within the repair tolerance
    stack = np.stack([rigid, rounded, np.eye(4)])
    out = g.validate_poses(stack)
    for T, ours in zip(stack, out):
        assert np.array_equal(ours, g.validate_pose(T))
    assert not np.array_equal(out[1], rounded) and np.array_equal(stack[1], rounded)  # repaired in a copy
    far = np.eye(4)
    far[0, 3] = 2 * g.MAX_POSITION_M
    skew = rigid.copy()
    skew[:3, :3] *= 1.1
    for bad, message in [(far, "beyond"), (skew, "orthonormal"), (np.full((4, 4), np.nan), "non-finite")]:
        with pytest.raises(g.GeometryError, match=message):
            g.validate_poses(np.stack([rigid, bad]))
    with pytest.raises(g.GeometryError, match="Nx4x4"):
        g.validate_poses(np.eye(4))
