"""Procedural worlds: render speed per resolution, world/trajectory build time, dataset throughput.

Usage: .venv/bin/python bench/bench_sim.py [--quick] [--workers 2]
Prints markdown tables (medians over worlds) with the machine it ran on. Render speed is
measured along a real ground_robot trajectory in each world (so views are realistic), RGB
alone, depth alone and both (what `rtfm data generate` does per frame).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from machine import machine as machine_line

from rtfm_ros.geometry import PinholeCamera
from rtfm_ros.sim.renderer import MUJOCO_VERSION, WorldRenderer
from rtfm_ros.sim.trajectories import make_trajectory
from rtfm_ros.sim.worlds import KINDS, make_world


def machine() -> str:
    return machine_line(f"MuJoCo {MUJOCO_VERSION}, MUJOCO_GL={os.environ.get('MUJOCO_GL')}")


def fps(fn, poses: np.ndarray) -> float:
    fn(poses[0])  # warm-up (GL context, textures)
    t0 = time.perf_counter()
    for T in poses:
        fn(T)
    return len(poses) / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="fewer worlds and frames")
    ap.add_argument("--workers", type=int, default=2, help="workers for the dataset throughput row")
    args = ap.parse_args()
    n_worlds, frames = (2, 16) if args.quick else (6, 40)
    print(f"Machine: {machine()}\n")

    build, traj_ms = [], []
    worlds = []
    for i in range(n_worlds):
        t0 = time.perf_counter()
        w = make_world(i, KINDS[i % 2])
        build.append(1000 * (time.perf_counter() - t0))
        t0 = time.perf_counter()
        tr = make_trajectory(w, "ground_robot", frames, seed=0)
        traj_ms.append(1000 * (time.perf_counter() - t0))
        worlds.append((w, tr.T_world_camera))
    print("| step | median |\n|---|---|")
    print(f"| build a world (MJCF + textures) | {statistics.median(build):.1f} ms |")
    print(f"| {frames}-frame ground_robot trajectory | {statistics.median(traj_ms):.1f} ms |\n")

    print("| resolution | RGB fps | depth fps | RGB + depth fps | renderer creation |\n|---|---|---|---|---|")
    for res in (64, 128, 256):
        cam = PinholeCamera.from_fov(res, res, 90.0)
        rows = {"rgb": [], "depth": [], "both": [], "create": []}
        for w, poses in worlds:
            t0 = time.perf_counter()
            with WorldRenderer(w, cam) as r:
                r.render_rgb(poses[0])
                rows["create"].append(time.perf_counter() - t0)
                rows["rgb"].append(fps(r.render_rgb, poses))
                rows["depth"].append(fps(r.render_depth, poses))
                rows["both"].append(fps(r.render, poses))
        med = {k: statistics.median(v) for k, v in rows.items()}
        print(f"| {res}x{res} | {med['rgb']:.0f} | {med['depth']:.0f} | {med['both']:.0f} "
              f"| {1000 * med['create']:.0f} ms |")

    from rtfm_ros.data.generate import GenerateConfig, generate

    g_worlds, g_frames = (4, 16) if args.quick else (20, 64)
    print("\n| `rtfm data generate` (64 px, 2 clips/world) | wall time | frames/s |\n|---|---|---|")
    for workers in sorted({1, args.workers}):
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            generate(Path(tmp) / "ds", GenerateConfig(worlds=g_worlds, frames=g_frames, res=64, workers=workers),
                     progress=False)
            dt = time.perf_counter() - t0
        n = g_worlds * 2 * g_frames
        print(f"| {g_worlds} worlds x 2 clips x {g_frames} frames, {workers} worker(s) | {dt:.1f} s | {n / dt:.0f} |")


if __name__ == "__main__":
    main()
