"""The learned renderer's training examples: the round-trip pair builder, leave-one-out on posed
photos, and the example files (refused when they are not one)."""

import numpy as np
import pytest

from rtfm_ros import PinholeCamera, WorldModel
from rtfm_ros.evaluate.metrics import psnr
from rtfm_ros.learn.renderer_data import (
    load_example,
    photo_examples,
    procedural_examples,
    round_trip_example,
    save_example,
    sensor_noise,
)
from rtfm_ros.render.learned import IN_CHANNELS, SLOT_PLANES, SLOTS

SEEN = SLOTS * SLOT_PLANES + 3  # the geometric render's "seen" plane


@pytest.fixture(scope="module")
def photos():
    from rtfm_ros.sim.renderer import WorldRenderer
    from rtfm_ros.sim.trajectories import make_trajectory
    from rtfm_ros.sim.worlds import make_world

    cam = PinholeCamera.from_fov(96, 72, 70)
    world = make_world(1_000_913, "room")
    poses = make_trajectory(world, "loop", 16, 0).T_world_camera[::3]
    with WorldRenderer(world, cam) as r:
        return cam, poses, [r.render(T) for T in poses]


@pytest.fixture(scope="module")
def base():
    return WorldModel.load()


def test_round_trip_gives_the_photo_as_target_and_the_round_trip_as_input(photos, base):
    cam, poses, views = photos
    rgb, depth = views[0]
    ex = round_trip_example(base, rgb, cam, poses[0], depth, np.random.default_rng(3), width=96)
    assert ex is not None
    assert np.array_equal(ex.target, rgb)  # same size: the crop is the photo itself
    assert ex.planes.shape == (IN_CHANNELS, 72, 96)
    # The way back loses what the moved view did not see, and resampling twice blurs the rest.
    unseen = 1 - float(ex.planes[SEEN].mean())
    assert 0.0 < unseen < 0.6
    assert 12 < psnr(ex.geometric, rgb) < 40
    # Without depth to move with, there is no round trip.
    assert round_trip_example(base, rgb, cam, poses[0], np.full_like(depth, np.nan), np.random.default_rng(3)) is None


def test_leave_one_out_never_sees_its_target(photos, base):
    cam, poses, views = photos
    rgbs = [v[0] for v in views]
    exs = list(photo_examples(base, rgbs, [cam] * len(rgbs), poses, width=96, round_trips=0))
    loo = [e for e in exs if e.source.endswith(":loo")]
    assert len(loo) == len(rgbs) and len(exs) == 2 * len(rgbs)  # + leave-two-out with >= 3 others
    for j, e in enumerate(loo):
        assert np.array_equal(e.target, rgbs[j])
        # The target's own frame at its own pose would give it back almost exactly; kept out, it cannot.
        assert psnr(e.geometric, rgbs[j]) < 40


def test_sparse_worlds_render_photos_they_do_not_hold(photos, base):
    cam, poses, views = photos
    rgbs = [v[0] for v in views]
    exs = list(photo_examples(base, rgbs, [cam] * len(rgbs), poses, width=96, round_trips=0, sparse_worlds=2))
    sparse = [e for e in exs if ":sparse" in e.source]
    assert len(exs) == 2 * len(rgbs) + len(sparse)  # after leave-one-out and leave-two-out
    # 6 photos: each world holds 2-4 of them (35-60 %) and renders the 2-4 others
    assert 4 <= len(sparse) <= 8 and {e.source.rsplit(":", 1)[1] for e in sparse} == {"sparse0", "sparse1"}
    for e in sparse:
        j = int(e.source.split(":")[1])
        assert np.array_equal(e.target, rgbs[j])
        assert psnr(e.geometric, rgbs[j]) < 40  # not in its world: it cannot come back exactly
    # the same seed gives the same worlds; too few photos give none
    again = [e.source for e in photo_examples(base, rgbs, [cam] * len(rgbs), poses, width=96, round_trips=0,
                                               sparse_worlds=2) if ":sparse" in e.source]
    assert again == [e.source for e in sparse]
    assert not [e for e in photo_examples(base, rgbs[:2], [cam] * 2, poses[:2], width=96, round_trips=0,
                                          sparse_worlds=2) if ":sparse" in e.source]


def test_example_files_round_trip_and_refuse_what_is_not_one(photos, base, tmp_path):
    cam, poses, views = photos
    ex = round_trip_example(base, views[1][0], cam, poses[1], views[1][1], np.random.default_rng(0), width=96)
    assert ex is not None
    path = tmp_path / "a.safetensors"
    save_example(ex, path)
    back = load_example(path)
    assert np.array_equal(back.target, ex.target) and np.array_equal(back.geometric, ex.geometric)
    assert float((back.planes - ex.planes).abs().max()) < 1e-2  # stored as float16
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(path.read_bytes()[:200])
    with pytest.raises(ValueError, match="bad.safetensors"):
        load_example(bad)
    import torch
    from safetensors.torch import save_file

    save_file({"planes": torch.zeros(3, 4, 4)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(ValueError, match="not a renderer example"):
        load_example(tmp_path / "other.safetensors")


def test_depth_worlds_are_seeded_with_their_depth_exact_or_measured(base):
    kinds = {seed: sensor_noise(seed) for seed in range(1000, 1020)}
    assert sensor_noise(1003) == kinds[1003]  # drawn from the seed: the same on every run
    assert any(n is None for n in kinds.values()) and any(n is not None for n in kinds.values())
    seed = next(s for s, n in kinds.items() if n is None)
    plain = list(procedural_examples(base, seed, size=(64, 48)))
    exact = list(procedural_examples(base, seed, size=(64, 48), with_depth=True))
    assert len(plain) == len(exact) and all(e.source.endswith(":exact-depth") for e in exact)
    assert not any(p.source.endswith("-depth") for p in plain)
    for p, e in zip(plain, exact):
        np.testing.assert_array_equal(p.target, e.target)  # the same views of the same world
    # with its exact depth the geometry renders the views better than from its own stereo
    assert np.mean([psnr(e.geometric, e.target) for e in exact]) > np.mean([psnr(p.geometric, p.target) for p in plain])
    seed = next(s for s, n in kinds.items() if n is not None)
    assert all(e.source.endswith(":sensor-depth") for e in procedural_examples(base, seed, size=(64, 48),
                                                                                with_depth=True))


def test_photo_sets_with_depth_maps_seed_their_worlds_with_them(photos, base):
    cam, poses, views = photos
    rgbs, depths = [v[0] for v in views], [v[1] for v in views]

    def loo_psnr(given):
        exs = photo_examples(base, rgbs, [cam] * len(rgbs), poses, width=96, round_trips=0, depths=given)
        return np.mean([psnr(e.geometric, e.target) for e in exs if e.source.endswith(":loo")])

    # the depth given is the depth used: the same photos with their depth halved render far worse
    assert loo_psnr(depths) > loo_psnr([0.5 * d for d in depths]) + 3
