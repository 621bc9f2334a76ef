"""Training: the loss falls on a fixed batch; runs save, resume and evaluate."""

import dataclasses
import json

import numpy as np
import pytest
import torch

from rtfm_ros.data.clips import Clip, write_dataset
from rtfm_ros.geometry import PinholeCamera
from rtfm_ros.learn.checkpoint import load_checkpoint
from rtfm_ros.learn.config import DepthPriorConfig
from rtfm_ros.learn.depth_prior import DepthPrior
from rtfm_ros.learn.examples import ExampleConfig, FrameExamples, collate, sample_example
from rtfm_ros.learn.train import TrainConfig, compute_loss, evaluate_examples, lr_at, train

SMALL = DepthPriorConfig(name="test", image_size=32, patch=8, dim=64, heads=4, layers=1)


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


def test_examples_are_frames_with_depth(clips):
    data = FrameExamples(clips, ExampleConfig(), seed=5)
    a, b = data[7], data[7]
    assert all(np.array_equal(a[k], b[k]) for k in a)  # deterministic per index
    assert a["rgb"].shape == (32, 32, 3) and a["K"].shape == (3, 3) and a["depth"].shape == (32, 32)
    assert any(np.array_equal(a["rgb"], c.rgb[i]) and np.array_equal(a["depth"], c.depth[i])
               for c in clips for i in range(len(c.rgb)))  # one frame of one clip, with its own depth
    depthless = Clip(rgb=clips[0].rgb, T_world_camera=clips[0].T_world_camera, K=clips[0].K,
                     stamps=clips[0].stamps, meta={})
    with pytest.raises(ValueError, match="no clips with depth"):
        FrameExamples([depthless], ExampleConfig())
    batch = collate([data[i] for i in range(3)])
    assert batch["rgb"].shape == (3, 3, 32, 32) and float(batch["rgb"].max()) <= 1.0
    assert batch["K"].shape == (3, 3, 3) and batch["depth"].shape == (3, 32, 32)


def test_loss_falls_on_a_fixed_batch(clips):
    torch.manual_seed(0)
    model = DepthPrior(SMALL)
    batch = collate([FrameExamples(clips, ExampleConfig(), seed=1)[i] for i in range(8)])
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


def test_held_out_depth_error_is_zero_for_the_truth(clips):
    """evaluate_examples scores depth: a prior that predicts the true depth scores 0."""
    batch = collate([FrameExamples(clips, ExampleConfig(), seed=2)[i] for i in range(4)])

    class Oracle(DepthPrior):
        def forward(self, rgb, K):
            return batch["depth"].clamp_min(1e-3)

    scores = evaluate_examples(Oracle(SMALL), [batch], torch.device("cpu"))
    assert scores == {"depth_log_error": pytest.approx(0.0, abs=1e-6), "depth_abs_rel": pytest.approx(0.0, abs=1e-6)}
    untrained = evaluate_examples(DepthPrior(SMALL), [batch], torch.device("cpu"))
    assert untrained["depth_log_error"] > 0.1


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
                      warmup=2, eval_every=3, save_every=3, eval_examples=4, amp="off")
    state = train(cfg)
    assert state["step"] == 6
    run = tmp_path / "run"
    assert (run / "last" / "model.safetensors").exists() and (run / "best" / "config.json").exists()
    model, meta = load_checkpoint(run / "last")
    assert meta["info"]["step"] == 6
    evals = [json.loads(line) for line in (run / "eval.jsonl").read_text().splitlines()]
    assert [e["step"] for e in evals] == [3, 6] and all(np.isfinite(e["depth_log_error"]) for e in evals)
    best, best_meta = load_checkpoint(run / "best")  # chosen by the lowest held-out depth error
    assert best_meta["info"]["metrics"]["depth_log_error"] == min(e["depth_log_error"] for e in evals)
    assert best_meta["info"]["best_depth_error"] == best_meta["info"]["metrics"]["depth_log_error"]
    # resume: more steps continue from step 6, not from scratch
    cfg = dataclasses.replace(cfg, steps=9)
    state = train(cfg)
    assert state["step"] == 9
    rows = (run / "log.csv").read_text().splitlines()
    assert rows[0].startswith("step,")


def test_photometric_augmentation_changes_only_colours():
    """--photometric: frames look as if another camera took them; intrinsics and depth are
    untouched, and 0 leaves the example exactly as before."""
    from rtfm_ros.geometry import PinholeCamera, look_at

    cam = PinholeCamera.from_fov(16, 16, 90)
    poses = np.stack([look_at([0.1 * i, 0, 1], [0.1 * i + 3, 0, 1]) for i in range(6)])
    rgb = (np.random.default_rng(0).random((6, 16, 16, 3)) * 255).astype(np.uint8)
    clip = Clip(rgb=rgb, T_world_camera=poses, K=np.repeat(cam.K[None], 6, 0), stamps=np.arange(6.0),
                depth=np.full((6, 16, 16), 2.0, np.float32), meta={})
    plain = sample_example(clip, np.random.default_rng(5), ExampleConfig(photometric=0.0))
    again = sample_example(clip, np.random.default_rng(5), ExampleConfig(photometric=0.0))
    aug = sample_example(clip, np.random.default_rng(5), ExampleConfig(photometric=1.0))
    assert np.array_equal(plain["rgb"], again["rgb"])
    assert not np.array_equal(plain["rgb"], aug["rgb"]) and aug["rgb"].dtype == np.uint8
    for key in ("depth", "K"):
        assert np.array_equal(plain[key], aug[key]), key
    with pytest.raises(ValueError, match="photometric"):
        ExampleConfig(photometric=1.5)
