"""The world/network split: worlds share one RenderNetwork and its prepared-frame cache, own
their memory for life, and batch across worlds exactly as each renders alone."""

from __future__ import annotations

import numpy as np
import pytest

from rtfm_ros.envs.batching import render_many
from rtfm_ros.geometry import PinholeCamera, make_transform
from rtfm_ros.learn.config import preset
from rtfm_ros.learn.network import FrameRenderer
from rtfm_ros.memory import FrameMemory
from rtfm_ros.render import warp
from rtfm_ros.render.cache import PreparedCache, RenderNetwork
from rtfm_ros.render.fit_file import WorldFit
from rtfm_ros.world import WorldModel, render_views

CAM = PinholeCamera.from_fov(32, 24, 70.0)


def _image(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (CAM.height, CAM.width, 3), dtype=np.uint8)


def _pose(x: float) -> np.ndarray:
    return make_transform(None, [x, 0.0, 0.0])


@pytest.fixture(scope="module")
def network() -> RenderNetwork:
    return RenderNetwork(FrameRenderer(preset("tiny")), device="cpu")


def _world(network: RenderNetwork, seed: int) -> WorldModel:
    wm = WorldModel(network)
    depth = np.full((CAM.height, CAM.width), 2.0, np.float32)  # sensor depth: no stereo cost here
    for k, x in enumerate((0.0, 0.2)):
        wm.add_frame(_image(seed + k), _pose(x), CAM, depth=depth)
    return wm


def test_worlds_share_the_network_and_own_their_memory(network: RenderNetwork) -> None:
    a = _world(network, 0)
    b = a.with_memory(FrameMemory())
    assert b.network is a.network and b.model is a.model and b.memory is not a.memory
    assert (b.context_size, b.max_frame_side, b.use_stereo) == (a.context_size, a.max_frame_side, a.use_stereo)
    with pytest.raises(AttributeError):
        a.memory = FrameMemory()  # type: ignore[misc]  # another memory is another world
    with pytest.raises(ValueError, match="fit is for 5 frames"):
        a.with_memory(FrameMemory(), fit=WorldFit(warp.BlendParams(), 5))


def test_prepared_frames_live_in_the_network_cache_per_world(network: RenderNetwork) -> None:
    before = len(network.cache)
    a, b = _world(network, 10), _world(network, 20)
    a.render(_pose(0.1), CAM, remember=False)
    assert len(network.cache) == before + 4  # two frames each, cached once
    a.reset()
    assert len(network.cache) == before + 2 and len(a.memory) == 0
    del b  # a world that is gone takes its prepared frames with it
    import gc

    gc.collect()
    assert len(network.cache) == before


def test_batching_across_worlds_matches_each_alone(network: RenderNetwork) -> None:
    worlds = [_world(network, s) for s in (30, 40, 50)]
    worlds[1].fit = WorldFit(warp.BlendParams(rank_decay=0.3), len(worlds[1].memory))  # its own blend
    poses = np.stack([_pose(0.05), _pose(0.1), _pose(0.15)])
    together = render_many(worlds, poses, CAM)
    for wm, T, img in zip(worlds, poses, together):
        np.testing.assert_array_equal(img, wm.render(T, CAM, remember=False))
    other = _world(RenderNetwork(FrameRenderer(preset("tiny")), device="cpu"), 30)
    with pytest.raises(ValueError, match="share one network"):
        render_views([(worlds[0], poses[0], CAM), (other, poses[0], CAM)])
    np.testing.assert_array_equal(render_many([worlds[0], other], poses[:2], CAM)[1],
                                  other.render(poses[1], CAM, remember=False))


def test_cache_budget_drops_least_recently_used(network: RenderNetwork) -> None:
    wm = _world(network, 60)
    p0 = wm.prepare(0)
    cache = PreparedCache(budget_bytes=p0.nbytes + p0.nbytes // 2)
    cache.put((7, 0), p0)
    cache.put((7, 1), wm.prepare(1))
    assert cache.get((7, 0)) is None and cache.get((7, 1)) is not None and cache.nbytes <= cache.budget_bytes
    with pytest.raises(ValueError):
        PreparedCache(budget_bytes=-1)


def test_recency_is_insertion_order_not_stamps(network: RenderNetwork) -> None:
    """Stamps from different clocks (wall clock, sim time) are never compared: among frames at
    the same place, the one added last comes first."""
    wm = WorldModel(network)
    T = _pose(0.0)
    first = wm.add_frame(_image(70), T, CAM, stamp=1.8e9)  # wall clock
    later = wm.add_frame(_image(71), T, CAM, stamp=5.0)    # sim time, added later
    assert wm.memory.select_context(T, CAM, 2) == [later, first]


def test_ram_budget_bounds_the_prepared_frames_too() -> None:
    wm = WorldModel.load(device="cpu", ram_budget_bytes=50_000)
    depth = np.full((CAM.height, CAM.width), 2.0, np.float32)
    for k in range(8):
        wm.add_frame(_image(80 + k), _pose(0.1 * k), CAM, depth=depth)
    wm.render(_pose(0.35), CAM, remember=False)
    assert wm.network.cache.budget_bytes == 50_000 and 0 < wm.network.cache.nbytes <= 50_000
