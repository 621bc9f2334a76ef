"""Training: the loss falls on a fixed batch; runs save, resume and evaluate."""

import json

import numpy as np
import pytest
import torch

from rtfm_ros.data.clips import Clip, write_dataset
from rtfm_ros.geometry import PinholeCamera
from rtfm_ros.learn.checkpoint import load_checkpoint
from rtfm_ros.learn.config import ModelConfig
from rtfm_ros.learn.examples import ClipExamples, ExampleConfig, collate, sample_example
from rtfm_ros.learn.network import FrameRenderer
from rtfm_ros.learn.train import TrainConfig, compute_loss, lr_at, train

SMALL = ModelConfig(name="test", image_size=32, patch=8, dim=64, heads=4, enc_layers=1, dec_layers=2, context=3)


def sim_clip(seed: int, frames: int = 16, res: int = 32) -> Clip:
    from rtfm_ros.sim.renderer import WorldRenderer
    from rtfm_ros.sim.trajectories import make_trajectory
    from rtfm_ros.sim.worlds import make_world

    world = make_world(seed, "room")
    cam = PinholeCamera.from_fov(res, res, 90)
    traj = make_trajectory(world, "ground_robot", frames, seed)
    with WorldRenderer(world, cam) as r:
        views = [r.render(T) for T in traj.T_world_camera]
    return Clip(rgb=np.stack([v[0] for v in views]), depth=np.stack([v[1] for v in views]),
                T_world_camera=traj.T_world_camera, K=np.repeat(cam.K[None], frames, 0), stamps=traj.stamps,
                meta={"seed": seed})


@pytest.fixture(scope="module")
def clips():
    return [sim_clip(3), sim_clip(4)]


def test_examples_follow_the_cases(clips):
    cfg = ExampleConfig(context=3)
    rng = np.random.default_rng(0)
    seen = set()
    for _ in range(30):
        ex = sample_example(clips[0], rng, cfg)
        assert ex["ctx_rgb"].shape == (3, 32, 32, 3) and ex["tgt_rgb"].shape == (32, 32, 3)
        seen.add(int(ex["case"]))
        if int(ex["case"]) == 2:  # identity: the target is one of the context frames
            assert any(np.array_equal(c, ex["tgt_rgb"]) for c in ex["ctx_rgb"])
    assert seen == {0, 1, 2}
    data = ClipExamples(clips, cfg, seed=5)
    a, b = data[7], data[7]
    assert all(np.array_equal(a[k], b[k]) for k in a)  # deterministic per index


def test_loss_falls_on_a_fixed_batch(clips):
    torch.manual_seed(0)
    model = FrameRenderer(SMALL)
    batch = collate([ClipExamples(clips, ExampleConfig(context=3), seed=1)[i] for i in range(8)])
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3)
    losses = []
    for _ in range(40):
        loss, _ = compute_loss(model, batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert np.isfinite(losses).all()
    assert np.mean(losses[-5:]) < 0.6 * np.mean(losses[:3]), losses


def test_identity_splat_starts_exact(clips):
    """An untrained model already copies a context frame rendered at its own pose (zero-initialised head)."""
    model = FrameRenderer(SMALL).eval()
    config = ExampleConfig(context=3, case_weights=(0, 0, 1))
    batch = collate([sample_example(clips[0], np.random.default_rng(i), config) for i in range(4)])
    with torch.no_grad():
        out, _ = model(batch["ctx_rgb"], batch["ctx_depth"], batch["ctx_K"], batch["ctx_T"], batch["tgt_K"],
                       batch["tgt_T"], 32, 32, depth_known=batch["depth_known"])
    err = (out.rgb.clamp(0, 1) - batch["tgt_rgb"]).abs()
    assert float(err.mean()) < 0.02


def test_schedule():
    cfg = TrainConfig(data="x", steps=1000, warmup=100, lr=1e-3, min_lr_ratio=0.1)
    assert lr_at(0, cfg) == pytest.approx(1e-5)
    assert lr_at(99, cfg) == pytest.approx(1e-3)
    assert lr_at(999, cfg) == pytest.approx(1e-4, rel=1e-3)
    assert lr_at(550, cfg) < lr_at(200, cfg)


def test_train_saves_resumes_and_evaluates(clips, tmp_path, monkeypatch):
    data = write_dataset(tmp_path / "data", clips, info={"test": True})
    monkeypatch.setattr("rtfm_ros.learn.train.preset", lambda name: SMALL)
    cfg = TrainConfig(data=str(data), eval_data=str(data), out=str(tmp_path / "run"), steps=6, batch_size=2,
                      warmup=2, eval_every=3, save_every=3, eval_examples=4, amp="off",
                      examples=ExampleConfig(context=3))
    state = train(cfg)
    assert state["step"] == 6
    run = tmp_path / "run"
    assert (run / "last" / "model.safetensors").exists() and (run / "best" / "config.json").exists()
    model, meta = load_checkpoint(run / "last")
    assert meta["info"]["step"] == 6
    evals = [json.loads(line) for line in (run / "eval.jsonl").read_text().splitlines()]
    assert [e["step"] for e in evals] == [3, 6] and all(np.isfinite(e["psnr_interpolation"]) for e in evals)
    # resume: more steps continue from step 6, not from scratch
    cfg.steps = 9
    state = train(cfg)
    assert state["step"] == 9
    rows = (run / "log.csv").read_text().splitlines()
    assert rows[0].startswith("step,")


def test_photometric_augmentation_changes_only_context_colours():
    """--photometric: context frames look as if another camera took them; poses, depth and the
    target are untouched, and 0 leaves the example exactly as before."""
    from rtfm_ros.data.clips import Clip
    from rtfm_ros.geometry import PinholeCamera, look_at
    from rtfm_ros.learn.examples import ExampleConfig, sample_example

    cam = PinholeCamera.from_fov(16, 16, 90)
    poses = np.stack([look_at([0.1 * i, 0, 1], [0.1 * i + 3, 0, 1]) for i in range(6)])
    rgb = (np.random.default_rng(0).random((6, 16, 16, 3)) * 255).astype(np.uint8)
    clip = Clip(rgb=rgb, T_world_camera=poses, K=np.repeat(cam.K[None], 6, 0), stamps=np.arange(6.0),
                depth=np.full((6, 16, 16), 2.0, np.float32), meta={})
    plain = sample_example(clip, np.random.default_rng(5), ExampleConfig(photometric=0.0))
    again = sample_example(clip, np.random.default_rng(5), ExampleConfig(photometric=0.0))
    aug = sample_example(clip, np.random.default_rng(5), ExampleConfig(photometric=1.0))
    assert np.array_equal(plain["ctx_rgb"], again["ctx_rgb"])
    assert not np.array_equal(plain["ctx_rgb"], aug["ctx_rgb"]) and aug["ctx_rgb"].dtype == np.uint8
    for key in ("ctx_depth", "ctx_T", "ctx_K", "tgt_rgb"):
        assert np.array_equal(plain[key], aug[key]), key
