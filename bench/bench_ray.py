"""Ray scaling: CameraNav views/s and `rtfm replay --ray` bags/min with 1 and 2 workers.

Usage: .venv/bin/python bench/bench_ray.py [--envs 8] [--steps 20] [--bags 4] [--seconds 2] [--workers 1,2]
Starts a local Ray cluster per case (as many CPUs as workers). Views: RayCameraNavVectorEnv,
``--envs`` sub-envs split over the workers (1 torch thread each), steady setting of
bench_envs.py (fixed world, collisions block), 64x64, random actions; the in-process
CameraNavVectorEnv with 1 torch thread as the baseline. Replay: ``--bags`` synthetic bags
(bench_replay.write_bag) seeded from their images, rendered at 10 Hz, 64x64, one task per bag.
"""

from __future__ import annotations

import rtfm_ros  # noqa: F401  (first: sets OMP_WAIT_POLICY before torch loads)

# isort: split
import argparse
import os
import tempfile
import time
from pathlib import Path

import ray
import torch
from bench_replay import write_bag
from machine import machine

from rtfm_ros.envs.ray_vector import RayCameraNavVectorEnv
from rtfm_ros.envs.vector import CameraNavVectorEnv
from rtfm_ros.geometry import PinholeCamera
from rtfm_ros.replay import ReplayOptions
from rtfm_ros.replay.folder import replay_folder

STEADY = dict(world_seed=3, collision="block", max_episode_steps=10_000)


def views_per_second(envs, steps: int) -> float:
    envs.reset(seed=0)
    envs.action_space.seed(0)
    envs.step(envs.action_space.sample())  # warm-up
    t = time.perf_counter()
    for _ in range(steps):
        envs.step(envs.action_space.sample())
    rate = envs.num_envs * steps / (time.perf_counter() - t)
    envs.close()
    return rate


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--envs", type=int, default=8, help="sub-envs in all")
    ap.add_argument("--steps", type=int, default=20, help="vector steps per run")
    ap.add_argument("--bags", type=int, default=4)
    ap.add_argument("--seconds", type=float, default=2.0, help="length of each bag")
    ap.add_argument("--workers", default="1,2")
    args = ap.parse_args()
    workers = [int(w) for w in args.workers.split(",")]
    print(f"machine: {machine(f'torch {torch.__version__}, ray {ray.__version__}')}")
    print(f"{args.envs} sub-envs x {args.steps} vector steps, 64x64, steady; {args.bags} bags of "
          f"{args.seconds:g} s, 10 Hz, 64x64\n")
    print("| workers | views/s | replay bags/min | replay frames/s |")
    print("|---|---:|---:|---:|")
    torch.set_num_threads(1)
    base = views_per_second(CameraNavVectorEnv(args.envs, **STEADY), args.steps)
    print(f"| in-process (1 thread) | {base:.1f} | | |", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "bags"
        folder.mkdir()
        for i in range(args.bags):
            write_bag(folder / f"bag{i}", args.seconds)
        opt = ReplayOptions(camera_frame="camera_optical", seed_topic="/cam/image_raw", rate_hz=10.0,
                            camera=PinholeCamera.from_fov(64, 64, 90), progress=False)
        for n in workers:
            ray.init(num_cpus=n, include_dashboard=False, log_to_driver=False)
            try:
                views = views_per_second(RayCameraNavVectorEnv(args.envs, num_workers=n, threads=1, **STEADY),
                                         args.steps)
                t = time.perf_counter()
                outcomes = replay_folder(folder, Path(tmp) / f"out{n}", opt, threads=1)
                sec = time.perf_counter() - t
            finally:
                ray.shutdown()
            assert all(o.ok for o in outcomes), [o.error for o in outcomes if not o.ok]
            frames = sum(o.rendered for o in outcomes)
            print(f"| {n} | {views:.1f} | {60 * len(outcomes) / sec:.1f} | {frames / sec:.1f} |", flush=True)
    print(f"\nload average {os.getloadavg()[0]:.1f} at the end")


if __name__ == "__main__":
    main()
