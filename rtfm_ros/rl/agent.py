"""The pieces PPO needs around CameraNav: an SB3 VecEnv over the batched env, a CNN for small
images, and a pickle-free policy file.

Why an adapter: SB3 wants same-step autoreset (the terminal observation in the info, the next
episode's first observation returned), the batched CameraNav env resets on the next step as
Gymnasium 1.x does. Resetting the finished sub-envs at once with ``reset_mask`` keeps the one
batched render per step. Observations are handed over channels-first (3xHxW uint8), so the
saved policy needs no image transposing wrapper at evaluation.

Why a policy file of our own: SB3's .zip stores its settings with cloudpickle, and loading one
runs code from the file. ``policy.safetensors`` (weights) + ``policy.json`` (task and network
sizes) rebuild the same ActorCriticCnnPolicy without unpickling anything.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces
from safetensors.torch import load_model, save_model
from stable_baselines3.common.policies import ActorCriticCnnPolicy, ActorCriticPolicy
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from stable_baselines3.common.vec_env import VecEnv

from rtfm_ros.envs.vector import CameraNavVectorEnv
from rtfm_ros.rl.config import RLConfigError, TaskConfig

FEATURES_DIM = 128
NET_ARCH = {"pi": [64], "vf": [64]}
POLICY_FILE, POLICY_META = "policy.safetensors", "policy.json"


class SmallCNN(BaseFeaturesExtractor):
    """Three strided convolutions for 8-64 px images (SB3's NatureCNN needs at least 36 px)."""

    def __init__(self, observation_space: spaces.Box, features_dim: int = FEATURES_DIM) -> None:
        super().__init__(observation_space, features_dim)
        c = observation_space.shape[0]
        self.cnn = torch.nn.Sequential(
            torch.nn.Conv2d(c, 16, 5, stride=2, padding=2), torch.nn.ReLU(),
            torch.nn.Conv2d(16, 32, 3, stride=2, padding=1), torch.nn.ReLU(),
            torch.nn.Conv2d(32, 32, 3, stride=2, padding=1), torch.nn.ReLU(),
            torch.nn.Flatten())
        with torch.no_grad():
            n = self.cnn(torch.zeros(1, *observation_space.shape)).shape[1]
        self.linear = torch.nn.Sequential(torch.nn.Linear(n, features_dim), torch.nn.ReLU())

    def forward(self, observations: torch.Tensor) -> torch.Tensor:
        features: torch.Tensor = self.linear(self.cnn(observations))
        return features


def policy_kwargs() -> dict[str, Any]:
    return {"features_extractor_class": SmallCNN, "features_extractor_kwargs": {"features_dim": FEATURES_DIM},
            "net_arch": NET_ARCH}


def chw(images: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.moveaxis(images, -1, -3))


class NavVecEnv(VecEnv):
    """CameraNav's batched env as an SB3 VecEnv (same-step autoreset, channels-first images).

    Each finished episode's info carries ``episode``: return ``r``, length ``l`` and ``success``.
    """

    def __init__(self, task: TaskConfig, source: str, num_envs: int, *, model: Any = None) -> None:
        self.env = CameraNavVectorEnv(num_envs, model=model, **task.env_kwargs(source))
        image = self.env.single_observation_space
        assert isinstance(image, spaces.Box)
        h, w, c = image.shape
        super().__init__(num_envs, spaces.Box(0, 255, (c, h, w), np.uint8), self.env.single_action_space)
        self._returns = np.zeros(num_envs)
        self._lengths = np.zeros(num_envs, dtype=np.int64)
        self._actions: np.ndarray | None = None

    def reset(self) -> np.ndarray:
        seeds = [s for s in self._seeds] if self._seeds and self._seeds[0] is not None else None
        obs, _ = self.env.reset(seed=seeds)
        self._reset_seeds()
        self._returns[:] = 0
        self._lengths[:] = 0
        return chw(obs)

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = np.asarray(actions, dtype=np.float32).reshape(self.num_envs, -1)

    def step_wait(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[dict[str, Any]]]:
        assert self._actions is not None, "step_async first"
        obs, rewards, terminated, truncated, info = self.env.step(self._actions)
        done = terminated | truncated
        self._returns += rewards
        self._lengths += 1
        infos: list[dict[str, Any]] = [{} for _ in range(self.num_envs)]
        obs = chw(obs)
        if done.any():
            first, _ = self.env.reset(options={"reset_mask": done})
            for i in np.flatnonzero(done):
                infos[i] = {"terminal_observation": obs[i].copy(),
                            "TimeLimit.truncated": bool(truncated[i] and not terminated[i]),
                            "episode": {"r": float(self._returns[i]), "l": int(self._lengths[i]),
                                        "success": bool(info["success"][i])}}
                obs[i] = chw(first[i])
            self._returns[done] = 0
            self._lengths[done] = 0
        return obs, rewards.astype(np.float32), done, infos

    def close(self) -> None:
        self.env.close()

    # The VecEnv attribute API: the sub-envs are CameraNavEnv objects inside the batched env.
    def _targets(self, indices: Any) -> list[gym.Env[Any, Any]]:
        return [self.env.envs[i] for i in self._get_indices(indices)]

    def get_attr(self, attr_name: str, indices: Any = None) -> list[Any]:
        return [getattr(e, attr_name) for e in self._targets(indices)]

    def set_attr(self, attr_name: str, value: Any, indices: Any = None) -> None:
        for e in self._targets(indices):
            setattr(e, attr_name, value)

    def env_method(self, method_name: str, *method_args: Any, indices: Any = None, **method_kwargs: Any) -> list[Any]:
        return [getattr(e, method_name)(*method_args, **method_kwargs) for e in self._targets(indices)]

    def env_is_wrapped(self, wrapper_class: type, indices: Any = None) -> list[bool]:
        return [False for _ in self._targets(indices)]


def save_policy(policy: ActorCriticPolicy, folder: Path, task: TaskConfig, extra: dict[str, Any]) -> Path:
    """Write policy.safetensors + policy.json into ``folder``; the weights' path."""
    folder.mkdir(parents=True, exist_ok=True)
    save_model(policy, str(folder / POLICY_FILE))  # the extractor is shared by actor and critic: stored once
    meta = {"task": task.to_dict(), "features_dim": FEATURES_DIM, "net_arch": NET_ARCH, **extra}
    (folder / POLICY_META).write_text(json.dumps(meta, indent=1))
    return folder / POLICY_FILE


def load_policy(path: Path) -> tuple[ActorCriticCnnPolicy, TaskConfig, dict[str, Any]]:
    """(policy, its task, its metadata) from a policy folder or its policy.safetensors."""
    folder = path if path.is_dir() else path.parent if path.is_file() else None
    if folder is None:
        raise FileNotFoundError(f"no policy at {path}")
    weights, meta_path = folder / POLICY_FILE, folder / POLICY_META
    if not weights.is_file() or not meta_path.is_file():
        raise FileNotFoundError(f"{folder} has no {POLICY_FILE} + {POLICY_META} (write them with rtfm rl train)")
    meta = json.loads(meta_path.read_text())
    try:
        task = TaskConfig(**meta["task"])
    except (KeyError, TypeError) as exc:
        raise RLConfigError(f"{meta_path}: not a policy description ({exc})") from exc
    size = task.size
    obs_space = spaces.Box(0, 255, (3, size, size), np.uint8)
    high = np.asarray(meta["action_high"], np.float32)
    policy = ActorCriticCnnPolicy(obs_space, spaces.Box(-high, high, dtype=np.float32), lambda _: 0.0,
                                  net_arch=meta["net_arch"], features_extractor_class=SmallCNN,
                                  features_extractor_kwargs={"features_dim": meta["features_dim"]})
    load_model(policy, str(weights))
    policy.set_training_mode(False)
    return policy, task, meta
