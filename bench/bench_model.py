"""Renderer speed: one stream with cached context, and batched throughput.

Usage: .venv/bin/python bench/bench_model.py [--checkpoint DIR] [--device cpu|cuda] [--repeats 30]
Prints a markdown table (medians) with the machine it ran on.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

from rtfm_ros.geometry import PinholeCamera, look_at  # first: sets OpenMP's wait policy before torch loads
from rtfm_ros.world import WorldModel

import numpy as np  # noqa: E402
import torch  # noqa: E402


def seeded_world(wm: WorldModel, n: int = 24) -> None:
    """A ring of seed frames (textured noise with depth) around the origin."""
    rng = np.random.default_rng(0)
    cam = PinholeCamera.from_fov(64, 64, 90)
    for i in range(n):
        a = 2 * np.pi * i / n
        T = look_at([np.cos(a), np.sin(a), 1.0], [3 * np.cos(a), 3 * np.sin(a), 1.0])
        img = (rng.random((64, 64, 3)) * 255).astype(np.uint8)
        wm.add_frame(img, T, cam, depth=np.full((64, 64), 3.0, np.float32))


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
    wm = WorldModel.load(args.checkpoint, device=args.device)
    seeded_world(wm)
    print(f"machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads, "
          f"device {wm.device}, torch {torch.__version__}, autocast {wm.amp}")
    print("| resolution | batch | median latency (ms) | views/s |")
    print("|---|---|---|---|")
    for res in (64, 128, 256):
        cam = PinholeCamera.from_fov(res, res, 90)
        for batch in (1, 16):
            poses = np.stack([look_at([0.1 * (i % 4), 0.05 * i, 1.0], [3.0, 0.5, 1.0]) for i in range(batch)])
            sec = time_it(lambda: wm.render_batch(poses, cam, remember=False), args.repeats if batch == 1 else 5)
            print(f"| {res}x{res} | {batch} | {sec * 1000:.1f} | {batch / sec:.1f} |")


if __name__ == "__main__":
    main()
