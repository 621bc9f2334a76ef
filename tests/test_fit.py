"""`rtfm fit`: leave-one-out fitting of one world, saved beside it and loaded with it."""

import pytest

from rtfm_ros import PinholeCamera, WorldModel
from rtfm_ros.cli import main as cli
from rtfm_ros.render.fit import fit_world
from rtfm_ros.render.fit_file import FitError, fit_path, load_fit, save_fit

CAM = PinholeCamera.from_fov(64, 48, 80)


@pytest.fixture(scope="module")
def world_file(tmp_path_factory):
    """A world seeded from depthless views of a held-out room (stereo depth), saved to disk."""
    from rtfm_ros.sim.renderer import WorldRenderer
    from rtfm_ros.sim.trajectories import make_trajectory
    from rtfm_ros.sim.worlds import make_world

    world = make_world(1_000_911, "room")
    poses = make_trajectory(world, "loop", 16, 0).T_world_camera
    with WorldRenderer(world, CAM) as r:
        views = [r.render(T)[0] for T in poses]
    wm = WorldModel.load()
    wm.add_frames([(v, T, CAM) for v, T in zip(views, poses)])
    path = tmp_path_factory.mktemp("fit") / "room.rtfm"
    wm.save(path)
    return path


def test_fit_lowers_the_leave_one_out_loss_and_round_trips(world_file, tmp_path):
    wm = WorldModel.load(world=world_file)
    fit, report = fit_world(wm, steps=25, renderer_steps=0)
    assert report["last_loss"] < report["first_loss"]
    # kept only where the render that runs scores at least as well with it as with the defaults
    assert report["blend_kept"] == (report["blend_loo_psnr_fitted"] >= report["blend_loo_psnr_default"])
    assert fit.frames == len(wm.memory)
    out = save_fit(fit, tmp_path / "f.fit.safetensors")
    back = load_fit(out, len(wm.memory))
    assert abs(back.params.angle_sigma - fit.params.angle_sigma) < 1e-6
    with pytest.raises(FitError, match="fitted to"):
        load_fit(out, len(wm.memory) - 1)
    out.write_bytes(out.read_bytes()[:40])
    with pytest.raises(FitError, match="not a readable fit file"):
        load_fit(out, len(wm.memory))


def test_a_fitted_blend_that_renders_worse_is_not_kept(world_file, monkeypatch):
    """The fitted blend is checked by the render that runs on the same leave-one-out views: one
    that scores below the defaults is dropped (said in the report), the defaults are saved."""
    from rtfm_ros.render import fit as fit_module
    from rtfm_ros.render.fit_file import WorldFit
    from rtfm_ros.render.warp import BlendParams

    wm = WorldModel.load(world=world_file)
    bad = WorldFit(BlendParams(angle_sigma=1e-3, visibility_sigma=1e-3, rank_decay=0.01), len(wm.memory))
    monkeypatch.setattr(fit_module, "_fit_blend", lambda *args: (bad, {"frames": len(wm.memory)}))
    fit, report = fit_world(wm, steps=2, renderer_steps=0)
    assert report["blend_loo_psnr_fitted"] < report["blend_loo_psnr_default"] - 0.5, report
    assert not report["blend_kept"] and fit.params == BlendParams() and fit.frames == len(wm.memory)


def test_cli_fit_is_loaded_with_the_world(world_file):
    assert cli(["fit", str(world_file), "--steps", "3", "--renderer-steps", "2"]) == 0
    assert fit_path(world_file).is_file()
    wm = WorldModel.load(world=world_file)
    assert wm.fit is not None
    img = wm.render(wm.memory.pose(3), CAM, remember=False)
    assert img.shape == (48, 64, 3)
    assert WorldModel.load(world=world_file, fit=False).fit is None
    fit_path(world_file).write_text("not a fit")
    with pytest.raises(FitError):
        WorldModel.load(world=world_file)  # refused, not half-applied
    fit_path(world_file).unlink()


def test_fit_follows_its_world(world_file, tmp_path):
    """A working copy of a world (as the node and rtfm serve use) takes the fit beside the source;
    reset forgets it."""
    import shutil

    from rtfm_ros.render.fit import fit_world

    wm = WorldModel.load(world=world_file)
    fit, _ = fit_world(wm, steps=2, renderer_steps=0)
    save_fit(fit, fit_path(world_file))
    copy = tmp_path / "copy.rtfm"
    shutil.copy(world_file, copy)
    other = WorldModel.load(world=copy)
    assert other.fit is None and other.load_fit_beside(world_file) and other.fit is not None
    other.reset()
    assert other.fit is None
    fit_path(world_file).unlink()


def test_fit_adapts_the_learned_renderer_to_the_world(world_file, tmp_path):
    """The learned renderer fine-tuned on the world's own leave-one-out views does better on them,
    travels in the fit file and is what the world's views go through."""
    wm = WorldModel.load(world=world_file)
    assert wm.core.learned_renderer is not None
    fit, report = fit_world(wm, steps=2, renderer_steps=50)
    assert fit.renderer is not None
    assert report["renderer_held_back"] == 4  # every 4th of the 16 frames chooses the step
    assert report["renderer_best_step"] > 0, report  # a step beat the core's weights on them
    assert report["renderer_loo_psnr_after"] > report["renderer_loo_psnr_before"]
    out = save_fit(fit, tmp_path / "r.fit.safetensors")
    back = load_fit(out, len(wm.memory))
    assert back.renderer is not None
    assert all(bool((a == b).all()) for a, b in zip(fit.renderer.state_dict().values(),
                                                    back.renderer.state_dict().values()))
    T = wm.memory.pose(5)
    T = T.copy()
    T[:3, 3] += 0.05
    plain = wm.render(T, CAM, remember=False)
    wm.fit = back
    adapted = wm.render(T, CAM, remember=False)
    assert (plain != adapted).any()


def test_a_world_too_small_to_check_the_adaptation_keeps_the_core_renderer():
    """With fewer than 8 real frames none can be held back to choose the adapted weights, so the
    blend is fitted and the learned renderer is left as the core's (said in the report)."""
    from rtfm_ros.sim.renderer import WorldRenderer
    from rtfm_ros.sim.trajectories import make_trajectory
    from rtfm_ros.sim.worlds import make_world

    poses = make_trajectory(make_world(1_000_912, "room"), "loop", 6, 0).T_world_camera
    with WorldRenderer(make_world(1_000_912, "room"), CAM) as r:
        views = [r.render(T)[0] for T in poses]
    wm = WorldModel.load()
    wm.add_frames([(v, T, CAM) for v, T in zip(views, poses)])
    fit, report = fit_world(wm, steps=2, renderer_steps=50)
    assert fit.renderer is None and "renderer_steps" not in report
    assert "none can be held back" in report["renderer_skipped"]
