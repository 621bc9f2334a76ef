"""What completing a frame's checked depth costs (render.planar), paid once per real frame when
its depth is estimated, never per render.

Usage: .venv/bin/python bench/bench_planar.py [--repeats 9]
A synthetic frame (two textured planes, 45 % of the depth missing in scattered pixels and
blocks, four neighbours for the free-space check) at the sizes frames are stored at; prints a
markdown table of medians with the machine it ran on.
"""

from __future__ import annotations

import argparse
from functools import partial

import numpy as np
import torch
from bench_model import time_it
from machine import machine

from rtfm_ros.geometry import PinholeCamera  # first: sets OpenMP's wait policy before torch loads
from rtfm_ros.render.consistency import PosedDepth
from rtfm_ros.render.planar import completed_depth, planar_fill

SIZES = ((320, 240), (640, 480))


def frame(width: int, height: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(rgb, checked depth with holes, true depth, K) of two planes, a wall and a tilted floor."""
    K = PinholeCamera.from_fov(width, height, 70).K
    u, v = np.meshgrid(np.arange(width) + 0.5, np.arange(height) + 0.5)
    rays = np.stack([u, v, np.ones_like(u)], -1) @ np.linalg.inv(K).T
    left = u < width / 2
    truth = np.where(left, 3.0, -2.4 / (rays @ np.array([0.0, -0.6, -0.8]))).astype(np.float32)
    rng = np.random.default_rng(0)
    rgb = np.where(left[..., None], [200, 60, 50], [40, 90, 210]) + rng.integers(-20, 20, (height, width, 3))
    checked = truth.copy()
    checked[rng.random(truth.shape) < 0.3] = np.nan
    checked[height // 4: height // 2, width // 8: width // 3] = np.nan
    return np.clip(rgb, 0, 255).astype(np.uint8), checked, truth, K


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=9)
    a = ap.parse_args()
    torch.set_num_threads(1)
    print(machine())
    print(f"torch threads {torch.get_num_threads()}, repeats {a.repeats}")
    print("| frame | planar fill: ms | + free-space check (4 neighbours): ms | holes filled |")
    print("|---|---|---|---|")
    for w, h in SIZES:
        rgb, checked, truth, K = frame(w, h)
        nb = [PosedDepth(torch.from_numpy(truth), K, np.eye(4))] * 4
        fill = time_it(partial(planar_fill, rgb, checked, K), a.repeats)
        full = time_it(partial(completed_depth, rgb, checked, K, np.eye(4), nb), a.repeats)
        out = completed_depth(rgb, checked, K, np.eye(4), nb)
        holes = ~np.isfinite(checked)
        print(f"| {w}x{h} | {fill * 1e3:.0f} | {full * 1e3:.0f} | {np.isfinite(out[holes]).mean():.0%} |")


if __name__ == "__main__":
    main()
