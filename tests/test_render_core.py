"""The world/core split: worlds share one RenderCore and its prepared-frame cache, own
their memory for life, and batch across worlds exactly as each renders alone."""

from __future__ import annotations

import numpy as np
import pytest

from rtfm_ros.envs.batching import render_many
from rtfm_ros.geometry import PinholeCamera, make_transform
from rtfm_ros.learn.config import preset
from rtfm_ros.learn.depth_prior import DepthPrior
from rtfm_ros.memory import FrameMemory
from rtfm_ros.render import warp
from rtfm_ros.render.cache import PreparedCache, RenderCore
from rtfm_ros.render.fit_file import WorldFit
from rtfm_ros.world import WorldModel, render_views

CAM = PinholeCamera.from_fov(32, 24, 70.0)


def _image(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (CAM.height, CAM.width, 3), dtype=np.uint8)


def _pose(x: float) -> np.ndarray:
    return make_transform(None, [x, 0.0, 0.0])


@pytest.fixture(scope="module")
def core() -> RenderCore:
    return RenderCore(DepthPrior(preset("tiny")), device="cpu")


def _world(core: RenderCore, seed: int) -> WorldModel:
    wm = WorldModel(core)
    depth = np.full((CAM.height, CAM.width), 2.0, np.float32)  # sensor depth: no stereo cost here
    for k, x in enumerate((0.0, 0.2)):
        wm.add_frame(_image(seed + k), _pose(x), CAM, depth=depth)
    return wm


def test_worlds_share_the_network_and_own_their_memory(core: RenderCore) -> None:
    a = _world(core, 0)
    b = a.with_memory(FrameMemory())
    assert b.core is a.core and b.core.depth_prior is a.core.depth_prior and b.memory is not a.memory
    assert b.config == a.config
    with pytest.raises(AttributeError):
        a.memory = FrameMemory()  # type: ignore[misc]  # another memory is another world
    with pytest.raises(ValueError, match="fit is for 5 frames"):
        a.with_memory(FrameMemory(), fit=WorldFit(warp.BlendParams(), 5))


def test_prepared_frames_live_in_the_network_cache_per_world(core: RenderCore) -> None:
    before = len(core.cache)
    a, b = _world(core, 10), _world(core, 20)
    a.render(_pose(0.1), CAM, remember=False)
    assert len(core.cache) == before + 4  # two frames each, cached once
    a.reset()
    assert len(core.cache) == before + 2 and len(a.memory) == 0
    del b  # a world that is gone takes its prepared frames with it
    import gc

    gc.collect()
    assert len(core.cache) == before


def test_batching_across_worlds_matches_each_alone(core: RenderCore) -> None:
    worlds = [_world(core, s) for s in (30, 40, 50)]
    worlds[1].fit = WorldFit(warp.BlendParams(rank_decay=0.3), len(worlds[1].memory))  # its own blend
    poses = np.stack([_pose(0.05), _pose(0.1), _pose(0.15)])
    together = render_many(worlds, poses, CAM)
    for wm, T, img in zip(worlds, poses, together):
        np.testing.assert_array_equal(img, wm.render(T, CAM, remember=False))
    other = _world(RenderCore(DepthPrior(preset("tiny")), device="cpu"), 30)
    with pytest.raises(ValueError, match="share one render core"):
        render_views([(worlds[0], poses[0], CAM), (other, poses[0], CAM)])
    np.testing.assert_array_equal(render_many([worlds[0], other], poses[:2], CAM)[1],
                                  other.render(poses[1], CAM, remember=False))


def test_cache_budget_drops_least_recently_used(core: RenderCore) -> None:
    wm = _world(core, 60)
    p0 = wm.prepare(0)
    cache = PreparedCache(budget_bytes=p0.nbytes + p0.nbytes // 2)
    cache.put((7, 0), p0)
    cache.put((7, 1), wm.prepare(1))
    assert cache.get((7, 0)) is None and cache.get((7, 1)) is not None and cache.nbytes <= cache.budget_bytes
    with pytest.raises(ValueError):
        PreparedCache(budget_bytes=-1)


def test_recency_is_insertion_order_not_stamps(core: RenderCore) -> None:
    """Stamps from different clocks (wall clock, sim time) are never compared: among frames at
    the same place, the one added last comes first."""
    wm = WorldModel(core)
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
    assert wm.core.cache.budget_bytes == 50_000 and 0 < wm.core.cache.nbytes <= 50_000


def test_render_config_is_checked_and_frozen(core: RenderCore) -> None:
    import dataclasses

    from rtfm_ros.render.config import RenderConfig, RenderConfigError

    for bad in ({"context_size": 0}, {"context_size": 65}, {"context_size": 4.0}, {"max_frame_side": 4},
                {"use_prior": 1}, {"max_depth": float("nan")}, {"depth_range": (0.6, 0.5)},
                {"depth_range": (0.0, 1.0)}):
        with pytest.raises(RenderConfigError, match=next(iter(bad))):
            RenderConfig(**bad)  # type: ignore[arg-type]
    config = RenderConfig(context_size=2, use_prior=False)
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.context_size = 3  # type: ignore[misc]
    wm = WorldModel(core, config=config)
    assert wm.config is config and wm.with_memory(FrameMemory()).config is config
    with pytest.raises(TypeError, match="RenderConfig"):
        WorldModel(core, config={"context_size": 2})  # type: ignore[arg-type]


def test_batched_renders_across_worlds_get_every_check_a_single_render_gets(core: RenderCore) -> None:
    """render_many goes through the facade's checks: the position bound, the pixel budget, empty worlds."""
    import dataclasses

    from rtfm_ros.geometry import MAX_POSITION_M, GeometryError
    from rtfm_ros.world import EmptyWorldError

    a, b = _world(core, 0), _world(core, 10)
    far = _pose(2 * MAX_POSITION_M)
    with pytest.raises(GeometryError, match="beyond"):
        render_many([a, b], np.stack([_pose(0.1), far]), CAM)
    small = WorldModel(core, a.memory, config=dataclasses.replace(a.config, max_view_pixels=CAM.width * CAM.height - 1))
    with pytest.raises(GeometryError, match="pixels"):
        render_many([small, b], np.stack([_pose(0.1), _pose(0.1)]), CAM)
    with pytest.raises(EmptyWorldError):
        render_many([a, WorldModel(core)], np.stack([_pose(0.1), _pose(0.1)]), CAM)
    assert render_many([a, b], np.stack([_pose(0.1), _pose(0.1)]), CAM).shape == (2, CAM.height, CAM.width, 3)
