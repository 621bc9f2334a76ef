"""The learned renderer's cost: one stream, learned renderer on vs off, at the sizes a camera uses.

Usage: .venv/bin/python bench/bench_learned.py [--threads 2] [--repeats 15] [--device cpu|cuda]
One process, both rows at each size back to back (compare them as ratios). Prints a markdown
table of medians (ms per view and fps) with the machine it ran on.
"""

from __future__ import annotations

import argparse
import dataclasses

import torch
from bench_model import seeded_world, time_it
from machine import machine

from rtfm_ros.geometry import PinholeCamera, look_at  # first: sets OpenMP's wait policy before torch loads
from rtfm_ros.world import WorldModel

SIZES = ((128, 128), (320, 240), (640, 480))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--checkpoint", help="checkpoint folder with renderer.safetensors (default: the bundled one)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    print(machine())
    print(f"torch threads {torch.get_num_threads()}, repeats {a.repeats}")
    base = WorldModel.load(a.checkpoint, device=a.device)
    if base.core.learned_renderer is None:
        raise SystemExit("the checkpoint has no learned renderer")
    print("| view | learned renderer off: ms (fps) | on: ms (fps) | on / off |")
    print("|---|---|---|---|")
    for w, h in SIZES:
        seeded_world(base, n=24, width=w, height=h)
        off = WorldModel(base.core, base.memory, config=dataclasses.replace(base.config, use_learned=False))
        cam = PinholeCamera.from_fov(w, h, 90)
        T = look_at([0.2, 0.1, 1.0], [3.0, 0.5, 1.0])
        t_off = time_it(lambda: off.render(T, cam, remember=False), a.repeats)  # noqa: B023
        t_on = time_it(lambda: base.render(T, cam, remember=False), a.repeats)  # noqa: B023
        print(f"| {w}x{h} | {1000 * t_off:.1f} ({1 / t_off:.1f}) | {1000 * t_on:.1f} ({1 / t_on:.1f}) | "
              f"{t_on / t_off:.2f} |")
        base.reset()


if __name__ == "__main__":
    main()
