"""Score a policy, random actions or driving straight ahead on held-out CameraNav worlds.

Episode k runs in world ``seed_base + k`` (seeds >= HELDOUT_SEED_BASE, which no training ever
draws) with its start and goal drawn from seed k, so a policy on model views, the same policy
on MuJoCo views and random actions all meet exactly the same episodes. The blind "forward"
baseline (full speed, no turning) shows how much of a policy's success needs no eyes at all.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from rtfm_ros.rl.config import EvalConfig, TaskConfig


@dataclass(frozen=True)
class EvalResult:
    episodes: int
    success_rate: float
    return_mean: float
    return_std: float
    length_mean: float
    successes: tuple[bool, ...]

    def line(self) -> str:
        return (f"success {self.success_rate:.1%} ({sum(self.successes)}/{self.episodes})  "
                f"return {self.return_mean:.2f} +- {self.return_std:.2f}  length {self.length_mean:.1f}")


def evaluate(cfg: EvalConfig, task: TaskConfig | None = None, *, model: Any = None) -> tuple[EvalResult, TaskConfig]:
    """Run cfg.episodes held-out episodes; the task is the policy's own unless ``task`` is given
    (random actions need one: TaskConfig() when None)."""
    import torch
    from tqdm import tqdm

    from rtfm_ros.envs.vector import CameraNavVectorEnv
    from rtfm_ros.rl.agent import chw, load_policy

    torch.set_num_threads(cfg.threads)
    policy = None
    if cfg.policy is not None:
        policy, own, _ = load_policy(cfg.policy)
        task = task or own
    task = task or TaskConfig()
    n = min(cfg.num_envs, cfg.episodes)
    env = CameraNavVectorEnv(n, model=model, **task.env_kwargs(cfg.source))
    rng = np.random.default_rng(cfg.seed_base)  # random actions: the same for every source
    low, high = env.single_action_space.low, env.single_action_space.high  # type: ignore[attr-defined]
    done: dict[int, tuple[float, int, bool]] = {}  # episode k -> (return, length, success)
    todo = list(range(cfg.episodes))
    running: list[int | None] = [None] * n
    ret, length = np.zeros(n), np.zeros(n, dtype=np.int64)
    obs: np.ndarray | None = None

    def start(i: int) -> None:
        nonlocal obs
        k = todo.pop(0)
        mask = np.zeros(n, dtype=np.bool_)
        mask[i] = True
        seeds: list[int | None] = [None] * n
        seeds[i] = k
        first, _ = env.reset(seed=seeds, options={"reset_mask": mask, "world_seed": cfg.seed_base + k})
        obs = first if obs is None else np.where(mask[:, None, None, None], first, obs)
        running[i], ret[i], length[i] = k, 0.0, 0

    try:
        # A masked reset needs every sub-env's buffer filled once: a full reset, all in held-out worlds.
        obs, _ = env.reset(seed=list(range(n)), options={"world_seed": cfg.seed_base})
        for i in range(n):
            start(i)
        with tqdm(total=cfg.episodes, desc=f"held-out episodes ({cfg.source})", unit="episode",
                  disable=not cfg.progress) as bar:
            while any(r is not None for r in running):
                assert obs is not None
                if policy is not None:
                    with torch.no_grad():
                        actions, _ = policy.predict(chw(obs), deterministic=not cfg.stochastic)
                elif cfg.baseline == "forward":
                    actions = np.tile(np.array([high[0], 0.0], np.float32), (n, 1))
                else:
                    actions = rng.uniform(low, high, size=(n, len(low))).astype(np.float32)
                nxt, r, terminated, truncated, info = env.step(actions)
                obs = nxt
                for i in range(n):
                    if running[i] is None:
                        continue
                    ret[i] += r[i]
                    length[i] += 1
                    if terminated[i] or truncated[i]:
                        k = running[i]
                        assert k is not None
                        done[k] = (float(ret[i]), int(length[i]), bool(info["success"][i]))
                        bar.update(1)
                        running[i] = None
                        if todo:
                            start(i)
    finally:
        env.close()
    returns = [done[k][0] for k in sorted(done)]
    lengths = [done[k][1] for k in sorted(done)]
    successes = [done[k][2] for k in sorted(done)]
    result = EvalResult(len(returns), float(np.mean(successes)), float(np.mean(returns)), float(np.std(returns)),
                        float(np.mean(lengths)), tuple(successes))
    return result, task
