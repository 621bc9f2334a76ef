"""CameraNav throughput: environment steps per second, 1 and 16 sub-envs, 64x64 views.

Usage: .venv/bin/python bench/bench_envs.py [--steps 10] [--repeats 5] [--device auto] [--threads 0]
Prints a markdown table (median of --repeats runs) with the machine it ran on.

Two settings per size:
- ``steady``: one fixed world, collisions block (no episode ends): the cost of a step alone
  (kinematics, context juggling, one batched model call, remembering new views).
- ``episodes``: the defaults (a new procedural world per episode, collisions end episodes) with
  random actions, so resets (building the world, MuJoCo seed frames, encoding them) are included.
"""

from __future__ import annotations

import rtfm_ros  # noqa: F401  (first: sets OMP_WAIT_POLICY before torch loads)

# isort: split
import argparse
import os
import platform
import statistics
import time

import gymnasium as gym
import torch

from rtfm_ros.envs import ENV_ID
from rtfm_ros.world import WorldModel

SETTINGS = {
    "steady": dict(world_seed=3, collision="block", max_episode_steps=10_000),
    "episodes": dict(),
}


def run(network, num_envs: int, setting: str, steps: int, seed: int) -> float:
    """Env steps per second over ``steps`` vector steps after a reset (the reset is not timed)."""
    envs = gym.make_vec(ENV_ID, num_envs=num_envs, vectorization_mode="vector_entry_point", model=network,
                        **SETTINGS[setting])
    envs.reset(seed=seed)
    envs.action_space.seed(seed)
    envs.step(envs.action_space.sample())  # warm-up (first model call)
    t = time.perf_counter()
    for _ in range(steps):
        envs.step(envs.action_space.sample())
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    sec = time.perf_counter() - t
    envs.close()
    return num_envs * steps / sec


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=10, help="vector steps per run")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: PyTorch's default)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    wm = WorldModel.load(device=args.device)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"{torch.get_num_threads()} torch threads, device {wm.device}, torch {torch.__version__}, "
          f"gymnasium {gym.__version__}, model {wm.core.depth_prior.config.name}, "
          f"load average {os.getloadavg()[0]:.1f} at start")
    print(f"median of {args.repeats} runs of {args.steps} vector steps, 64x64 views, random actions")
    print()
    print("| envs | setting | env steps/s | ms per vector step | runs (steps/s) |")
    print("|---:|---|---:|---:|---|")
    cases = [(n, setting) for setting in SETTINGS for n in (1, 16)]
    rates: dict[tuple[int, str], list[float]] = {c: [] for c in cases}
    for r in range(args.repeats):  # round-robin, so load changes on a shared machine hit every case alike
        for n, setting in cases:
            # a fresh world on the shared render core: the env's default model, learned renderer included
            rates[(n, setting)].append(run(WorldModel(wm.core), n, setting, args.steps, seed=r))
    for n, setting in cases:
        rate = statistics.median(rates[(n, setting)])
        runs = ", ".join(f"{x:.1f}" for x in rates[(n, setting)])
        print(f"| {n} | {setting} | {rate:.1f} | {1000 * n / rate:.0f} | {runs} |")
    print(f"\nload average {os.getloadavg()[0]:.1f} at the end")

if __name__ == "__main__":
    main()
