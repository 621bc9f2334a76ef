"""Renderer speed: one stream with cached context, and batched throughput.

Usage: .venv/bin/python bench/bench_model.py [--checkpoint DIR] [--device cpu|cuda] [--repeats 30]
Prints a markdown table (medians) with the machine it ran on.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch
from machine import machine

from rtfm_ros.geometry import PinholeCamera, look_at  # first: sets OpenMP's wait policy before torch loads
from rtfm_ros.world import WorldModel


def seeded_world(wm: WorldModel, n: int = 24, width: int = 64, height: int = 64, depth: bool = True) -> None:
    """A ring of seed frames (textured noise, with depth unless ``depth`` is False) around the origin."""
    rng = np.random.default_rng(0)
    cam = PinholeCamera.from_fov(width, height, 90)
    for i in range(n):
        a = 2 * np.pi * i / n
        T = look_at([np.cos(a), np.sin(a), 1.0], [3 * np.cos(a), 3 * np.sin(a), 1.0])
        img = (rng.random((height, width, 3)) * 255).astype(np.uint8)
        wm.add_frame(img, T, cam, depth=np.full((height, width), 3.0, np.float32) if depth else None)


def time_it(fn, repeats: int) -> float:
    fn()
    fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--checkpoint")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--repeats", type=int, default=30)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: PyTorch's default)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"machine: {machine(f'torch {torch.__version__}, {torch.get_num_threads()} torch threads')}")
    print("| view | frames in memory | batch | median latency (ms) | views/s |")
    print("|---|---|---|---|---|")
    cases = [((64, 64), (64, 64), (1, 16, 64)), ((128, 128), (640, 480), (1,)), ((320, 240), (640, 480), (1,)),
             ((640, 480), (640, 480), (1,))]
    for (w, h), (fw, fh), batches in cases:
        wm = WorldModel.load(args.checkpoint, device=args.device)
        seeded_world(wm, width=fw, height=fh)
        cam = PinholeCamera.from_fov(w, h, 90)
        for batch in batches:
            poses = np.stack([look_at([0.1 * (i % 4), 0.05 * i, 1.0], [3.0, 0.5, 1.0]) for i in range(batch)])
            sec = time_it(lambda wm=wm, poses=poses, cam=cam: wm.render_batch(poses, cam, remember=False),
                          args.repeats if batch == 1 else 5)
            print(f"| {w}x{h} | {fw}x{fh} | {batch} | {sec * 1000:.1f} | {batch / sec:.1f} |")
    # Depth of a new frame without depth (stereo over its neighbours): paid once, when it is stored.
    wm = WorldModel.load(args.checkpoint, device=args.device)
    seeded_world(wm, n=8, width=640, height=480, depth=False)
    ids = list(wm.memory)
    fresh = wm.with_memory(wm.memory)  # the same frames, nothing prepared yet
    times = []
    for i in ids:
        t = time.perf_counter()
        fresh.prepare(i)
        times.append(time.perf_counter() - t)
    print(f"\nstereo depth of one stored 640x480 frame (4 neighbours): median {statistics.median(times) * 1000:.0f} ms")


if __name__ == "__main__":
    main()
