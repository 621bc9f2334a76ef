"""A depth camera's noise (off by default): stereo-like error growing with z^2 / (f B), disparity
steps, dropouts beside depth edges and in the stereo occlusion shadow; unknown stays unknown."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from rtfm_ros import geometry as g
from rtfm_ros.camera.config import NODE_PARAMS, CameraNodeConfig
from rtfm_ros.camera.sensor import DepthNoise

FX, B = 400.0, 0.05


def test_off_by_default():
    config = CameraNodeConfig.from_values({s.name: s.default for s in NODE_PARAMS})
    noise = config.depth_noise_model
    assert not noise.active
    depth = np.full((4, 4), 2.0, np.float32)
    assert noise.apply(depth, FX) is depth


@pytest.mark.parametrize("z", [1.0, 2.0, 4.0])
def test_stereo_noise_grows_with_z_squared_over_f_b(z: float):
    noise = DepthNoise("stereo", baseline=B, disparity_stddev=0.1, subpixel=0.0)
    depth = np.full((200, 200), z, np.float32)
    out = noise.apply(depth, FX, np.random.default_rng(1))
    expected = z * z * 0.1 / (FX * B)  # sigma_z = z^2 sigma_d / (f B): 5 mm at 1 m, 80 mm at 4 m
    assert np.isfinite(out).all()
    assert float(np.std(out)) == pytest.approx(expected, rel=0.05)
    assert abs(float(np.mean(out)) - z) < 0.05 * expected + 3 * expected / 200  # unbiased to first order


def test_disparity_steps_and_unknown_stays_unknown():
    noise = DepthNoise("stereo", baseline=B, disparity_stddev=0.0, subpixel=0.125)
    depth = np.linspace(0.5, 6.0, 4000, dtype=np.float32).reshape(40, 100)
    depth[5:10, 20:30] = np.nan
    depth[0, :5] = 0.0  # 16UC1's "no return"
    out = noise.apply(depth, FX)
    unknown = ~np.isfinite(depth) | (depth <= 0)
    assert np.isnan(out[unknown]).all() and np.isfinite(out[~unknown]).all()
    steps = FX * B / out[~unknown] / 0.125
    np.testing.assert_allclose(steps, np.round(steps), atol=1e-3)  # every disparity is a whole step
    far = out[-1, -50:]  # at 6 m a 1/8 px step is ~0.2 m: depth comes in few distinct values
    assert len(np.unique(np.round(far, 4))) < 10


def test_at_width_keeps_the_error_in_metres():
    """The same camera's depth used at a quarter of its width: its pixels are 4x larger, so
    its disparity noise in pixels is 4x smaller and the error in metres stays the camera's."""
    noise = DepthNoise("stereo", baseline=B, disparity_stddev=0.1, subpixel=0.0)
    full = noise.at_width(640).apply(np.full((200, 200), 2.0, np.float32), FX, np.random.default_rng(1))
    small = noise.at_width(160).apply(np.full((200, 200), 2.0, np.float32), FX / 4, np.random.default_rng(1))
    assert float(np.std(small)) == pytest.approx(float(np.std(full)), rel=0.05)
    assert float(np.std(full)) == pytest.approx(4 * 0.1 / (FX * B), rel=0.05)
    assert noise.at_width(160).subpixel == pytest.approx(noise.subpixel / 4)


def test_seeded_noise_repeats():
    noise = DepthNoise("stereo", baseline=B, disparity_stddev=0.2)
    depth = np.full((20, 20), 3.0, np.float32)
    a, b = (noise.apply(depth, FX, np.random.default_rng(7)) for _ in range(2))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, noise.apply(depth, FX, np.random.default_rng(8)))


def test_dropouts_beside_edges_and_in_the_occlusion_shadow():
    """A near box (1 m, columns 80-119) before a far wall (3 m): the left camera sees a band of
    wall left of the box that the right camera (B to its right) cannot: f B (1/1 - 1/3) = 13.3 px."""
    depth = np.full((30, 200), 3.0, np.float32)
    depth[:, 80:120] = 1.0
    out = DepthNoise(edge_jump=0.1, baseline=B).apply(depth, FX)
    dropped = np.isnan(out[15])
    shadow = int(dropped[:80].sum())
    assert shadow == pytest.approx(FX * B * (1 - 1 / 3), abs=1.5)
    assert dropped[80 - shadow:80].all()  # one band, against the box
    assert dropped[[80, 119, 120]].all() and not dropped[121:].any()  # the edge pixels only on the right
    assert not dropped[100] and out[15, 100] == 1.0  # no stereo noise asked for: exact elsewhere
    assert np.isnan(DepthNoise(edge_jump=0.1).apply(np.full((3, 3), np.nan, np.float32), FX)).all()


def test_the_stream_applies_it_after_the_checked_depth(assets):
    """The render worker: depth as the policy gives it, then the sensor's noise; NaN where unknown."""
    from rtfm_ros.camera.lens import Lens
    from rtfm_ros.camera.worker import Sensor
    from rtfm_ros.camera.world_handle import WorldHandle
    from rtfm_ros.learn.checkpoint import load_checkpoint
    from rtfm_ros.memory import FrameMemory
    from rtfm_ros.world import WorldModel

    model, meta = load_checkpoint(assets["ckpt"])
    world = WorldModel(model, FrameMemory.open(assets["world"], writable=False), device="cpu")
    handle = WorldHandle(world, logging.getLogger("test"))
    try:
        sensor = Sensor(Lens(g.PinholeCamera.from_fov(64, 48, 80)))
        T = assets["frames"][1][1]
        kw = dict(remember=False, want_depth=True, want_rect=False, depth_source="checked")
        (clean,), _ = handle.worker.render_batch([T], [sensor], **kw)
        (noisy,), _ = handle.worker.render_batch([T], [sensor], **kw, noise=DepthNoise("stereo", 0.05, 0.1))
        assert clean.depth is not None and noisy.depth is not None
        known = np.isfinite(clean.depth)
        assert np.isnan(noisy.depth[~known]).all()  # unknown stays unknown
        both = known & np.isfinite(noisy.depth)  # (a disparity pushed to 0 or below returns nothing)
        assert known.mean() > 0.3 and both.sum() > 0.9 * known.sum()
        assert not np.allclose(noisy.depth[both], clean.depth[both])
    finally:
        handle.close()
