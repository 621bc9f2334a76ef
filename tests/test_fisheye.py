"""Fisheye lenses (ROS camera_calibration's `equidistant`, OpenCV's cv::fisheye): per-pixel rays
against OpenCV's projection, the remap of ideal views (one, or a cube's faces up to 180 degrees)
against the analytic equidistant projection, z-depth, and the node publishing a calibrated
fisheye and rendering one on ~/render_view (real ROS 2 over Fast DDS)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from rtfm_ros import geometry as g
from rtfm_ros.camera import fisheye as FE
from rtfm_ros.camera import lens as L

D4 = (0.04, -0.012, 0.003, -0.0004)


def fisheye_camera(size: int, fov_deg: float) -> g.PinholeCamera:
    """A square fisheye whose inscribed circle spans fov_deg (D = 0: radius = fx * theta)."""
    f = (size / 2) / math.radians(fov_deg / 2)
    return g.camera_from_opencv(size, size, f, f, (size - 1) / 2, (size - 1) / 2)


def opencv_k(cam: g.PinholeCamera) -> np.ndarray:
    return np.array(g.opencv_k(cam), dtype=np.float64).reshape(3, 3)


def env_colour(d: np.ndarray) -> np.ndarray:
    """A smooth colour for each direction (..., 3) -> (..., 3) in 0..255."""
    d = d / np.linalg.norm(d, axis=-1, keepdims=True)
    return 127.5 * (1.0 + np.stack([d[..., 0], d[..., 1], np.sin(2.0 * d[..., 2] + d[..., 0])], -1))


def render_views(lens: L.Lens, radius: float = 2.0) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Each ideal view of the lens, rendered analytically: colour by direction, inside a sphere."""
    images, depths = [], []
    for v in lens.views:
        c = v.camera
        u, w = np.meshgrid(np.arange(c.width) + 0.5, np.arange(c.height) + 0.5)
        face = np.stack([(u - c.cx) / c.fx, (w - c.cy) / c.fy, np.ones_like(u)], -1)
        images.append(np.round(env_colour(face @ v.R.T)).astype(np.uint8))
        depths.append((radius / np.linalg.norm(face, axis=-1)).astype(np.float32))  # planar depth of the sphere
    return images, depths


def sample(image: np.ndarray, uv: np.ndarray) -> np.ndarray:
    """Bilinear samples of an HxWxC image at project-convention pixel coordinates (N, 2)."""
    x, y = uv[:, 0] - 0.5, uv[:, 1] - 0.5
    x0, y0 = np.floor(x).astype(int), np.floor(y).astype(int)
    ax, ay = (x - x0)[:, None], (y - y0)[:, None]
    im = image.astype(np.float64)
    return ((1 - ax) * (1 - ay) * im[y0, x0] + ax * (1 - ay) * im[y0, x0 + 1]
            + (1 - ax) * ay * im[y0 + 1, x0] + ax * ay * im[y0 + 1, x0 + 1])


def test_rays_round_trip_through_opencvs_fisheye_projection():
    import cv2

    cam = fisheye_camera(160, 170.0)
    rays, valid = FE.equidistant_rays(cam, D4)
    assert valid[80, 80] and not valid[0, 0]  # the corner lies beyond 90 degrees
    theta = np.arccos(np.clip(rays[..., 2], -1, 1))
    sel = valid & (theta < math.radians(80))  # where cv::fisheye::projectPoints (x/z) is well conditioned
    pts = rays[sel].reshape(-1, 1, 3)
    uv, _ = cv2.fisheye.projectPoints(pts, np.zeros(3), np.zeros(3), opencv_k(cam), np.array(D4))
    vs, us = np.nonzero(sel)
    np.testing.assert_allclose(uv[:, 0, 0], us, atol=1e-3)  # OpenCV: pixel centres at integers
    np.testing.assert_allclose(uv[:, 0, 1], vs, atol=1e-3)
    # and the analytic projection agrees everywhere up to 90 degrees
    uv2 = FE.equidistant_project(rays[valid], cam, D4)
    np.testing.assert_allclose(uv2, np.stack([np.nonzero(valid)[1], np.nonzero(valid)[0]], -1) + 0.5, atol=1e-6)


@pytest.mark.parametrize("fov,faces", [(80.0, 1), (120.0, 5), (180.0, 5)])  # corners at 57, 85, 127 deg
def test_the_remap_puts_each_direction_where_the_equidistant_projection_says(fov: float, faces: int):
    cam = fisheye_camera(200, fov)
    lens = L.Lens(cam, "equidistant", D4 if fov < 180 else (0.0, 0.0, 0.0, 0.0))
    assert lens.distorted and len(lens.views) == faces
    images, depths = render_views(lens)
    out = lens.remap(images)
    # directions up to (almost) the edge of the field, projected analytically
    rng = np.random.default_rng(0)
    theta = rng.uniform(0.0, math.radians(fov / 2 - 2.0), 2000)
    phi = rng.uniform(0.0, 2 * math.pi, 2000)
    dirs = np.stack([np.sin(theta) * np.cos(phi), np.sin(theta) * np.sin(phi), np.cos(theta)], -1)
    uv = FE.equidistant_project(dirs, cam, lens.d8[:4])
    got = sample(out, uv)
    err = np.abs(got - env_colour(dirs))
    assert np.median(err) < 1.0 and np.percentile(err, 99) < 4.0, (np.median(err), np.percentile(err, 99))
    # black where the lens sees nothing (the corners beyond 90 degrees)
    if fov == 180.0:
        assert not lens.valid[0, 0] and (out[0, 0] == 0).all()
    # z-depth of a sphere of radius 2 round the camera: 2 cos(theta), NaN at and beyond 90 degrees
    z = lens.remap_depth(depths)
    rays, valid = FE.equidistant_rays(cam, lens.d8[:4])
    ok = valid & (rays[..., 2] > 0.05)
    np.testing.assert_allclose(z[ok], 2.0 * rays[..., 2][ok], rtol=0.03)
    assert np.isnan(z[~valid]).all()


def test_an_equidistant_calibration_file_is_read(tmp_path):
    from test_node_sensor_models import CALIBRATION

    five, four = "cols: 5\n  data: [-0.25, 0.07, 0.001, -0.002, 0.0]", "cols: 4\n  data: [0.04, -0.012, 0.003, 0.0]"
    text = CALIBRATION.replace("plumb_bob", "equidistant").replace(five, four)
    path = tmp_path / "fisheye.yaml"
    path.write_text(text)
    cal = L.read_calibration(str(path))
    assert cal.distortion_model == "equidistant" and cal.d == (0.04, -0.012, 0.003, 0.0)
    path.write_text(CALIBRATION.replace("plumb_bob", "equidistant"))  # five coefficients
    with pytest.raises(L.CalibrationError, match="takes 4 coefficients"):
        L.read_calibration(str(path))


FISHEYE_180 = """image_width: 96
image_height: 96
camera_name: fisheye
camera_matrix:
  rows: 3
  cols: 3
  data: [30.5578, 0.0, 47.5, 0.0, 30.5578, 47.5, 0.0, 0.0, 1.0]
distortion_model: equidistant
distortion_coefficients:
  rows: 1
  cols: 4
  data: [0.0, 0.0, 0.0, 0.0]
"""


@pytest.fixture(scope="module")
def domain() -> int:
    from ros_helpers import pick_domain_id

    return pick_domain_id(offset=83)


def test_the_node_publishes_a_180_degree_fisheye_and_renders_one_on_request(assets, domain, ctx, tf_child, tmp_path):
    from node_helpers import Caller, SpunNode
    from ros_helpers import collect, reliable_qos
    from rtfm_ros_interfaces.srv import RenderView
    from sensor_msgs.msg import CameraInfo, Image

    from rtfm_ros.io import messages
    from rtfm_ros.ros import conversions as c

    calib = tmp_path / "fisheye.yaml"
    calib.write_text(FISHEYE_180)
    spun = SpunNode(domain, {"checkpoint": str(assets["ckpt"]), "world": str(assets["world"]), "device": "cpu",
                             "camera_info_url": f"file://{calib}", "rate": 4.0, "publish_depth": True,
                             "depth_source": "rendered"}, node_name="rtfm_fisheye", namespace="fish")
    caller = Caller(ctx)
    try:
        topics = {t: (cls, reliable_qos()) for t, cls in [("/fish/image_raw", Image), ("/fish/camera_info", CameraInfo),
                                                          ("/fish/depth", Image)]}
        got = collect(ctx, topics, lambda r: all(len(v) >= 1 for v in r.values()), timeout_s=60, process=tf_child)
        info = got["/fish/camera_info"][-1]
        assert (info.width, info.height, info.distortion_model) == (96, 96, "equidistant")
        np.testing.assert_allclose(info.d, [0.0, 0.0, 0.0, 0.0])
        image = messages.decode_image(got["/fish/image_raw"][-1])
        assert (image[:3, :3] == 0).all() and image[40:56, 40:56].any()  # the corners lie beyond 90 degrees
        depth = messages.decode_depth(got["/fish/depth"][-1])
        assert np.isnan(depth[:3, :3]).all() and np.isfinite(depth[40:56, 40:56]).mean() > 0.5

        # ~/render_view with the fisheye's CameraInfo: its cube faces rendered and remapped, exactly
        T = assets["frames"][0][1]
        req = RenderView.Request(want_depth=False, remember=False)
        req.pose.header.frame_id = "map"
        req.pose.pose = c.pose_msg(T)
        req.camera_info = info
        res = caller(RenderView, "/fish/rtfm_fisheye/render_view", req)
        assert res.success, res.message
        lens = L.Lens(g.camera_from_k(96, 96, info.k), "equidistant", list(info.d))
        assert len(lens.views) == 5
        faces = []
        for v in lens.views:
            turned = T.copy()
            turned[:3, :3] = T[:3, :3] @ v.R
            req.pose.pose = c.pose_msg(turned)
            req.camera_info = c.camera_info_msg(v.camera, 0, "face")
            face = caller(RenderView, "/fish/rtfm_fisheye/render_view", req)
            assert face.success, face.message
            faces.append(messages.decode_image(face.image))
        np.testing.assert_array_equal(messages.decode_image(res.image), lens.remap(faces))
    finally:
        caller.close()
        spun.close()
