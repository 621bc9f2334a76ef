"""rtfm/CameraNav-v0: Gymnasium API conformance, seeding, collisions, and the batched vector env."""

from __future__ import annotations

import rtfm_ros  # noqa: F401  (first: sets OMP_WAIT_POLICY before torch loads)

# isort: split
import math

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env

from rtfm_ros.envs import ENV_ID
from rtfm_ros.envs.batching import BatchRenderError, render_many
from rtfm_ros.envs.camera_nav import CameraNavEnv, EnvConfigError, NavConfig, camera_pose
from rtfm_ros.envs.vector import CameraNavVectorEnv
from rtfm_ros.geometry import GeometryError
from rtfm_ros.learn.checkpoint import DEFAULT_CHECKPOINT
from rtfm_ros.learn.config import preset
from rtfm_ros.learn.depth_prior import DepthPrior
from rtfm_ros.sim.worlds import HELDOUT_SEED_BASE
from rtfm_ros.world import WorldModel

# Small and quick: 32x32 views, 5 seed frames, one fixed world (a 4.2 x 7.0 m room).
WORLD = 3
SMALL = dict(world_seed=WORLD, width=32, height=32, seed_turn_views=4, seed_path_views=1)


@pytest.fixture(scope="module")
def network() -> DepthPrior:
    """The bundled default depth prior (an untrained one of the same design until it ships)."""
    if (DEFAULT_CHECKPOINT / "config.json").is_file():
        return WorldModel.load(device="cpu").core.depth_prior
    torch.manual_seed(0)
    return DepthPrior(preset("tiny"))


def free_start_facing_wall(env: CameraNavEnv) -> tuple[float, float, float]:
    """A free spot right next to the room's west wall (x = 0), facing it."""
    world = env.world
    r = env.config.robot_radius
    x = 0.12 + r + 0.06
    for y in np.linspace(1.0, world.bounds[3] - 1.0, 40):
        if world.is_free(x, y, r) and world.is_free(x + 1.0, y, r):
            return x, float(y), math.pi
    raise AssertionError("no free spot along the west wall")


def test_config_errors_are_value_errors(network):
    with pytest.raises(EnvConfigError, match="observation"):
        NavConfig(observation="pixels")
    with pytest.raises(EnvConfigError, match="held-out"):
        NavConfig(world_seeds=(0, HELDOUT_SEED_BASE + 10))
    with pytest.raises(EnvConfigError, match="collision"):
        NavConfig(collision="bounce")
    with pytest.raises(GeometryError, match="width"):
        CameraNavEnv(model=network, width=5000, height=30)
    env = CameraNavEnv(model=network, **SMALL)
    with pytest.raises(EnvConfigError, match="reset options"):
        env.reset(seed=0, options={"teleport": True})
    with pytest.raises(EnvConfigError, match="num_envs"):
        CameraNavVectorEnv(num_envs=0, model=network, **SMALL)


@pytest.mark.parametrize("observation", ["image", "dict"])
def test_check_env_passes(network, observation):
    env = gym.make(ENV_ID, model=network, observation=observation, render_mode="rgb_array", **SMALL)
    assert env.spec.max_episode_steps == 200
    check_env(env.unwrapped, skip_render_check=True)
    obs, _ = env.reset(seed=0)
    image = obs if observation == "image" else obs["image"]
    assert image.shape == (32, 32, 3) and image.dtype == np.uint8
    assert np.array_equal(env.render(), image)
    if observation == "dict":
        assert obs["depth"].shape == (32, 32) and obs["depth"].dtype == np.float32
        assert np.all(obs["depth"] > 0)
        x, y, yaw = obs["pose"]
        goal = env.unwrapped.goal
        # goal in the robot frame, rotated back to the world, lands on the goal
        gx, gy = obs["goal"]
        assert np.allclose([x + gx * math.cos(yaw) - gy * math.sin(yaw), y + gx * math.sin(yaw) + gy * math.cos(yaw)],
                           goal, atol=1e-4)
    env.close()


def rollout(env: CameraNavEnv, seed: int, actions: np.ndarray):
    obs, info = env.reset(seed=seed)
    frames, rewards = [obs], []
    for a in actions:
        obs, r, terminated, truncated, _ = env.step(a)
        frames.append(obs)
        rewards.append(r)
        if terminated or truncated:
            break
    return np.stack(frames), np.array(rewards), info


def test_seeding_reproduces_and_differs(network):
    env = CameraNavEnv(model=network, **{**SMALL, "world_seed": None, "world_seeds": (0, 1000)})
    actions = np.array([[0.3, 0.8], [0.2, -1.0], [0.4, 0.5]], np.float32)
    a_frames, a_rewards, a_info = rollout(env, 7, actions)
    b_frames, b_rewards, b_info = rollout(env, 7, actions)
    c_frames, _, c_info = rollout(env, 8, actions)
    assert a_info["world_seed"] == b_info["world_seed"] and 0 <= a_info["world_seed"] < 1000
    assert np.array_equal(a_frames, b_frames)
    assert np.array_equal(a_rewards, b_rewards)
    assert c_info["world_seed"] != a_info["world_seed"]
    assert not np.array_equal(a_frames[0], c_frames[0])
    env.close()


def test_remember_grows_the_world(network):
    turn = np.array([0.0, 1.5], np.float32)  # 21 degrees a step: every view is new
    sizes = {}
    for remember in (True, False):
        env = CameraNavEnv(model=network, remember=remember, **SMALL)
        _, info = env.reset(seed=3)
        seeded = info["memory_frames"]
        for _ in range(3):
            _, _, _, _, info = env.step(turn)
        mem = env.world_model.memory
        sources = [mem.get(i).source for i in range(len(mem))]
        sizes[remember] = (seeded, info["memory_frames"], sources.count("seed"), sources.count("generated"))
        env.close()
    seeded, final, n_seed, n_gen = sizes[True]
    assert n_seed == seeded and n_gen == final - seeded >= 3  # reset view + 3 turned views
    seeded, final, n_seed, n_gen = sizes[False]
    assert final == seeded and n_gen == 0


@pytest.mark.parametrize("mode", ["terminate", "block"])
def test_collision_modes(network, mode):
    env = CameraNavEnv(model=network, collision=mode, **SMALL)
    env.reset(seed=0)
    start = free_start_facing_wall(env)
    env.reset(seed=0, options={"start": start, "goal": (start[0] + 2.0, start[1])})
    _, reward, terminated, truncated, info = env.step(np.array([0.5, 0.0], np.float32))
    assert info["collision"] and reward < -4.0 and not truncated
    assert terminated == (mode == "terminate")
    assert np.allclose(env.pose[:2], start[:2])  # the motion into the wall did not happen
    if mode == "block":  # the episode goes on, and backing away is allowed
        _, _, terminated, _, info = env.step(np.array([-0.5, 0.0], np.float32))
        assert not info["collision"] and not terminated and env.pose[0] > start[0]
    env.close()


def test_reaching_the_goal_and_truncation(network):
    env = CameraNavEnv(model=network, max_episode_steps=2, **SMALL)
    env.reset(seed=0)
    x, y, _ = env.pose
    env.reset(seed=0, options={"start": (x, y, 0.0), "goal": (x + 0.45, y)})
    _, reward, terminated, _, info = env.step(np.array([0.5, 0.0], np.float32))
    assert terminated and info["success"] and reward > 10.0
    env.reset(seed=0, options={"start": (x, y, 0.0), "goal": (x + 0.45, y)})
    env.step(np.array([0.0, 1.0], np.float32))
    _, _, terminated, truncated, _ = env.step(np.array([0.0, 1.0], np.float32))
    assert truncated and not terminated
    env.close()


def test_vector_env_shapes_and_next_step_autoreset(network):
    envs = gym.make_vec(ENV_ID, num_envs=2, vectorization_mode="vector_entry_point", model=network,
                        observation="dict", **SMALL)
    assert isinstance(envs, CameraNavVectorEnv)
    assert envs.metadata["autoreset_mode"] == gym.vector.AutoresetMode.NEXT_STEP
    assert envs.envs[0].config.max_episode_steps == 200
    obs, infos = envs.reset(seed=0)
    assert obs["image"].shape == (2, 32, 32, 3) and obs["depth"].shape == (2, 32, 32) and obs["pose"].shape == (2, 3)
    assert envs.observation_space.contains(obs) and infos["_distance"].all()
    x, y, _ = envs.envs[0].pose
    obs, _ = envs.reset(seed=0, options={"start": (x, y, 0.0), "goal": (x + 0.45, y)})
    # env 0 drives onto the goal, env 1 backs away from it
    obs, rewards, terminated, truncated, infos = envs.step(np.array([[0.5, 0.0], [-0.5, 0.0]], np.float32))
    assert rewards.shape == (2,) and terminated.tolist() == [True, False] and not truncated.any()
    assert infos["success"].tolist() == [True, False]
    obs, rewards, terminated, truncated, infos = envs.step(np.array([[0.5, 0.0], [-0.5, 0.0]], np.float32))
    assert rewards[0] == 0.0 and not terminated[0] and not truncated[0]  # the autoreset step
    assert envs.envs[0].steps == 0 and envs.envs[1].steps == 2
    lo, hi = envs.envs[0].config.goal_distance
    assert lo - 1e-9 <= infos["distance"][0] <= hi + 1e-9  # a fresh start/goal pair
    assert np.allclose(obs["pose"][0], envs.envs[0].pose, atol=1e-5)
    envs.close()


def test_vector_env_renders_like_single_envs(network):
    actions = np.array([[0.3, 0.6], [0.2, -0.9]], np.float32)
    envs = CameraNavVectorEnv(num_envs=2, model=network, **SMALL)
    v_obs = [envs.reset(seed=20)[0]]
    v_rew = []
    for _ in range(2):
        o, r, *_ = envs.step(actions)
        v_obs.append(o)
        v_rew.append(r)
    assert envs.world_models[0].core is envs.world_models[1].core  # one render core ...
    assert envs.world_models[0].memory is not envs.world_models[1].memory  # ... two worlds
    envs.close()
    for i in range(2):
        env = CameraNavEnv(model=network, **SMALL)
        s_obs = [env.reset(seed=20 + i)[0]]
        s_rew = []
        for _ in range(2):
            o, r, *_ = env.step(actions[i])
            s_obs.append(o)
            s_rew.append(r)
        env.close()
        for v, s in zip(v_obs, s_obs):
            diff = np.abs(v[i].astype(np.int16) - s.astype(np.int16))
            assert diff.mean() < 0.5 and diff.max() <= 8
        assert np.allclose([r[i] for r in v_rew], s_rew)


def test_shared_world(network):
    envs = CameraNavVectorEnv(num_envs=2, shared_world=True, model=network, **SMALL)
    envs.reset(seed=1)
    wms = envs.world_models
    assert wms[0] is wms[1]
    seeded = len(wms[0].memory)
    assert seeded > SMALL["seed_turn_views"] + 1  # both robots' seed views went into the one memory
    envs.step(np.array([[0.0, 1.5], [0.0, -1.5]], np.float32))
    assert len(wms[0].memory) >= seeded + 2
    envs.close()


def test_render_many_matches_render_batch(network):
    env = CameraNavEnv(model=network, remember=False, **SMALL)
    env.reset(seed=4)
    wm = env.world_model
    x, y, yaw = env.pose
    poses = np.stack([camera_pose(x, y, yaw + a, 0.5) for a in (0.1, 0.5, 1.0)])
    ours = render_many([wm, wm, wm], poses, env.camera)
    theirs = wm.render_batch(poses, env.camera, remember=False)
    assert np.abs(ours.astype(np.int16) - theirs.astype(np.int16)).max() <= 2
    with pytest.raises(BatchRenderError, match="world models"):
        render_many([wm], poses, env.camera)
    env.close()
