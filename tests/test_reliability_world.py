"""WorldModel under bad input: poses beyond what a world holds, empty batches, the pixel budget,
and rendering that survives a memory that cannot store the view."""

import numpy as np
import pytest

from rtfm_ros import PinholeCamera, WorldModel
from rtfm_ros.geometry import GeometryError, look_at
from rtfm_ros.memory import FrameMemory

CAM = PinholeCamera.from_fov(64, 64, 60.0)


@pytest.fixture(scope="module")
def world():
    wm = WorldModel.load(device="cpu")
    rng = np.random.default_rng(0)
    for k in range(3):
        wm.add_frame(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8), look_at([0.2 * k, 0, 0], [0.2 * k, 1, 0]), CAM,
                     depth=np.full((64, 64), 2.0, np.float32))
    return wm


@pytest.mark.parametrize("x", [3.5e38, -1e39, 1e300, 1.0000001e7])
def test_poses_beyond_what_a_world_holds_get_a_geometry_error(world, x):
    T = look_at([0, 0, 0], [0, 1, 0])
    T[0, 3] = x
    n = len(world.memory)
    with pytest.raises(GeometryError, match="beyond"):
        world.render(T, CAM)
    with pytest.raises(GeometryError, match="beyond"):
        world.add_frame(np.zeros((64, 64, 3), np.uint8), T, CAM)
    assert len(world.memory) == n
    assert world.render(look_at([0.1, 0, 0], [0.1, 1, 0]), CAM, remember=False).shape == (64, 64, 3)


def test_empty_batches_and_oversized_calls_are_refused_at_once(world, monkeypatch):
    import rtfm_ros.world

    def no_render(*_args, **_kwargs):
        raise AssertionError("rendered before refusing")

    monkeypatch.setattr(rtfm_ros.world, "render_views", no_render)  # refused before anything renders
    with pytest.raises(GeometryError, match="no poses"):
        world.render_batch(np.zeros((0, 4, 4)), CAM)
    with pytest.raises(GeometryError, match="more than"):
        world.render(look_at([0, 0, 0], [0, 1, 0]), PinholeCamera.from_fov(4096, 4096, 60.0))
    with pytest.raises(GeometryError, match="more than"):
        world.render_batch(np.stack([look_at([0, 0, 0], [0, 1, 0])] * 40), PinholeCamera.from_fov(512, 512, 60.0))


def test_a_failed_remember_keeps_the_rendered_view(world, tmp_path):
    path = tmp_path / "w.rtfm"
    world.save(path)
    readonly = world.with_memory(FrameMemory.open(path, writable=False))
    n, before = len(readonly.memory), readonly.remember_failures
    img = readonly.render(look_at([5.0, 5.0, 0], [5.0, 6.0, 0]), CAM)  # a new place: would be remembered
    assert img.shape == (64, 64, 3) and img.dtype == np.uint8
    assert len(readonly.memory) == n and readonly.remember_failures == before + 1
