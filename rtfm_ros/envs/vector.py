"""Batched CameraNav: N sub-environments whose views go through the model in one call per step.

Gymnasium 1.x next-step autoreset: the step after a sub-env terminates or truncates resets it
(its action is ignored, reward 0, terminated/truncated False) and returns its first observation.

Worlds: by default every sub-env has its own world and memory, all sharing ONE network (see
rtfm_ros.envs.batching.render_many). With ``shared_world=True`` all sub-envs drive in one world
and write into one memory: what one robot sees, the others can later be shown. The shared world
is built on the first reset and kept until the next seeded reset; each new episode adds MuJoCo
seed views around its own start (never a goal marker, which would show every robot's goal).
"""

from __future__ import annotations

from collections.abc import Sequence
from copy import deepcopy
from typing import Any

import numpy as np
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space, concatenate, create_empty_array

from rtfm_ros.envs.batching import resolve_world_model
from rtfm_ros.envs.camera_nav import CameraNavEnv, EnvConfigError, NavConfig
from rtfm_ros.envs.slot import WorldSlot
from rtfm_ros.memory import FrameMemory


class CameraNavVectorEnv(VectorEnv):
    """``num_envs`` CameraNav sub-envs rendered together; keyword settings as CameraNavEnv.

    ``shared_world``: one world and memory for all; ``copy`` as in gymnasium's SyncVectorEnv.
    """

    metadata: dict[str, Any] = {"render_modes": ["rgb_array"], "render_fps": 4,
                                "autoreset_mode": AutoresetMode.NEXT_STEP}

    def __init__(self, num_envs: int = 1, *, shared_world: bool = False, model: Any = None, device: str = "auto",
                 render_mode: str | None = None, copy: bool = True, **kwargs: Any) -> None:
        if isinstance(num_envs, bool) or not isinstance(num_envs, (int, np.integer)) or num_envs < 1:
            raise EnvConfigError(f"num_envs must be a positive integer, got {num_envs!r}")
        self.num_envs = int(num_envs)
        self.config = NavConfig(**kwargs)
        self.shared_world = bool(shared_world)
        self.copy = bool(copy)  # False: step/reset return the same (overwritten) buffers each time
        base = resolve_world_model(model, device)
        if self.shared_world:
            shared = WorldSlot(base, shared=True)
            slots = [shared] * self.num_envs
        else:
            slots = [WorldSlot(base if i == 0 else base.with_memory(FrameMemory())) for i in range(self.num_envs)]
        self.envs = [CameraNavEnv(config=self.config, slot=s, render_mode=render_mode) for s in slots]
        self._slots = list(dict.fromkeys(slots))
        self.render_mode = render_mode
        self.single_observation_space = self.envs[0].observation_space
        self.single_action_space = self.envs[0].action_space
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.action_space = batch_space(self.single_action_space, self.num_envs)
        obs = create_empty_array(self.single_observation_space, self.num_envs)
        assert obs is not None  # Box and Dict observation spaces batch into arrays
        self._obs = obs
        self._env_obs: list[Any] = [None] * self.num_envs
        self._autoreset = np.zeros(self.num_envs, dtype=np.bool_)

    @property
    def world_models(self) -> list[Any]:
        return [env.world_model for env in self.envs]

    def _seeds(self, seed: int | Sequence[int | None] | None) -> list[int | None]:
        if seed is None:
            return [None] * self.num_envs
        if isinstance(seed, (int, np.integer)):
            return [int(seed) + i for i in range(self.num_envs)]
        seeds = list(seed)
        if len(seeds) != self.num_envs:
            raise EnvConfigError(f"{len(seeds)} seeds for {self.num_envs} environments")
        return seeds

    def _render(self, idx: list[int], poses: list[np.ndarray], extras: list[dict[str, Any]]) -> dict[str, Any]:
        """One batched render for sub-envs ``idx``; stores their observations, returns their infos."""
        images, depths = self.envs[0].render_views([self.envs[i] for i in idx], np.stack(poses))
        infos: dict[str, Any] = {}
        for j, i in enumerate(idx):
            obs, info = self.envs[i].observe(images[j], depths[j], poses[j], extras[j])
            self._env_obs[i] = obs
            infos = self._add_info(infos, info, i)
        return infos

    def _batched_obs(self) -> Any:
        self._obs = concatenate(self.single_observation_space, self._env_obs, self._obs)
        return deepcopy(self._obs) if self.copy else self._obs

    def reset(self, *, seed: int | Sequence[int | None] | None = None,
              options: dict[str, Any] | None = None) -> tuple[Any, dict[str, Any]]:
        """Reset all sub-envs (or those in ``options["reset_mask"]``); int seeds become seed + i."""
        super().reset(seed=seed if isinstance(seed, (int, np.integer)) else None)
        opts = dict(options or {})
        mask = opts.pop("reset_mask", None)
        if mask is None:
            mask = np.ones(self.num_envs, dtype=np.bool_)
        elif not (isinstance(mask, np.ndarray) and mask.dtype == np.bool_ and mask.shape == (self.num_envs,)
                  and mask.any()):
            raise EnvConfigError(f"options['reset_mask'] must be a bool array of shape ({self.num_envs},) "
                                 f"with at least one True")
        seeds = self._seeds(seed)
        if self.shared_world and (seed is not None or mask.all()):
            self._slots[0].invalidate()  # a fresh shared world, so seeded resets reproduce
        idx = [int(i) for i in np.flatnonzero(mask)]
        poses = []
        for i in idx:
            self.envs[i].seed_rng(seeds[i])
            poses.append(self.envs[i].begin_episode(opts))
        infos = self._render(idx, poses, [{} for _ in idx])
        self._autoreset[idx] = False
        return self._batched_obs(), infos

    def step(self, actions: np.ndarray) -> tuple[Any, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        actions = np.asarray(actions)
        if actions.shape != self.action_space.shape:
            raise EnvConfigError(f"actions must have shape {self.action_space.shape}, got {actions.shape}")
        rewards = np.zeros(self.num_envs, dtype=np.float64)
        terminated = np.zeros(self.num_envs, dtype=np.bool_)
        truncated = np.zeros(self.num_envs, dtype=np.bool_)
        poses: list[np.ndarray] = []
        extras: list[dict[str, Any]] = []
        for i, env in enumerate(self.envs):
            if self._autoreset[i]:
                poses.append(env.begin_episode(None))
                extras.append({})
            else:
                rewards[i], terminated[i], truncated[i], extra = env.advance(actions[i])
                poses.append(env.camera_T())
                extras.append(extra)
        infos = self._render(list(range(self.num_envs)), poses, extras)
        self._autoreset = terminated | truncated
        return self._batched_obs(), rewards, terminated, truncated, infos

    def render(self) -> tuple[np.ndarray, ...] | None:
        if self.render_mode != "rgb_array":
            return None
        # A sub-env not reset yet has no frame: its entry is None.
        return tuple(env.render() for env in self.envs)  # type: ignore[misc]

    def close_extras(self, **kwargs: Any) -> None:
        for slot in self._slots:
            slot.close()

