"""Ablation of the learned monocular depth prior: a world seeded from ONE photo (no depth, no
neighbour for stereo) rendered a little way off, with the prior vs the no-learning fallback
(a flat plane) vs copying the photo. Held-out procedural worlds, ground truth from MuJoCo.

Usage: .venv/bin/python bench/bench_single_photo.py [--worlds 8] [--res 128] [--checkpoint DIR]
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from machine import machine

from rtfm_ros.evaluate.metrics import psnr
from rtfm_ros.geometry import PinholeCamera
from rtfm_ros.render.config import RenderConfig
from rtfm_ros.world import WorldModel


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--worlds", type=int, default=8)
    ap.add_argument("--res", type=int, default=128)
    ap.add_argument("--checkpoint", help="model checkpoint (default: the bundled model)")
    args = ap.parse_args()
    from rtfm_ros.sim.renderer import WorldRenderer
    from rtfm_ros.sim.trajectories import make_trajectory
    from rtfm_ros.sim.worlds import HELDOUT_SEED_BASE, KINDS, make_world

    cam = PinholeCamera.from_fov(args.res, args.res, 90)
    lead = WorldModel.load(args.checkpoint)
    scores: dict[str, list[float]] = {"prior (learned)": [], "flat (no learning)": [], "copy the photo": []}
    for w in range(args.worlds):
        seed = HELDOUT_SEED_BASE + 500 + w
        world = make_world(seed, KINDS[seed % len(KINDS)])
        poses = make_trajectory(world, "ground_robot", 6, 0).T_world_camera
        with WorldRenderer(world, cam) as r:
            views = [r.render(T)[0] for T in poses]
        for name, learned in (("prior (learned)", True), ("flat (no learning)", False)):
            wm = WorldModel(lead.core, config=RenderConfig(use_prior=learned))
            wm.add_frame(views[0], poses[0], cam)
            scores[name] += [psnr(wm.render(T, cam, remember=False), v) for T, v in zip(poses[1:], views[1:])]
        scores["copy the photo"] += [psnr(views[0], v) for v in views[1:]]
    print(f"machine: {machine(f'torch {torch.__version__}')}; "
          f"{args.worlds} held-out worlds, {args.res}x{args.res}, views 1-5 steps from the photo")
    print("| single photo, no depth | PSNR (dB) |")
    print("|---|---|")
    for name, v in scores.items():
        print(f"| {name} | {np.mean(v):.2f} |")


if __name__ == "__main__":
    main()
