"""The camera node's ROS-free parts: pixel convention, lens, calibration files, trusted depth,
exposure and noise, the fair world lock, and the world-file rules."""

from __future__ import annotations

import importlib
import json
import os
import threading
from pathlib import Path

import numpy as np
import pytest
from waiting import wait_until

from rtfm_ros import geometry as g
from rtfm_ros import geometry as pixels
from rtfm_ros.camera import lens as L
from rtfm_ros.camera.sensor import expose, phantom_near_share
from rtfm_ros.io.messages import depth_mm
from rtfm_ros.memory import FrameMemory
from rtfm_ros.memory.working_copy import WorkingCopy, is_world_file
from rtfm_ros.render.stored_depth import checked_depth
from rtfm_ros.world_session import WorldGate, save_world

CALIBRATION = """image_width: 160
image_height: 120
camera_name: narrow_stereo
camera_matrix:
  rows: 3
  cols: 3
  data: [100.0, 0.0, 79.5, 0.0, 101.0, 59.5, 0.0, 0.0, 1.0]
distortion_model: plumb_bob
distortion_coefficients:
  rows: 1
  cols: 5
  data: [-0.25, 0.07, 0.001, -0.002, 0.0]
rectification_matrix:
  rows: 3
  cols: 3
  data: [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
projection_matrix:
  rows: 3
  cols: 4
  data: [90.0, 0.0, 80.0, 0.0, 0.0, 91.0, 60.0, 0.0, 0.0, 0.0, 1.0, 0.0]
"""


def test_ros_k_has_integer_pixel_centres():
    cam = g.PinholeCamera.from_fov(96, 64, 90)  # centred: cx = 48 inside
    k = pixels.opencv_k(cam)
    assert k[2] == 47.5 and k[5] == 31.5  # (W - 1) / 2 in ROS / OpenCV
    assert pixels.camera_from_k(96, 64, k) == cam
    assert pixels.opencv_p(cam)[2] == 47.5 and pixels.opencv_p(cam)[3] == 0.0


def test_calibration_file_is_read_as_camera_calibration_writes_it(tmp_path):
    path = tmp_path / "cam.yaml"
    path.write_text(CALIBRATION)
    for url in (str(path), f"file://{path}"):
        cal = L.read_calibration(url)
        got = (cal.width, cal.height, cal.distortion_model, cal.camera_name)
        assert got == (160, 120, "plumb_bob", "narrow_stereo")
        assert cal.camera.cx == 80.0 and cal.camera.fy == 101.0  # 79.5 + 0.5 inside
        assert cal.rect_camera.fx == 90.0 and cal.rect_camera.cx == 80.5
    bad = tmp_path / "bad.yaml"
    for text, match in [("image_width: 10\n", "image_height"), ("[1, 2]", "mapping"),
                        (CALIBRATION.replace("plumb_bob", "kannala_brandt"), "not rendered"),
                        (CALIBRATION.replace("rows: 1\n  cols: 5\n  data: [-0.25", "data: [1, 2, 3, 4, 5, 6, -0.25"),
                         "coefficients")]:
        bad.write_text(text)
        with pytest.raises(L.CalibrationError, match=match):
            L.read_calibration(str(bad))
    with pytest.raises(L.CalibrationError, match="does not exist"):
        L.read_calibration(str(tmp_path / "none.yaml"))
    with pytest.raises(L.CalibrationError, match="only file://"):
        L.read_calibration("http://example.com/cam.yaml")


def test_calibration_url_substitutions_as_camera_info_manager(tmp_path, monkeypatch):
    (tmp_path / "camera_info").mkdir()
    (tmp_path / "camera_info" / "front.yaml").write_text(CALIBRATION)
    monkeypatch.setenv("ROS_HOME", str(tmp_path))
    cal = L.read_calibration("file://${ROS_HOME}/camera_info/${NAME}.yaml", "front")
    assert (cal.width, cal.height) == (160, 120)
    assert L.expand_url("${NAME}.yaml", "rear") == "rear.yaml"
    monkeypatch.delenv("ROS_HOME")
    assert L.expand_url("${ROS_HOME}/x") == str(Path.home() / ".ros" / "x")
    with pytest.raises(L.CalibrationError, match="no name"):
        L.read_calibration("${NAME}.yaml")
    with pytest.raises(L.CalibrationError, match="unknown substitution"):
        L.read_calibration("${HOME}/cam.yaml", "front")


@pytest.mark.parametrize("model,d", [("plumb_bob", (-0.25, 0.07, 0.001, -0.002, 0.0)),
                                     ("plumb_bob", (0.15, 0.0, 0.0, 0.0, 0.0)),
                                     ("rational_polynomial", (-0.3, 0.1, 0.0, 0.001, 0.0, 0.05, 0.01, 0.0))])
def test_lens_rays_round_trip_and_the_remap_puts_a_point_where_k_and_d_say(model, d):
    cam = pixels.camera_from_opencv(160, 120, 100.0, 101.0, 79.5, 59.5)
    lens = L.Lens(cam, model, d)
    assert lens.valid.all() and lens.distorted
    # the ray of each output pixel, distorted and projected with the published K, is that pixel
    xd, yd = L.distort(lens.rays[..., 0].astype(np.float64), lens.rays[..., 1].astype(np.float64), lens.d8)
    u = 100.0 * xd + 79.5
    v = 101.0 * yd + 59.5
    np.testing.assert_allclose(u, np.broadcast_to(np.arange(160), u.shape), atol=0.05)
    np.testing.assert_allclose(v, np.broadcast_to(np.arange(120)[:, None], v.shape), atol=0.05)
    # a bright dot in the ideal render lands where OpenCV's model projects its ray
    rc = lens.render_camera
    X = np.array([0.3, -0.2, 1.0])
    ideal = np.zeros((rc.height, rc.width, 3), np.uint8)
    ui, vi = rc.fx * X[0] + rc.cx, rc.fy * X[1] + rc.cy  # continuous, pixel edges
    yy, xx = np.mgrid[0:rc.height, 0:rc.width] + 0.5
    ideal[..., 1] = (255 * np.exp(-((xx - ui) ** 2 + (yy - vi) ** 2) / 2.0)).astype(np.uint8)
    out = lens.remap(ideal)[..., 1].astype(np.float64)
    xd, yd = L.distort(np.array(X[0]), np.array(X[1]), lens.d8)
    expected = (100.0 * float(xd) + 79.5, 101.0 * float(yd) + 59.5)
    w = np.where(out > 60, out, 0)
    vs, us = np.mgrid[0:120, 0:160]
    found = ((w * us).sum() / w.sum(), (w * vs).sum() / w.sum())
    np.testing.assert_allclose(found, expected, atol=0.3)


def test_undistorted_lens_is_the_identity():
    cam = g.PinholeCamera.from_fov(64, 48, 80)
    lens = L.Lens(cam)
    img = np.random.default_rng(0).integers(0, 255, (48, 64, 3), dtype=np.uint8)
    assert lens.render_camera == cam and lens.remap(img) is img


def _world(memory: FrameMemory):
    """A world over memory with the untrained tiny depth prior (only frames' own depth counts)."""
    from rtfm_ros.learn.config import preset
    from rtfm_ros.learn.depth_prior import DepthPrior
    from rtfm_ros.world import WorldModel

    return WorldModel(DepthPrior(preset("tiny")), memory, device="cpu")


def test_checked_depth_keeps_what_real_frames_saw_and_drops_phantoms():
    cam = g.PinholeCamera.from_fov(32, 32, 90)
    mem = FrameMemory()
    T = g.look_at((0, 0, 1), (1, 0, 1))  # looking along +x at a wall 3 m away
    mem.add(np.zeros((32, 32, 3), np.uint8), T, cam, stamp=0.0, source="seed", depth=np.full((32, 32), 3.0, np.float32))
    mem.add(np.zeros((32, 32, 3), np.uint8), T, cam, stamp=0.0, source="generated",
            depth=np.full((32, 32), 1.0, np.float32))  # a generated view never counts
    rendered = np.full((32, 32), 3.05, np.float32)
    rendered[:, :10] = 1.5        # a phantom obstacle: the seed saw through it
    rendered[:, 10:12] = np.nan   # the model knows nothing there
    world = _world(mem)
    out, n = checked_depth(rendered, T, cam, world, tolerance=0.1)
    assert n == 1
    assert np.isnan(out[:, :12]).all() and np.allclose(out[:, 12:], 3.05)
    world.reset()
    world.add_frame(np.zeros((32, 32, 3), np.uint8), T, cam, stamp=0.0)  # no depth (a guess): nothing is known
    out, n = checked_depth(rendered, T, cam, world)
    assert n == 0 and np.isnan(out).all()
    truth = np.full((32, 32), 3.0)
    assert phantom_near_share(rendered, truth) == pytest.approx((10 / 30, 30 / 32))


def test_one_policy_for_the_depth_a_view_publishes_and_keeps():
    from rtfm_ros.render.config import RenderConfig, RenderConfigError

    cam = g.PinholeCamera.from_fov(32, 32, 90)
    T = g.look_at((0, 0, 1), (1, 0, 1))  # looking along +x at a wall 3 m away
    world = _world(FrameMemory())
    world.add_frame(np.zeros((32, 32, 3), np.uint8), T, cam, depth=np.full((32, 32), 3.0, np.float32))
    rendered = np.full((32, 32), 3.05, np.float32)
    rendered[:, :10] = 1.5  # a phantom obstacle
    np.testing.assert_array_equal(world.view_depth(rendered, T, cam, policy="checked"),
                                  checked_depth(rendered, T, cam, world)[0])
    np.testing.assert_array_equal(world.view_depth(rendered, T, cam), rendered)  # the config's default
    assert world.config.stored_depth == "rendered" and world.view_depth(rendered, T, cam, policy="none") is None
    with pytest.raises(ValueError, match="depth policy"):
        world.view_depth(rendered, T, cam, policy="guessed")
    with pytest.raises(RenderConfigError, match="stored_depth"):
        RenderConfig(stored_depth="guessed")
    # A remembered view keeps its depth as the policy takes it, once per place.
    aside = g.look_at((0, 0, 1), (0, 1, 1))  # turned a quarter: a place the memory lacks, no real frame saw it
    image = np.full((32, 32, 3), 7, np.uint8)
    assert world.remember_view(image, aside, cam, rendered, policy="checked")
    kept = world.memory.get(len(world.memory) - 1)
    assert kept.source == "generated" and kept.depth is not None and np.isnan(kept.depth).all()
    assert not world.remember_view(image, aside, cam, rendered)  # that place is held now


def test_depth_in_millimetres_and_sensor_response():
    np.testing.assert_array_equal(depth_mm(np.array([[np.nan, 1.2344, -1.0, 70.0, 0.0004]])), [[0, 1234, 0, 0, 0]])
    rgb = np.full((200, 200, 3), 128, np.uint8)
    assert expose(rgb) is rgb
    brighter = expose(rgb, exposure=2.0)
    assert 160 < int(brighter[0, 0, 0]) < 190  # twice the light, in sRGB
    assert int(expose(rgb, gain_db=6.0206)[0, 0, 0]) == int(brighter[0, 0, 0])  # +6 dB = x2
    noisy = expose(rgb, noise_stddev=0.02, rng=np.random.default_rng(1)).astype(float)
    assert 2.0 < noisy.std() < 6.0 and abs(noisy.mean() - 128) < 1.0


def test_world_gate_alternates_between_stream_and_background():
    gate, order = WorldGate(), []
    gate.acquire(stream=True)

    def background() -> None:
        for _ in range(3):
            with gate.hold():
                order.append("bg")

    t = threading.Thread(target=background)
    t.start()
    wait_until(lambda: gate.waiting(stream=False), "the background work waits for the gate")
    gate.release()
    for _ in range(3):
        with gate.hold(stream=True):
            order.append("stream")
    t.join(5)
    assert order.count("bg") == 3 and order.count("stream") == 3
    assert "bg" in order[:2]  # the waiting request went first once the stream let go
    with gate.hold(), gate.hold():  # re-entrant
        pass


def test_world_files_are_copied_and_saves_never_replace_other_files(tmp_path):
    cam = g.PinholeCamera.from_fov(16, 16, 90)
    src = tmp_path / "user.rtfm"
    mem = FrameMemory(src)
    mem.add(np.zeros((16, 16, 3), np.uint8), np.eye(4), cam, stamp=0.0, source="seed")
    mem.close()
    before = src.read_bytes()
    scratch = WorkingCopy(src)
    scratch.memory.add(np.ones((16, 16, 3), np.uint8), np.eye(4), cam, stamp=1.0, source="generated")
    assert len(scratch.memory) == 2 and src.read_bytes() == before

    class World:
        def save(self, path):
            return scratch.memory.save(path)

    other = tmp_path / "notes.json"
    other.write_text(json.dumps({"mine": True}))
    with pytest.raises(FileExistsError, match="replace_world"):
        save_world(World(), other, replace=False)
    with pytest.raises(ValueError, match="not a world file"):
        save_world(World(), other, replace=True)
    assert json.loads(other.read_text()) == {"mine": True}
    with pytest.raises(FileExistsError):
        save_world(World(), src, replace=False)
    save_world(World(), src, replace=True)  # explicit: replaces a world file
    assert len(FrameMemory.open(src, writable=False)) == 2
    scratch.close()
    assert not os.path.exists(scratch.dir)
    fifo = tmp_path / "fifo.rtfm"
    os.mkfifo(fifo)
    refused: list[str] = []

    def open_fifo() -> None:  # opening a FIFO for reading would block until a writer came
        with pytest.raises(ValueError, match="not a regular file") as err:
            WorkingCopy(fifo)
        refused.append(str(err.value))
        assert not is_world_file(fifo)
        refused.append("not a world file")

    t = threading.Thread(target=open_fifo, daemon=True)
    t.start()
    wait_until(lambda: len(refused) == 2, "the FIFO is refused without being opened", 10)


def test_the_world_handle_loads_a_new_world_and_keeps_the_old_one_on_failure(tmp_path):
    import logging

    from rtfm_ros.camera.world_handle import WorldHandle
    from rtfm_ros.learn.config import preset
    from rtfm_ros.learn.depth_prior import DepthPrior
    from rtfm_ros.world import WorldModel

    cam = g.PinholeCamera.from_fov(16, 16, 90)
    src = tmp_path / "user.rtfm"
    mem = FrameMemory(src)
    for i in range(3):
        mem.add(np.full((16, 16, 3), 40 * i, np.uint8), g.look_at((0, 0, 0), (1, 0, 0.1 * i)), cam,
                stamp=float(i), source="seed")
    mem.close()
    before = src.read_bytes()
    first = WorldModel(DepthPrior(preset("tiny")), device="cpu")
    handle = WorldHandle(first, logging.getLogger("test"), scratch_dir=str(tmp_path))
    worker = handle.worker
    assert handle.load(str(src)) == (3, src) and handle.source == src
    loaded = handle.world
    assert loaded is not first and worker.world is loaded and loaded.core is first.core
    with pytest.raises(FileNotFoundError):
        handle.load(str(tmp_path / "missing.rtfm"))
    assert handle.world is loaded and handle.source == src  # a failed load changes nothing
    scratch_dir = handle._copy.dir
    handle.load(str(src))
    assert not os.path.exists(scratch_dir)  # the previous working copy is closed and removed
    assert handle.reset() == 3 and len(handle.world.memory) == 0 and src.read_bytes() == before
    handle.close()


def test_the_core_and_the_camera_run_without_ros():
    """Only rtfm_ros.ros may use rclpy or ROS message classes: every other layer imports without them."""
    import pkgutil
    import subprocess
    import sys

    core = ["rtfm_ros.geometry", "rtfm_ros.world", "rtfm_ros.tf_buffer"]
    for pkg in ("memory", "render", "learn", "camera", "io"):
        mod = importlib.import_module(f"rtfm_ros.{pkg}")
        core += [f"rtfm_ros.{pkg}.{m.name}" for m in pkgutil.iter_modules(mod.__path__)]
    assert "rtfm_ros.camera.stream" in core and "rtfm_ros.render.warp" in core
    ros = ("rclpy", "rcl_interfaces", "sensor_msgs", "tf2_msgs", "diagnostic_msgs", "rtfm_ros_interfaces")
    code = ("import sys, importlib\n"
            f"for m in {ros!r}:\n    sys.modules[m] = None\n"
            f"for m in {core!r}:\n    importlib.import_module(m)\n")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
