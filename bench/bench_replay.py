"""Rosbag replay speed as a multiple of real time (bag seconds rendered per wall second).

Usage: .venv/bin/python bench/bench_replay.py [--checkpoint DIR] [--seconds 10] [--rate 10] [--size 128] [--threads N]
Writes a synthetic bag (TF at 50 Hz along a loop, 2 Hz seed images + CameraInfo, a 50 Hz chatter
topic), then times `rtfm replay` (library call, model already loaded) end to end: TF preload,
seeding, rendering, copying and writing. Prints a markdown table with the machine it ran on.
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from scipy.spatial.transform import Rotation

from rtfm_ros.geometry import R_BODY_OPTICAL, PinholeCamera, make_transform
from rtfm_ros.io.bags import BagWriter, typestore
from rtfm_ros.replay import ReplayOptions, replay
from rtfm_ros.world import WorldModel

T0 = 1_700_000_000_000_000_000


def write_bag(path: Path, seconds: float) -> None:
    """A robot driving a 3 m circle, camera 0.3 m up, looking ahead."""
    rng = np.random.default_rng(0)
    cam = PinholeCamera.from_fov(320, 240, 90)
    string = typestore().types["std_msgs/msg/String"]
    with BagWriter(path) as w:
        w.write_tf([("base_link", "camera_link", make_transform(translation=[0.1, 0, 0.3])),
                    ("camera_link", "camera_optical", make_transform(R_BODY_OPTICAL))], T0, static=True)
        for i in range(int(seconds * 50) + 1):
            t, a = T0 + i * 20_000_000, i * 0.02 * 0.3
            T = make_transform(Rotation.from_euler("z", a + np.pi / 2).as_matrix(), [3 * np.cos(a), 3 * np.sin(a), 0])
            w.write_tf([("map", "base_link", T)], t)
            w.write_message("/chatter", string(data=f"tick {i}"), t)
            if i % 25 == 0:
                w.write_image("/cam/image_raw", rng.integers(0, 256, (240, 320, 3), np.uint8), t, "camera_optical")
                w.write_camera_info("/cam/camera_info", cam, t, "camera_optical")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--checkpoint")
    ap.add_argument("--seconds", type=float, default=10.0, help="bag length")
    ap.add_argument("--rate", type=float, default=10.0, help="render rate (Hz)")
    ap.add_argument("--size", type=int, default=128, help="square image size (multiple of 8)")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: PyTorch's default)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    wm = WorldModel.load(args.checkpoint)
    cam = PinholeCamera.from_fov(args.size, args.size, 90)
    print(f"machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads, "
          f"device {wm.device}, torch {torch.__version__}, model {wm.core.depth_prior.config.name}")
    print(f"bag: {args.seconds:g} s, rendered at {args.rate:g} Hz, {args.size}x{args.size}")
    print("| variant | frames | wall (s) | of which model (s) | ms/frame other | x real time "
          "| x real time, model excluded |")
    print("|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "in"
        write_bag(src, args.seconds)
        variants = [("default (batch 4)", {}), ("--no-remember", dict(remember=False)),
                    ("--no-copy", dict(copy=False)), ("--depth", dict(depth=True)),
                    ("--batch 1", dict(batch_size=1)), ("--batch 16", dict(batch_size=16))]
        for k, (name, kw) in enumerate(variants):
            wm.reset()
            opt = ReplayOptions(camera_frame="camera_optical", seed_topic="/cam/image_raw", rate_hz=args.rate,
                                camera=cam, progress=False, **kw)
            t = time.perf_counter()
            res = replay(src, Path(tmp) / f"out{k}", opt, world_model=wm)
            wall = time.perf_counter() - t
            other = (wall - res.render_seconds) / res.rendered * 1000
            print(f"| {name} | {res.rendered} | {wall:.2f} | {res.render_seconds:.2f} | {other:.1f} | "
                  f"{res.bag_seconds / wall:.2f} | {res.bag_seconds / (wall - res.render_seconds):.0f} |")


if __name__ == "__main__":
    main()
