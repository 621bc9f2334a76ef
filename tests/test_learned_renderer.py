"""The learned renderer earns its place: on held-out procedural worlds seeded without depth (its
inputs come from the product's own stereo), the bundled weights beat the same pipeline with
the learned renderer off; an untrained network renders what the pipeline renders; its weights
file is refused when it is not one."""

import dataclasses

import numpy as np
import pytest

from rtfm_ros import PinholeCamera, WorldModel
from rtfm_ros.evaluate.metrics import psnr
from rtfm_ros.render.learned import LearnedRenderer, load_weights, save_weights

# Measured on these two worlds with the bundled weights: 29.12 dB with the learned renderer,
# 26.27 without (+2.85; the mean is dominated by three extrapolation targets that see almost
# nothing, where the network's colour correction decides). The check asks for about a third of
# that, so it fails when the weights or the inputs they were trained on regress, not on noise.
MIN_GAIN_DB = 1.0
CAM = PinholeCamera.from_fov(96, 72, 70)


@pytest.fixture(scope="module")
def worlds():
    """Two held-out worlds: seed frames (every 3rd of a loop) and targets between and beyond them."""
    from rtfm_ros.sim.renderer import WorldRenderer
    from rtfm_ros.sim.targets import view_targets
    from rtfm_ros.sim.trajectories import make_trajectory
    from rtfm_ros.sim.worlds import make_world

    out = []
    for seed in (1_000_921, 1_000_922):
        world = make_world(seed, "room" if seed % 2 else "multiroom")
        traj = make_trajectory(world, "loop", 36, seed=0).T_world_camera
        targets, _ = view_targets(world, traj, np.random.default_rng(seed), 24)
        seeds = traj[:24:3]
        with WorldRenderer(world, CAM) as r:
            out.append(([r.render(T)[0] for T in seeds], seeds, [r.render(T)[0] for T in targets[:8]], targets[:8]))
    return out


def _scores(wm: WorldModel, worlds) -> float:
    from rtfm_ros.memory import FrameMemory

    scores = []
    for seed_rgb, seed_T, truth, targets in worlds:
        w = wm.with_memory(FrameMemory())
        w.add_frames([(im, T, CAM) for im, T in zip(seed_rgb, seed_T)])
        scores += [psnr(w.render(T, CAM, remember=False), y) for T, y in zip(targets, truth)]
    return float(np.mean(scores))


def test_bundled_learned_renderer_beats_the_pipeline_without_it(worlds):
    model = WorldModel.load()
    assert model.core.learned_renderer is not None, "the bundled checkpoint ships a learned renderer"
    off = WorldModel(model.core, config=dataclasses.replace(model.config, use_learned=False))
    with_it, without = _scores(model, worlds), _scores(off, worlds)
    assert with_it >= without + MIN_GAIN_DB, (with_it, without)


def test_untrained_network_renders_what_the_pipeline_renders(worlds):
    model = WorldModel.load()
    model.core.learned_renderer = LearnedRenderer().eval()
    off = WorldModel(model.core, config=dataclasses.replace(model.config, use_learned=False))
    seed_rgb, seed_T, truth, targets = worlds[0]
    model.add_frames([(im, T, CAM) for im, T in zip(seed_rgb, seed_T)])
    off.add_frames([(im, T, CAM) for im, T in zip(seed_rgb, seed_T)])
    assert psnr(model.render(targets[0], CAM, remember=False), off.render(targets[0], CAM, remember=False)) > 45


def test_weights_file_round_trip_and_refusal(tmp_path):
    net = LearnedRenderer()
    save_weights(net, tmp_path / "r.safetensors")
    back = load_weights(tmp_path / "r.safetensors")
    assert all(bool((a == b).all()) for a, b in zip(net.state_dict().values(), back.state_dict().values()))
    (tmp_path / "bad.safetensors").write_bytes((tmp_path / "r.safetensors").read_bytes()[:300])
    with pytest.raises(ValueError, match="bad.safetensors"):
        load_weights(tmp_path / "bad.safetensors")
    flipped = bytearray((tmp_path / "r.safetensors").read_bytes())
    flipped[-7] ^= 0x10  # one bit in the last tensor's data
    (tmp_path / "flip.safetensors").write_bytes(bytes(flipped))
    with pytest.raises(ValueError, match="checksum"):
        load_weights(tmp_path / "flip.safetensors")


def test_the_network_renders_at_a_quarter_and_keeps_its_gain(worlds):
    """Trained at half the view's resolution, the network decides at a quarter when rendering
    (RENDER_SCALE: a third of its cost): it still gains most of what it gains at half resolution
    over the geometric render."""
    import torch

    from rtfm_ros.memory import FrameMemory
    from rtfm_ros.render.learned import RENDER_SCALE, TRAIN_SCALE
    from rtfm_ros.render.views import learned_inputs
    from rtfm_ros.sim.renderer import WorldRenderer
    from rtfm_ros.sim.worlds import make_world

    big = PinholeCamera.from_fov(448, 336, 70)
    assert (TRAIN_SCALE, RENDER_SCALE) == (2, 4)
    model = WorldModel.load()
    net = model.core.learned_renderer
    seed_rgb, seed_T, _, targets = worlds[0]
    w = model.with_memory(FrameMemory())
    w.add_frames([(im, T, CAM) for im, T in zip(seed_rgb, seed_T)])
    with WorldRenderer(make_world(1_000_921, "room"), big) as r:
        truth = [r.render(T)[0] for T in targets[:3]]
    score = {"geometric": [], 2: [], 4: []}
    for T, y in zip(targets[:3], truth):
        planes, geo = learned_inputs([(w, T, big)], frozenset())
        score["geometric"].append(psnr((geo[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8), y))
        for scale in (2, 4):
            with torch.no_grad():
                out = net(planes, scale).clamp(0, 1)[0]
            assert out.shape == (3, big.height, big.width)
            score[scale].append(psnr((out.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8), y))
    geo, half, quarter = (float(np.mean(score[k])) for k in ("geometric", 2, 4))
    assert half > geo and quarter - geo >= 0.6 * (half - geo), (geo, half, quarter)
    assert w.render(targets[0], big, remember=False).shape == (big.height, big.width, 3)
