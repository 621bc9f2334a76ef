"""RL in CameraNav: the SB3 adapter, the pickle-free policy file, and `rtfm rl train / eval` end to end
on a tiny budget (the real training is a benchmark: BENCHMARKS.md, Transfer)."""

from __future__ import annotations

import rtfm_ros  # noqa: F401  (first: sets OMP_WAIT_POLICY before torch loads)

# isort: split
import csv
import json
import math

import numpy as np
import pytest
import torch
from gymnasium import spaces

from rtfm_ros.cli import main
from rtfm_ros.envs.camera_nav import CameraNavEnv
from rtfm_ros.envs.slot import OBSERVATION_SOURCES
from rtfm_ros.learn.config import preset
from rtfm_ros.learn.depth_prior import DepthPrior
from rtfm_ros.rl import config
from rtfm_ros.rl.agent import NavVecEnv, load_policy, policy_kwargs, save_policy
from rtfm_ros.rl.evaluate import evaluate

pytest.importorskip("stable_baselines3")
from stable_baselines3.common.policies import ActorCriticCnnPolicy

TINY = config.TaskConfig(size=16, max_steps=6)


@pytest.fixture(scope="module")
def network() -> DepthPrior:
    """An untrained network: what the model draws does not matter here, only that it runs."""
    torch.manual_seed(0)
    return DepthPrior(preset("tiny"))


def test_sources_agree_with_the_env():
    assert config.OBSERVATION_SOURCES == OBSERVATION_SOURCES


def test_heading_spread_zero_starts_facing_the_goal(network):
    env = CameraNavEnv(model=network, observation_source="mujoco", width=16, height=16,
                       start_heading_spread_deg=0.0)
    for seed in range(3):
        env.reset(seed=seed)
        bearing = math.atan2(env.goal[1] - env.pose[1], env.goal[0] - env.pose[0])
        assert abs(math.remainder(env.pose[2] - bearing, 2 * math.pi)) < 1e-9
    env.close()


def test_vec_env_resets_in_the_same_step(network):
    venv = NavVecEnv(TINY, "mujoco", 2, model=network)
    venv.seed(5)
    obs = venv.reset()
    assert obs.shape == (2, 3, 16, 16) and obs.dtype == np.uint8
    for t in range(TINY.max_steps):
        venv.step_async(np.zeros((2, 2), np.float32))  # standing still: both episodes run out of time
        obs, rewards, dones, infos = venv.step_wait()
        assert dones.all() == (t == TINY.max_steps - 1)
    for info in infos:
        assert info["TimeLimit.truncated"] and info["episode"]["l"] == TINY.max_steps
        assert info["terminal_observation"].shape == (3, 16, 16)
        assert info["episode"]["r"] == pytest.approx(TINY.max_steps * TINY.step_reward)
    # the returned observation is the next episode's first one, in another world
    assert not np.array_equal(obs[0], infos[0]["terminal_observation"])
    venv.close()


def test_policy_file_round_trip(tmp_path):
    obs_space = spaces.Box(0, 255, (3, 16, 16), np.uint8)
    act = spaces.Box(np.array([-0.5, -1.5], np.float32), np.array([0.5, 1.5], np.float32))
    torch.manual_seed(1)
    policy = ActorCriticCnnPolicy(obs_space, act, lambda _: 0.0, **policy_kwargs())
    save_policy(policy, tmp_path, TINY, {"action_high": act.high.tolist()})
    loaded, task, _ = load_policy(tmp_path / "policy.safetensors")
    assert task == TINY
    obs = np.random.default_rng(0).integers(0, 256, (4, 3, 16, 16), dtype=np.uint8)
    a, _ = policy.predict(obs, deterministic=True)
    b, _ = loaded.predict(obs, deterministic=True)
    np.testing.assert_array_equal(a, b)
    with pytest.raises(FileNotFoundError):
        load_policy(tmp_path / "nothing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="rtfm rl train"):
        load_policy(tmp_path / "empty")


@pytest.mark.parametrize("baseline", config.BASELINES)
def test_baselines_meet_the_same_episodes_on_both_sources(network, baseline):
    """Observations differ, dynamics and episodes do not: a blind baseline scores the same."""
    results = [evaluate(config.EvalConfig(source=s, baseline=baseline, episodes=3, num_envs=2, progress=False),
                        TINY, model=network)[0] for s in ("model", "mujoco")]
    assert results[0] == results[1]
    assert results[0].episodes == 3


def test_train_and_eval_commands(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["rl", "train", "--out", str(run), "--source", "mujoco", "--timesteps", "64", "--num-envs", "2",
                 "--n-steps", "16", "--batch-size", "16", "--epochs", "1", "--checkpoint-every", "32",
                 "--size", "16", "--max-steps", "6", "--no-progress"]) == 0
    with (run / "progress.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [int(r["timesteps"]) for r in rows] == [32, 64]
    assert int(rows[-1]["episodes"]) >= 64 // 6  # episodes of at most 6 steps, all counted
    assert rows[-1]["value_loss"] != ""  # PPO updated
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["step_00000032", "step_00000064"]
    _, task, meta = load_policy(run)
    assert task.size == 16 and meta["timesteps"] == 64 and meta["source"] == "mujoco"
    out = tmp_path / "eval.json"
    assert main(["rl", "eval", "--policy", str(run), "--source", "mujoco", "--episodes", "3", "--num-envs", "2",
                 "--no-progress", "--json", str(out)]) == 0
    assert "3 held-out episodes" in capsys.readouterr().out
    result = json.loads(out.read_text())
    assert result["episodes"] == 3 and 0.0 <= result["success_rate"] <= 1.0 and result["task"]["size"] == 16
    assert main(["rl", "eval", "--policy", str(run), "--seed-base", "5"]) == 2  # a training world is refused
