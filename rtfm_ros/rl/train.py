"""PPO from pixels in CameraNav with Stable-Baselines3.

Why SB3: a maintained, tested PPO (the reference implementation many papers compare against)
that runs on one CPU core with a small CNN and takes any VecEnv, so the batched env plugs in
without a second process per sub-env. Its ``PPO.learn`` drives the loop; the callback below
adds what a long CPU run needs: a progress bar, one CSV row per rollout (episode returns,
success rate, losses) and a pickle-free policy checkpoint every ``checkpoint_every`` steps.
"""

from __future__ import annotations

import csv
import json
import time
from collections import deque
from pathlib import Path
from typing import Any

import numpy as np

from rtfm_ros.rl.config import TaskConfig, TrainConfig

CSV_FIELDS = ("timesteps", "elapsed_s", "episodes", "return_mean", "success_rate", "length_mean",
              "policy_gradient_loss", "value_loss", "entropy_loss", "approx_kl")
WINDOW = 50  # episodes behind each CSV row's means


def _callback(cfg: TrainConfig, task: TaskConfig, save: Any) -> Any:
    from stable_baselines3.common.callbacks import BaseCallback
    from tqdm import tqdm

    class RunLog(BaseCallback):
        """CSV row per rollout, checkpoint every cfg.checkpoint_every steps, progress bar."""

        def _on_training_start(self) -> None:
            self.start = time.time()
            self.recent: deque[dict[str, Any]] = deque(maxlen=WINDOW)
            self.episodes = 0
            self.next_checkpoint = cfg.checkpoint_every
            cfg.out.mkdir(parents=True, exist_ok=True)
            self.file = (cfg.out / "progress.csv").open("w", newline="")
            self.writer = csv.DictWriter(self.file, CSV_FIELDS)
            self.writer.writeheader()
            self.bar = tqdm(total=cfg.timesteps, desc=f"PPO on {cfg.source} views", unit="step",
                            disable=not cfg.progress, smoothing=0.05)

        def _on_step(self) -> bool:
            for info in self.locals["infos"]:
                if "episode" in info:
                    self.recent.append(info["episode"])
                    self.episodes += 1
            self.bar.update(self.training_env.num_envs)
            if self.num_timesteps >= self.next_checkpoint:
                save(cfg.out / "checkpoints" / f"step_{self.num_timesteps:08d}", self.num_timesteps)
                self.next_checkpoint += cfg.checkpoint_every
            return True

        def _on_rollout_end(self) -> None:
            logged = self.model.logger.name_to_value  # the previous update's losses
            eps = list(self.recent)
            row = {"timesteps": self.num_timesteps, "elapsed_s": round(time.time() - self.start, 1),
                   "episodes": self.episodes,
                   "return_mean": float(np.mean([e["r"] for e in eps])) if eps else "",
                   "success_rate": float(np.mean([e["success"] for e in eps])) if eps else "",
                   "length_mean": float(np.mean([e["l"] for e in eps])) if eps else ""}
            for key in CSV_FIELDS[6:]:
                v = logged.get(f"train/{key}")
                row[key] = "" if v is None else float(v)
            self.writer.writerow(row)
            self.file.flush()
            if eps:
                self.bar.set_postfix(success=f"{row['success_rate']:.2f}", ret=f"{row['return_mean']:.2f}")

        def _on_training_end(self) -> None:
            self.bar.close()
            self.file.close()

    return RunLog()


def train(cfg: TrainConfig, task: TaskConfig, *, model: Any = None) -> Path:
    """Train PPO; returns the folder holding the final policy.safetensors + policy.json."""
    import torch
    from stable_baselines3 import PPO

    from rtfm_ros.rl.agent import NavVecEnv, policy_kwargs, save_policy

    torch.set_num_threads(cfg.threads)
    venv = NavVecEnv(task, cfg.source, cfg.num_envs, model=model)
    venv.seed(cfg.seed)
    batch = min(cfg.batch_size, cfg.n_steps * cfg.num_envs)
    ppo = PPO("CnnPolicy", venv, n_steps=cfg.n_steps, batch_size=batch, n_epochs=cfg.epochs,
              learning_rate=cfg.learning_rate, gamma=cfg.gamma, ent_coef=cfg.ent_coef, seed=cfg.seed,
              policy_kwargs=policy_kwargs(), device="cpu", verbose=0)
    high = venv.action_space.high.tolist()  # type: ignore[attr-defined]
    settings = {k: str(v) if isinstance(v, Path) else v for k, v in cfg.__dict__.items()}

    def save(folder: Path, steps: int) -> Path:
        return save_policy(ppo.policy, folder, task, {"action_high": high, "source": cfg.source,
                                                      "timesteps": steps, "train": settings})

    cfg.out.mkdir(parents=True, exist_ok=True)
    (cfg.out / "config.json").write_text(json.dumps({"task": task.to_dict(), "train": settings}, indent=1))
    try:
        ppo.learn(total_timesteps=cfg.timesteps, callback=_callback(cfg, task, save))
    finally:
        venv.close()
    save(cfg.out, ppo.num_timesteps)
    return cfg.out
