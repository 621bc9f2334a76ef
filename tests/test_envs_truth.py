"""CameraNav with ground-truth eyes: observation_source="mujoco" shows MuJoCo's image at the
robot's pose, and changes nothing else (same poses, rewards, terminations as with the model)."""

from __future__ import annotations

import rtfm_ros  # noqa: F401  (first: sets OMP_WAIT_POLICY before torch loads)

# isort: split
import numpy as np
import pytest
import torch

from rtfm_ros.envs.camera_nav import CameraNavEnv, EnvConfigError, NavConfig
from rtfm_ros.envs.slot import MARKER, with_goal_marker
from rtfm_ros.envs.vector import CameraNavVectorEnv
from rtfm_ros.learn.config import preset
from rtfm_ros.learn.depth_prior import DepthPrior
from rtfm_ros.sim.renderer import WorldRenderer
from rtfm_ros.sim.worlds import make_world

SMALL = dict(width=32, height=32, seed_turn_views=4, seed_path_views=1, max_episode_steps=12)


@pytest.fixture(scope="module")
def network() -> DepthPrior:
    """An untrained network: the model's images do not matter here, only that it runs."""
    torch.manual_seed(0)
    return DepthPrior(preset("tiny"))


def truth(env: CameraNavEnv) -> tuple[np.ndarray, np.ndarray]:
    """MuJoCo's own render of the env's world at the robot's camera pose, goal post at the goal."""
    world = make_world(env.world.seed, env.config.world_kind)
    with WorldRenderer(with_goal_marker(world), env.camera) as sim:
        sim.model.geom_pos[sim.model.geom(MARKER).id] = (env.goal[0], env.goal[1], 0.6)
        return sim.render(env.camera_T())


def test_unknown_source_is_refused():
    with pytest.raises(EnvConfigError, match="observation_source"):
        NavConfig(observation_source="camera")


def test_mujoco_observation_is_mujocos_image(network):
    env = CameraNavEnv(model=network, observation_source="mujoco", observation="dict", **SMALL)
    obs, info = env.reset(seed=5)
    assert info["memory_frames"] == 0  # no seed views: the model is not used
    rgb, depth = truth(env)
    assert np.array_equal(obs["image"], rgb)
    assert np.allclose(obs["depth"], np.clip(depth, 0, env.observation_space["depth"].high[0, 0]))
    moved = False
    for _ in range(4):
        before = env.pose.copy()
        obs, _, terminated, truncated, _ = env.step(np.array([0.3, 0.8], np.float32))
        moved |= not np.allclose(before, env.pose)
        assert np.array_equal(obs["image"], truth(env)[0])
        if terminated or truncated:
            break
    assert moved
    env.close()


def test_goal_marker_is_seen(network):
    """Facing the goal, the red post shows in the middle of the ground-truth image; facing away, not."""
    env = CameraNavEnv(model=network, observation_source="mujoco", **SMALL)
    env.reset(seed=2)
    x, y, _ = env.pose
    goal = tuple(env.goal)
    yaw = float(np.arctan2(goal[1] - y, goal[0] - x))
    counts = []
    for turn in (0.0, np.pi):
        obs, _ = env.reset(seed=2, options={"start": (x, y, yaw + turn), "goal": goal})
        rgb = obs.astype(int)
        red = (rgb[..., 0] > 2 * rgb[..., 1] + 20) & (rgb[..., 0] > 2 * rgb[..., 2] + 20)
        counts.append(int(red[:, 14:18].sum()))
    assert counts[0] >= 8 and counts[1] == 0
    env.close()


def run(envs: CameraNavVectorEnv, steps: int, seed: int) -> list[tuple[np.ndarray, ...]]:
    """Poses, rewards, terminations and truncations of a seeded rollout with fixed random actions."""
    rng = np.random.default_rng(seed)
    envs.reset(seed=seed)
    out = []
    for _ in range(steps):
        actions = rng.uniform(-1, 1, envs.action_space.shape).astype(np.float32) * envs.single_action_space.high
        _, rew, term, trunc, info = envs.step(actions)
        poses = np.stack([e.pose for e in envs.envs])
        out.append((poses, rew, term, trunc, info["world_seed"]))
    envs.close()
    return out


def test_model_and_mujoco_share_dynamics(network):
    """Same seed and actions: identical worlds, poses, rewards and episode ends (resets included)."""
    runs = [run(CameraNavVectorEnv(num_envs=2, model=network, observation_source=src, world_seeds=(0, 6), **SMALL),
                steps=30, seed=11) for src in ("model", "mujoco")]
    ends = 0
    for m, g in zip(*runs):
        for a, b in zip(m, g):
            assert np.array_equal(a, b)
        ends += int(m[2].sum() + m[3].sum())
    assert ends >= 2  # episodes ended and restarted along the way
