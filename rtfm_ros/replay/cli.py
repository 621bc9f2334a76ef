"""`rtfm replay`: render a simulated camera along the TF trajectory of a recorded ROS 2 bag.

Camera simulation is most useful on data already recorded: a drive through a lab gives the
trajectory (TF) and, with --seed-topic, the real images that seed the world, which can then be
rendered along the same path or new ones (--offset, --poses). All TF is loaded up front, so a
lookup never depends on the order messages were logged. The output bag holds the input's
messages (unless --no-copy) interleaved in time with the rendered Image / CameraInfo (/ depth).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from rtfm_ros.geometry import PinholeCamera
from rtfm_ros.options import add_options, from_options
from rtfm_ros.replay.options import ReplayError, ReplayOptions
from rtfm_ros.replay.render import replay
from rtfm_ros.replay.trajectory import parse_offset


def _camera_arg(args: argparse.Namespace) -> PinholeCamera | None:
    if args.width is None and args.height is None and args.fov is None:
        return None
    return PinholeCamera.from_fov(args.width or 64, args.height or 64, args.fov or 90.0)


def run(args: argparse.Namespace) -> int:
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)  # 1 is often faster on a busy machine than oversubscribed cores
    opt = from_options(ReplayOptions, args, offset=parse_offset(args.offset) if args.offset else None,
                       camera=_camera_arg(args))
    if args.ray is not None:
        return _run_folder(args, opt)
    res = replay(args.bag, args.output, opt)
    if res.output is not None:
        print(f"wrote {res.output}: {res.rendered} frames on {res.topics['image']} over {res.bag_seconds:.2f} s "
              f"of bag time in {res.wall_seconds:.2f} s ({res.realtime_factor:.1f}x real time)")
    if res.seeded:
        print(f"seeded {res.seeded} frames from {opt.seed_topic}")
    if res.skipped:
        print(f"skipped {res.skipped} stamps without TF data")
    if opt.save_world is not None:
        print(f"saved the world ({res.memory_frames if res.output is None else res.seeded} frames) to {opt.save_world}")
    return 0


def _run_folder(args: argparse.Namespace, opt: ReplayOptions) -> int:
    """Every bag of the folder as a Ray task; 0 when all were written, else 2 (after all ran)."""
    from rtfm_ros.replay.folder import describe, replay_folder

    if args.output is None:
        raise ReplayError("--ray needs an output folder (-o), one bag per input goes there")
    outcomes = replay_folder(args.bag, args.output, opt, address=args.ray, threads=args.threads or 1,
                             report=lambda o: print(describe(o), flush=True))
    failed = [o for o in outcomes if not o.ok]
    print(f"{len(outcomes) - len(failed)} of {len(outcomes)} bags replayed into {args.output}"
          + (f"; failed: {', '.join(o.bag.name for o in failed)}" if failed else ""))
    return 2 if failed else 0


def add_parser(sub: Any) -> None:
    p = sub.add_parser("replay", help="render a simulated camera along a ROS 2 bag's TF trajectory",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("bag", type=Path, help="input ROS 2 bag (directory, or .mcap / .db3 file); with --ray a folder "
                                          "of bags")
    p.add_argument("-o", "--output", type=Path, help="output bag directory (must not exist); with --ray the folder "
                                                     "the output bags go to, one per input, named as the input")
    p.add_argument("--ray", nargs="?", const="", metavar="ADDRESS",
                   help="replay every bag of the folder as a Ray task, on the cluster at ADDRESS (e.g. "
                        "head-node:6379), or a local one without it; failures are reported per bag")
    add_options(p, ReplayOptions, ["camera_frame", "world_frame", "body_frame"])
    g = p.add_argument_group("world")
    add_options(g, ReplayOptions, ["world", "seed_topic", "seed_camera_info_topic", "seed_stride", "seed_depth_topic",
                                   "save_world", "checkpoint", "remember"])
    t = p.add_argument_group("when and where")
    add_options(t, ReplayOptions, ["rate_hz", "at_topic", "poses"])
    t.add_argument("--offset", help="x,y,z,yaw: shift the trajectory (metres, world frame) and turn it (degrees)")
    c = p.add_argument_group("camera and output")
    c.add_argument("--width", type=int, help="image width (default 64)")
    c.add_argument("--height", type=int, help="image height (default 64)")
    c.add_argument("--fov", type=float, help="horizontal field of view in degrees (default 90)")
    add_options(c, ReplayOptions, ["camera_info_topic", "topic_prefix", "depth", "depth_source", "storage", "copy",
                                   "batch_size"])
    c.add_argument("--threads", type=int, default=0, help="CPU threads for the model (default: PyTorch's choice)")
    add_options(c, ReplayOptions, ["progress"])
    p.set_defaults(func=run)
