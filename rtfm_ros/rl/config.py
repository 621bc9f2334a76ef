"""Settings of the RL commands: the task (shared by training and evaluation), training and evaluation.

The task's defaults are the tuned easy variant documented in the README (small images, a
short reach to a red post roughly ahead, collisions that block rather than end the episode):
hard enough that random actions rarely succeed, easy enough that PPO learns it from pixels in
about 45 minutes of one CPU core.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rtfm_ros.options import setting
from rtfm_ros.sim.worlds import HELDOUT_SEED_BASE, KINDS

# rtfm_ros.envs.slot.OBSERVATION_SOURCES, spelled out so that building the CLI parser does not
# import torch and MuJoCo (tests/test_rl.py checks that they agree).
OBSERVATION_SOURCES = ("model", "mujoco")
BASELINES = ("random", "forward")
# Held-out evaluation worlds start here, clear of the seeds the suite and the demo use.
EVAL_SEED_BASE = HELDOUT_SEED_BASE + 50_000


class RLConfigError(ValueError):
    """An RL setting that cannot be used."""


def _positive(obj: Any, names: tuple[str, ...]) -> None:
    for name in names:
        v = getattr(obj, name)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
            raise RLConfigError(f"{name} must be a positive number, got {v!r}")


@dataclass(frozen=True)
class TaskConfig:
    """The CameraNav task the policy is trained and scored on (saved with the policy)."""

    size: int = setting(32, "observation width and height in pixels (square, at most 64)")
    world_kind: str = setting("room", "procedural world kind", choices=KINDS)
    goal_min: float = setting(1.0, "nearest start-goal distance, metres")
    goal_max: float = setting(2.5, "farthest start-goal distance, metres")
    goal_radius: float = setting(0.5, "success when the robot centre is this close to the goal, metres")
    heading_spread: float = setting(60.0, "start yaw within +- this many degrees of the goal's bearing")
    max_steps: int = setting(50, "steps before an episode is truncated")
    shaping: float = setting(2.0, "reward per metre of progress toward the goal")
    success_reward: float = setting(10.0, "reward on reaching the goal")
    collision_reward: float = setting(-0.2, "reward for each step blocked by an obstacle")
    step_reward: float = setting(-0.01, "reward every step (a nudge to hurry)")

    def __post_init__(self) -> None:
        if isinstance(self.size, bool) or not isinstance(self.size, int) or not 8 <= self.size <= 64:
            raise RLConfigError(f"size must be an integer in [8, 64], got {self.size!r}")
        _positive(self, ("goal_max", "goal_radius", "max_steps"))
        if not 0 <= self.goal_min <= self.goal_max:
            raise RLConfigError(f"need 0 <= goal_min <= goal_max, got {self.goal_min}, {self.goal_max}")
        if self.world_kind not in KINDS:
            raise RLConfigError(f"world_kind must be one of {KINDS}, got {self.world_kind!r}")

    def env_kwargs(self, source: str) -> dict[str, Any]:
        """CameraNav settings for this task with ``source`` eyes (image observations)."""
        return {"observation": "image", "observation_source": source, "width": self.size, "height": self.size,
                "world_kind": self.world_kind, "goal_distance": (self.goal_min, self.goal_max),
                "goal_radius": self.goal_radius,
                "start_heading_spread_deg": self.heading_spread, "max_episode_steps": self.max_steps,
                "collision": "block", "shaping": self.shaping, "success_reward": self.success_reward,
                "collision_reward": self.collision_reward, "step_reward": self.step_reward}

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class TrainConfig:
    """PPO training: where, how long, and the few PPO settings that matter here."""

    out: Path = setting(help="run folder: progress.csv, checkpoints/, policy.safetensors + policy.json")
    source: str = setting("model", "who renders the training observations", choices=OBSERVATION_SOURCES)
    timesteps: int = setting(100_000, "environment steps in all")
    num_envs: int = setting(8, "sub-environments stepped (and rendered) together")
    n_steps: int = setting(128, "steps per sub-environment per PPO rollout")
    batch_size: int = setting(256, "PPO minibatch size")
    epochs: int = setting(4, "PPO epochs per rollout")
    learning_rate: float = setting(3e-4, "Adam learning rate")
    gamma: float = setting(0.98, "discount")
    ent_coef: float = setting(0.0, "entropy bonus")
    seed: int = setting(0, "seed of the policy and of the sub-environments' episodes")
    threads: int = setting(1, "torch threads")
    checkpoint_every: int = setting(10_000, "steps between policy checkpoints")
    progress: bool = setting(True, "progress bar", flag="--no-progress")

    def __post_init__(self) -> None:
        if self.source not in OBSERVATION_SOURCES:
            raise RLConfigError(f"source must be one of {OBSERVATION_SOURCES}, got {self.source!r}")
        _positive(self, ("timesteps", "num_envs", "n_steps", "batch_size", "epochs", "learning_rate",
                         "threads", "checkpoint_every"))
        if not 0 < self.gamma <= 1:
            raise RLConfigError(f"gamma must be in (0, 1], got {self.gamma}")


@dataclass(frozen=True)
class EvalConfig:
    """Scoring on held-out worlds: episode k runs in world EVAL_SEED_BASE + k with start and goal
    from seed k, so every policy and both sources meet the same episodes."""

    policy: Path | None = setting(None, "policy folder or its policy.safetensors (rtfm rl train); none: --baseline")
    baseline: str = setting("random", "without a policy: random actions, or full speed straight ahead (blind)",
                            choices=BASELINES)
    source: str = setting("model", "who renders the observations", choices=OBSERVATION_SOURCES)
    episodes: int = setting(100, "held-out episodes")
    num_envs: int = setting(8, "sub-environments stepped together")
    seed_base: int = setting(EVAL_SEED_BASE, "world seed of the first episode (held out: >= 1000000)")
    threads: int = setting(1, "torch threads")
    stochastic: bool = setting(False, "sample actions instead of taking the policy's mean")
    progress: bool = setting(True, "progress bar", flag="--no-progress")

    def __post_init__(self) -> None:
        if self.source not in OBSERVATION_SOURCES:
            raise RLConfigError(f"source must be one of {OBSERVATION_SOURCES}, got {self.source!r}")
        if self.baseline not in BASELINES:
            raise RLConfigError(f"baseline must be one of {BASELINES}, got {self.baseline!r}")
        _positive(self, ("episodes", "num_envs", "threads"))
        if self.seed_base < HELDOUT_SEED_BASE:
            raise RLConfigError(f"seed_base {self.seed_base} is a training world; held-out worlds are >= "
                                f"{HELDOUT_SEED_BASE}")
