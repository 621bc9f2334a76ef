"""Train a small navigation policy on rtfm/CameraNav-v0 with PPO (plain PyTorch, no RL library).

The policy sees what the world model renders (a tiny CNN over the image) plus the goal's
position in the robot frame, and outputs (v, omega) from a Gaussian. All sub-envs render in one
batched model call per step (gym.make_vec with the vector entry point).

Usage: .venv/bin/python examples/train_policy.py [--minutes 5] [--envs 16] [--size 32] [--threads 0]
Prints, per update, the mean return and success rate of the last WINDOW (32) episodes of all
sub-envs. Shorter episodes and fewer seed views than the env defaults keep a few minutes useful.
Saves nothing unless --out is given (a safetensors file of the policy weights).
"""

from __future__ import annotations

import argparse
import time
from collections import deque
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch
from torch import nn

import rtfm_ros
import rtfm_ros.envs  # noqa: F401  (registers rtfm/CameraNav-v0)

WINDOW = 32  # episodes in the running means printed


class Policy(nn.Module):
    """Actor: tiny CNN on the image + MLP on the goal -> Gaussian over actions in [-1, 1].
    Critic: an MLP on the goal alone (what the return mostly depends on; steadier early on)."""

    def __init__(self) -> None:
        super().__init__()
        self.cnn = nn.Sequential(
            nn.Conv2d(3, 16, 5, stride=2, padding=2), nn.ReLU(),
            nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(32, 32, 3, stride=2, padding=1), nn.ReLU(),
            nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(128, 64), nn.ReLU())
        self.goal = nn.Sequential(nn.Linear(4, 64), nn.Tanh())
        self.trunk = nn.Sequential(nn.Linear(128, 64), nn.Tanh())
        self.mu = nn.Linear(64, 2)
        self.critic = nn.Sequential(nn.Linear(4, 64), nn.Tanh(), nn.Linear(64, 64), nn.Tanh(), nn.Linear(64, 1))
        self.log_std = nn.Parameter(torch.full((2,), -0.5))
        nn.init.zeros_(self.mu.bias)
        self.mu.weight.data.mul_(0.1)

    @staticmethod
    def goal_features(goal: torch.Tensor) -> torch.Tensor:
        """(distance, cos bearing, sin bearing, 1/(1+distance)): scale-free inputs."""
        d = goal.norm(dim=1, keepdim=True).clamp_min(1e-6)
        return torch.cat([d, goal / d, 1 / (1 + d)], dim=1)

    def forward(self, image: torch.Tensor, goal: torch.Tensor):
        x = image.permute(0, 3, 1, 2).float() / 255
        g = self.goal_features(goal)
        h = self.trunk(torch.cat([self.cnn(x), self.goal(g)], dim=1))
        return torch.tanh(self.mu(h)), self.log_std.expand(h.shape[0], 2), self.critic(g)[:, 0]


def log_prob(mu, log_std, a):
    return torch.distributions.Normal(mu, log_std.exp()).log_prob(a).sum(-1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=5.0)
    ap.add_argument("--envs", type=int, default=16)
    ap.add_argument("--size", type=int, default=32, help="camera image size (multiple of 8)")
    ap.add_argument("--horizon", type=int, default=8, help="vector steps per update")
    ap.add_argument("--world-kind", default="room")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=0,
                    help="torch threads (0: PyTorch's default; 1 is steadier on a busy shared machine)")
    ap.add_argument("--out", type=Path, help="save the policy weights here (safetensors)")
    args = ap.parse_args()
    torch.manual_seed(args.seed)
    if args.threads:
        torch.set_num_threads(args.threads)
    envs = gym.make_vec("rtfm/CameraNav-v0", num_envs=args.envs, vectorization_mode="vector_entry_point",
                        observation="dict", width=args.size, height=args.size, world_kind=args.world_kind,
                        max_episode_steps=24, goal_distance=(0.6, 1.5), collision="block", collision_reward=-0.2,
                        seed_turn_views=4, seed_path_views=2)
    limits = torch.as_tensor(envs.single_action_space.high)
    policy = Policy()
    opt = torch.optim.Adam(policy.parameters(), lr=3e-3)
    gamma, lam, clip = 0.95, 0.8, 0.2
    obs, _ = envs.reset(seed=args.seed)
    ep_return = np.zeros(args.envs)
    done_prev = np.zeros(args.envs, dtype=bool)  # next step is an autoreset step: not a transition
    returns: deque[float] = deque(maxlen=WINDOW)
    successes: deque[bool] = deque(maxlen=WINDOW)
    start, env_steps, update, episodes = time.monotonic(), 0, 0, 0
    print(f"| update | minutes | env steps | steps/s | episodes | mean return (last {WINDOW}) "
          f"| success rate (last {WINDOW}) |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    while time.monotonic() - start < 60 * args.minutes:
        buf = {k: [] for k in ("image", "goal", "act", "logp", "val", "rew", "term", "ended", "valid")}
        for _ in range(args.horizon):
            img, goal = torch.as_tensor(obs["image"]), torch.as_tensor(obs["goal"])
            with torch.no_grad():
                mu, log_std, val = policy(img, goal)
                act = (mu + log_std.exp() * torch.randn_like(mu)).clamp(-1, 1)
                logp = log_prob(mu, log_std, act)
            obs, rew, term, trunc, info = envs.step((act * limits).numpy())
            done = term | trunc
            for k, v in (("image", img), ("goal", goal), ("act", act), ("logp", logp),
                         ("val", val), ("rew", rew), ("term", term), ("ended", done), ("valid", ~done_prev)):
                buf[k].append(torch.as_tensor(v, dtype=torch.float32) if k in ("rew", "term", "ended") else
                              torch.as_tensor(v))
            env_steps += int((~done_prev).sum())
            ep_return += np.where(done_prev, 0.0, rew)
            for i in np.flatnonzero(done):
                returns.append(ep_return[i])
                successes.append(bool(info["success"][i]))
                ep_return[i] = 0.0
                episodes += 1
            done_prev = done
        with torch.no_grad():
            _, _, last_val = policy(torch.as_tensor(obs["image"]), torch.as_tensor(obs["goal"]))
        B = {k: torch.stack(v) for k, v in buf.items()}
        # GAE. Next-step autoreset: the obs after an episode's last step is its final obs (so V of it
        # bootstraps a truncation) and the step after is the reset, which carries no transition.
        adv = torch.zeros_like(B["rew"])
        nxt_adv = torch.zeros(args.envs)
        for t in reversed(range(args.horizon)):
            nxt_val = last_val if t == args.horizon - 1 else B["val"][t + 1]
            delta = B["rew"][t] + gamma * nxt_val * (1 - B["term"][t]) - B["val"][t]
            nxt_adv = adv[t] = (delta + gamma * lam * (1 - B["ended"][t]) * nxt_adv) * B["valid"][t]
        ret = adv + B["val"]
        mask = B["valid"].reshape(-1)
        flat = {k: v.reshape(-1, *v.shape[2:])[mask] for k, v in B.items()}
        flat_adv, flat_ret = adv.reshape(-1)[mask], ret.reshape(-1)[mask]
        flat_adv = (flat_adv - flat_adv.mean()) / (flat_adv.std() + 1e-8)
        n = flat_adv.shape[0]
        for _ in range(10):
            for idx in torch.randperm(n).split(64):
                mu, log_std, val = policy(flat["image"][idx], flat["goal"][idx])
                ratio = (log_prob(mu, log_std, flat["act"][idx]) - flat["logp"][idx]).exp()
                a = flat_adv[idx]
                loss = (-torch.min(ratio * a, ratio.clamp(1 - clip, 1 + clip) * a).mean()
                        + 0.5 * (val - flat_ret[idx]).pow(2).mean() - 0.001 * log_std.sum(-1).mean())
                opt.zero_grad()
                loss.backward()
                nn.utils.clip_grad_norm_(policy.parameters(), 0.5)
                opt.step()
        update += 1
        minutes = (time.monotonic() - start) / 60
        mean_ret = f"{np.mean(returns):.2f}" if returns else "-"
        rate = f"{np.mean(successes):.2f}" if successes else "-"
        print(f"| {update} | {minutes:.1f} | {env_steps} | {env_steps / (60 * minutes):.1f} | {episodes} "
              f"| {mean_ret} | {rate} |", flush=True)
    envs.close()
    if args.out is not None:
        from safetensors.torch import save_file
        save_file({k: v.contiguous() for k, v in policy.state_dict().items()}, str(args.out))
        print(f"saved {args.out}")


if __name__ == "__main__":
    main()
