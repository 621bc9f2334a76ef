"""CameraNav past one process and one machine: sub-envs in Ray actors behind one VectorEnv.

Each actor (EnvWorker) holds a CameraNavVectorEnv, i.e. its own WorldModel (network loaded in
the actor, on its GPU when it was given one) and its sub-envs' worlds, and renders them in one
batched call per step. RayCameraNavVectorEnv splits the sub-envs over the actors, sends every
step to all of them at once and joins the answers, so to a learner it is one Gymnasium vector
env (next-step autoreset, like the in-process one): same seeds and actions give the same
observations as CameraNavVectorEnv with the same number of sub-envs, on one node or many.

RLlib: pass ``rllib_env`` as the env with ``gym_env_vectorize_mode="vector_entry_point"``;
each EnvRunner then drives its sub-envs through actors of their own (settings in env_config).
"""

from __future__ import annotations

import rtfm_ros  # noqa: F401  (first: sets OMP_WAIT_POLICY before torch loads in the actors)

# isort: split
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import ray
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from rtfm_ros.envs.camera_nav import CameraNavEnv, EnvConfigError, NavConfig


class EnvWorker:
    """One Ray actor's share of the sub-envs: a CameraNavVectorEnv built in the actor."""

    def __init__(self, num_envs: int, threads: int, settings: dict[str, Any]) -> None:
        import torch

        from rtfm_ros.envs.vector import CameraNavVectorEnv

        if threads > 0:
            torch.set_num_threads(threads)
        self.env = CameraNavVectorEnv(num_envs, copy=False, **settings)

    def reset(self, seeds: list[int | None], options: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
        # Gymnasium seeds the batch from one int only; a list goes to the sub-envs as given.
        return self.env.reset(seed=seeds, options=options)

    def step(self, actions: np.ndarray) -> tuple[Any, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        return self.env.step(actions)

    def render(self) -> tuple[np.ndarray | None, ...] | None:
        return self.env.render()

    def close(self) -> None:
        self.env.close()


def split(n: int, parts: int) -> list[int]:
    """n sub-envs over ``parts`` workers as evenly as possible (the first ones get the extra)."""
    return [n // parts + (1 if i < n % parts else 0) for i in range(parts)]


def _join(parts: Sequence[Any]) -> Any:
    if isinstance(parts[0], Mapping):
        return {k: _join([p[k] for p in parts]) for k in parts[0]}
    return np.concatenate(parts)


def merge_infos(parts: Sequence[dict[str, Any]], sizes: Sequence[int]) -> dict[str, Any]:
    """Gymnasium vector infos (``key`` array + ``_key`` mask) of consecutive sub-env groups as one."""
    n, out = sum(sizes), {}
    keys = list(dict.fromkeys(k for p in parts for k in p if not k.startswith("_")))
    for key in keys:
        template = next(np.asarray(p[key]) for p in parts if key in p)
        if template.dtype == object or template.ndim == 0:
            values: np.ndarray = np.full(n, None, dtype=object)
        else:
            values = np.zeros((n, *template.shape[1:]), template.dtype)
        mask = np.zeros(n, np.bool_)
        start = 0
        for p, size in zip(parts, sizes):
            if key in p:
                values[start:start + size] = p[key]
                mask[start:start + size] = p.get(f"_{key}", True)
            start += size
        out[key], out[f"_{key}"] = values, mask
    return out


class RayCameraNavVectorEnv(VectorEnv):
    """``num_envs`` CameraNav sub-envs spread over ``num_workers`` Ray actors.

    Settings as CameraNavVectorEnv (NavConfig fields, ``model``, ``shared_world`` per worker,
    ``device``). ``address``: the Ray cluster to join when Ray is not initialised yet (None:
    a local one, closed again by close()). Each actor asks Ray for ``cpus_per_worker`` CPUs
    and ``gpus_per_worker`` GPUs (fractions share a GPU); ``threads`` is its torch threads
    (0: as many as its CPUs). ``model`` must be something every node can load: None (the
    bundled network), a DepthPrior/WorldModel (shipped to the actors) or a path all nodes have.
    """

    metadata: dict[str, Any] = {"render_modes": ["rgb_array"], "render_fps": 4,
                                "autoreset_mode": AutoresetMode.NEXT_STEP}

    def __init__(self, num_envs: int = 2, *, num_workers: int = 2, address: str | None = None,
                 cpus_per_worker: float = 1.0, gpus_per_worker: float = 0.0, threads: int = 0,
                 render_mode: str | None = None, **settings: Any) -> None:
        for name, v in (("num_envs", num_envs), ("num_workers", num_workers)):
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                raise EnvConfigError(f"{name} must be a positive integer, got {v!r}")
        if num_workers > num_envs:
            raise EnvConfigError(f"{num_workers} workers for {num_envs} sub-envs: give each at least one")
        probe = CameraNavEnv(config=NavConfig(**{k: v for k, v in settings.items()
                                                 if k in NavConfig.__dataclass_fields__}),
                             model=settings.get("model"), device="cpu")  # the spaces, checked here
        self.single_observation_space = probe.observation_space
        self.single_action_space = probe.action_space
        probe.close()
        self.num_envs = int(num_envs)
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.action_space = batch_space(self.single_action_space, self.num_envs)
        self.render_mode = render_mode
        self._owns_ray = not ray.is_initialized()
        if self._owns_ray:
            ray.init(address=address, include_dashboard=False)
        self.sizes = split(self.num_envs, int(num_workers))
        actor: Any = ray.remote(num_cpus=cpus_per_worker, num_gpus=gpus_per_worker)(EnvWorker)
        threads = threads or max(1, int(cpus_per_worker))
        self.workers: list[Any] = [actor.remote(size, threads, dict(settings, render_mode=render_mode))
                                   for size in self.sizes]
        self._obs: list[Any] = [None] * len(self.workers)

    def _slices(self) -> list[slice]:
        ends = np.cumsum(self.sizes)
        return [slice(int(e - s), int(e)) for s, e in zip(self.sizes, ends)]

    def reset(self, *, seed: int | Sequence[int | None] | None = None,
              options: dict[str, Any] | None = None) -> tuple[Any, dict[str, Any]]:
        """As CameraNavVectorEnv.reset: int seeds become seed + i, ``reset_mask`` picks sub-envs."""
        super().reset(seed=seed if isinstance(seed, (int, np.integer)) else None)
        if seed is None:
            seeds: list[int | None] = [None] * self.num_envs
        elif isinstance(seed, (int, np.integer)):
            seeds = [int(seed) + i for i in range(self.num_envs)]
        else:
            seeds = list(seed)
            if len(seeds) != self.num_envs:
                raise EnvConfigError(f"{len(seeds)} seeds for {self.num_envs} environments")
        opts = dict(options or {})
        mask = opts.pop("reset_mask", None)
        if mask is not None and not (isinstance(mask, np.ndarray) and mask.dtype == np.bool_
                                     and mask.shape == (self.num_envs,) and mask.any()):
            raise EnvConfigError(f"options['reset_mask'] must be a bool array of shape ({self.num_envs},) "
                                 f"with at least one True")
        calls = {}
        for k, (w, sl) in enumerate(zip(self.workers, self._slices())):
            sub = dict(opts)
            if mask is not None:
                if not mask[sl].any():
                    continue
                sub["reset_mask"] = mask[sl]
            calls[k] = w.reset.remote(seeds[sl], sub)
        infos: list[dict[str, Any]] = [{} for _ in self.workers]
        for k, (obs, info) in zip(calls, ray.get(list(calls.values()))):
            self._obs[k], infos[k] = obs, info
        return _join(self._obs), merge_infos(infos, self.sizes)

    def step(self, actions: np.ndarray) -> tuple[Any, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        actions = np.asarray(actions)
        if actions.shape != self.action_space.shape:
            raise EnvConfigError(f"actions must have shape {self.action_space.shape}, got {actions.shape}")
        results = ray.get([w.step.remote(actions[sl]) for w, sl in zip(self.workers, self._slices())])
        self._obs = [r[0] for r in results]
        return (_join(self._obs), *(np.concatenate([r[i] for r in results]) for i in (1, 2, 3)),
                merge_infos([r[4] for r in results], self.sizes))

    def render(self) -> tuple[np.ndarray, ...] | None:
        if self.render_mode != "rgb_array":
            return None
        # A sub-env not reset yet has no frame: its entry is None.
        return tuple(frame for part in ray.get([w.render.remote() for w in self.workers]) for frame in part)

    def close_extras(self, **kwargs: Any) -> None:
        if ray.is_initialized():
            ray.get([w.close.remote() for w in self.workers])
            for w in self.workers:
                ray.kill(w)
            if self._owns_ray:
                ray.shutdown()
        self.workers = []


def rllib_env(config: Mapping[str, Any]) -> RayCameraNavVectorEnv:
    """RLlib env creator: ``config.environment(env=rllib_env, env_config={...})`` with
    ``config.env_runners(gym_env_vectorize_mode="vector_entry_point", num_envs_per_env_runner=N)``.
    env_config holds RayCameraNavVectorEnv's settings (``env_workers``: its actors, default 2);
    RLlib adds ``num_envs``."""
    settings = dict(config)
    num_envs = int(settings.pop("num_envs", 2))
    workers = int(settings.pop("env_workers", min(2, num_envs)))
    return RayCameraNavVectorEnv(num_envs, num_workers=workers, **settings)
