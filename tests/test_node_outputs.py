"""The camera node as a real sensor over Fast DDS, TF from another process: a calibration file
(K, D, size) with lens distortion, image_rect, image_raw/compressed, 16UC1 depth, points,
noise, /diagnostics, status at 640x480, large images delivered with the default QoS, the
pixel convention of the published K, and the camera going on when remembering views fails.
"""

from __future__ import annotations

import io
import time

import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticArray
from node_helpers import Caller, SpunNode
from ros_helpers import collect, pick_domain_id, reliable_qos
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2
from test_node_sensor_models import CALIBRATION

from rtfm_ros import geometry as g
from rtfm_ros.camera import lens as L
from rtfm_ros.io import messages
from rtfm_ros.ros import conversions as c

REL = reliable_qos()


@pytest.fixture(scope="module")
def domain() -> int:
    return pick_domain_id(offset=79)


def world_model(assets, memory=None):
    from rtfm_ros.learn.checkpoint import load_checkpoint
    from rtfm_ros.memory import FrameMemory
    from rtfm_ros.world import WorldModel

    model, meta = load_checkpoint(assets["ckpt"])
    memory = memory if memory is not None else FrameMemory.open(assets["world"], writable=False)
    return WorldModel(model, memory, device="cpu", checkpoint_info=meta)


def diag_values(msg: DiagnosticArray) -> dict[str, str]:
    return {kv.key: kv.value for s in msg.status for kv in s.values}


def test_a_calibrated_distorted_camera_and_its_topics(assets, domain, ctx, tf_child, tmp_path):
    calib = tmp_path / "cam.yaml"
    calib.write_text(CALIBRATION)
    spun = SpunNode(domain, {"camera_info_url": f"file://{calib}", "rate": 4.0, "publish_depth": True,
                             "depth_encoding": "16UC1", "publish_points": True, "publish_rect": True,
                             "depth_source": "rendered"}, world_model=world_model(assets), node_name="rtfm_cal",
                    namespace="cal")
    caller = Caller(ctx)
    try:
        topics = {t: (cls, REL) for t, cls in [("/cal/image_raw", Image), ("/cal/camera_info", CameraInfo),
                                               ("/cal/image_raw/compressed", CompressedImage), ("/cal/depth", Image),
                                               ("/cal/points", PointCloud2), ("/cal/image_rect", Image),
                                               ("/diagnostics", DiagnosticArray)]}
        got = collect(ctx, topics, lambda r: all(len(v) >= 2 for v in r.values()), timeout_s=90, process=tf_child)
        info = got["/cal/camera_info"][-1]
        assert (info.width, info.height, info.distortion_model) == (160, 120, "plumb_bob")
        np.testing.assert_allclose(info.k, [100.0, 0.0, 79.5, 0.0, 101.0, 59.5, 0.0, 0.0, 1.0])
        np.testing.assert_allclose(info.d, [-0.25, 0.07, 0.001, -0.002, 0.0])
        np.testing.assert_allclose(info.p[:3], [90.0, 0.0, 80.0])

        by_stamp = {messages.stamp_to_ns(m.header.stamp): m for m in got["/cal/image_raw"]}
        comp = next(m for m in got["/cal/image_raw/compressed"] if messages.stamp_to_ns(m.header.stamp) in by_stamp)
        from PIL import Image as PILImage

        assert comp.format == "rgb8; jpeg compressed bgr8"
        decoded = np.asarray(PILImage.open(io.BytesIO(bytes(comp.data))).convert("RGB")).astype(float)
        raw = messages.decode_image(by_stamp[messages.stamp_to_ns(comp.header.stamp)]).astype(float)
        assert decoded.shape == (120, 160, 3) and np.abs(decoded - raw).mean() < 6.0
        rect = got["/cal/image_rect"][-1]
        assert (rect.width, rect.height) == (160, 120)

        depth = got["/cal/depth"][-1]
        assert depth.encoding == "16UC1"
        mm = np.frombuffer(bytes(depth.data), "<u2").reshape(120, 160)
        assert (mm > 0).mean() > 0.5 and mm.max() < 20000
        cloud = got["/cal/points"][-1]
        assert (cloud.height, cloud.width, [f.name for f in cloud.fields]) == (120, 160, ["x", "y", "z", "rgb"])
        pts = np.frombuffer(bytes(cloud.data), "<f4").reshape(120, 160, 4)[..., :3].astype(np.float64)
        ok = np.isfinite(pts).all(-1)
        assert ok.mean() > 0.5
        # every point, projected with the published K and D, lands on its own pixel
        vs, us = np.nonzero(ok)
        p = pts[vs, us]
        xd, yd = L.distort(p[:, 0] / p[:, 2], p[:, 1] / p[:, 2], L.check_distortion("plumb_bob", info.d))
        np.testing.assert_allclose(info.k[0] * xd + info.k[2], us, atol=0.1)
        np.testing.assert_allclose(info.k[4] * yd + info.k[5], vs, atol=0.1)
        assert {"images per second", "dropped ticks", "tf misses", "render latency median (ms)"} <= set(
            diag_values(got["/diagnostics"][-1]))

        # Gaussian noise: the same pose, two images, different by about the noise.
        def two_images() -> np.ndarray:
            after = time.time_ns()
            r = collect(ctx, {"/cal/image_raw": (Image, REL)}, lambda r: len(
                [m for m in r["/cal/image_raw"] if messages.stamp_to_ns(m.header.stamp) > after]) >= 2, timeout_s=30)
            a, b = [messages.decode_image(m).astype(float) for m in r["/cal/image_raw"]
                    if messages.stamp_to_ns(m.header.stamp) > after][:2]
            return (a - b).std()

        quiet = two_images()
        assert [r.successful for r in caller.set_params("cal/rtfm_cal", noise_stddev=0.05)] == [True]
        assert two_images() > quiet + 3.0
    finally:
        caller.close()
        spun.close()


def test_large_images_arrive_status_is_right_and_a_failed_write_keeps_the_camera_on(assets, domain, ctx, tf_child):
    from rtfm_ros_interfaces.msg import WorldStatus

    # The world file is opened read-only: every write of a remembered view fails.
    # left_camera_link is a place no stored frame shows: the stream tries to remember it.
    spun = SpunNode(domain, {"width": 640, "height": 480, "rate": 2.0, "remember_generated": True,
                             "camera_frame": "left_camera_link"},
                    world_model=world_model(assets), node_name="rtfm_big", namespace="big")
    node = spun.node
    try:
        got = collect(ctx, {"/big/image_raw": (Image, REL), "/big/rtfm_big/status": (WorldStatus, REL)},
                      lambda r: len(r["/big/image_raw"]) >= 3, timeout_s=120, process=tf_child)
        n0 = node.stats.images
        got = collect(ctx, {"/big/image_raw": (Image, REL), "/big/rtfm_big/status": (WorldStatus, REL),
                            "/diagnostics": (DiagnosticArray, REL)},
                      lambda r: len(r["/big/image_raw"]) >= 6 and len(r["/big/rtfm_big/status"]) >= 3,
                      timeout_s=120, process=tf_child)
        sent = node.stats.images - n0
        assert (got["/big/image_raw"][0].width, got["/big/image_raw"][0].height) == (640, 480)
        assert len(got["/big/image_raw"]) >= sent - 2  # reliable by default: what is sent arrives
        assert all(s.render_rate_hz > 0 for s in got["/big/rtfm_big/status"][1:])  # images/s at 640x480
        # Remembering fails (read-only world) but images keep coming, and it is counted.
        assert node.worker.write_back.failures >= 1 and node.worker.write_back.remembered == 0
        after = time.time_ns()
        collect(ctx, {"/big/image_raw": (Image, REL), "/diagnostics": (DiagnosticArray, REL)},
                lambda r: any(messages.stamp_to_ns(m.header.stamp) > after for m in r["/big/image_raw"])
                and any(int(diag_values(d).get("remember failures", "0")) >= 1 for d in r["/diagnostics"]),
                timeout_s=60, process=tf_child)
    finally:
        spun.close()


def test_a_known_point_is_rendered_at_the_pixel_the_published_k_predicts(assets, domain, ctx):
    from rtfm_ros_interfaces.srv import RenderView

    from rtfm_ros.memory import FrameMemory

    wm = world_model(assets, FrameMemory())
    seed = g.PinholeCamera.from_fov(64, 64, 90)
    X = np.array([0.31, -0.17, 2.0])  # in the seed camera's frame = the world
    u0, v0 = seed.fx * X[0] / X[2] + seed.cx, seed.fy * X[1] / X[2] + seed.cy  # continuous, pixel edges
    yy, xx = np.mgrid[0:64, 0:64] + 0.5
    dot = (255 * np.exp(-((xx - u0) ** 2 + (yy - v0) ** 2) / (2 * 1.5 ** 2))).astype(np.uint8)
    wm.add_frame(np.repeat(dot[..., None], 3, axis=2), np.eye(4), seed, depth=np.full((64, 64), 2.0, np.float32))
    spun = SpunNode(domain, {"camera_frame": "nowhere", "camera_frame_convention": "optical"}, world_model=wm,
                    node_name="rtfm_pixels")
    caller = Caller(ctx)
    try:
        for (w, h, f, cx, cy, t) in [(128, 96, 70.0, 60.0, 50.0, (0.05, 0.02, 0.0)),
                                     (160, 120, 90.0, 79.5, 59.5, (-0.1, 0.05, 0.1))]:
            info = CameraInfo(width=w, height=h, k=[f, 0.0, cx, 0.0, f, cy, 0.0, 0.0, 1.0])  # ROS convention
            req = RenderView.Request(camera_info=info)
            req.pose.pose = c.pose_msg(g.make_transform(np.eye(3), t))
            res = caller(RenderView, "/rtfm_pixels/render_view", req)
            assert res.success, res.message
            img = messages.decode_image(res.image)[..., 0].astype(float)
            m = np.where(img > 0.3 * img.max(), img, 0)
            vs, us = np.mgrid[0:h, 0:w]
            found = ((m * us).sum() / m.sum(), (m * vs).sum() / m.sum())
            Xc = X - np.array(t)
            predicted = (f * Xc[0] / Xc[2] + cx, f * Xc[1] / Xc[2] + cy)  # integer pixel centres
            np.testing.assert_allclose(found, predicted, atol=0.15)  # half a pixel off would fail
    finally:
        caller.close()
        spun.close()
