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
from rtfm_ros.replay.options import DEPTH_SOURCES, ReplayOptions
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
    opt = ReplayOptions(
        camera_frame=args.camera_frame, world_frame=args.world_frame, world=args.world, seed_topic=args.seed_topic,
        seed_camera_info_topic=args.seed_camera_info_topic, seed_stride=args.seed_stride,
        seed_depth_topic=args.seed_depth_topic, rate_hz=args.rate,
        at_topic=args.at_topic, poses=args.poses, offset=parse_offset(args.offset) if args.offset else None,
        camera=_camera_arg(args), camera_info_topic=args.camera_info_topic, body_frame=args.body_frame,
        topic_prefix=args.topic_prefix, storage=args.storage, copy=not args.no_copy, depth=args.depth,
        depth_source=args.depth_source,
        checkpoint=args.checkpoint, save_world=args.save_world, batch_size=args.batch,
        remember=not args.no_remember, progress=not args.quiet)
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


def add_parser(sub: Any) -> None:
    p = sub.add_parser("replay", help="render a simulated camera along a ROS 2 bag's TF trajectory",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("bag", type=Path, help="input ROS 2 bag (directory, or .mcap / .db3 file)")
    p.add_argument("-o", "--output", type=Path, help="output bag directory (must not exist)")
    p.add_argument("--camera-frame", required=True, help="TF frame of the simulated camera (optical axes)")
    p.add_argument("--world-frame", default="map", help="fixed frame the world is stored in (default map)")
    p.add_argument("--body-frame", action="store_true",
                   help="the camera frame has ROS body axes (x forward, z up): apply the REP-103 rotation and "
                        "publish images in <camera-frame>_optical (added to /tf_static)")
    g = p.add_argument_group("world")
    g.add_argument("--world", type=Path, help="saved world file (.rtfm) to render")
    g.add_argument("--seed-topic", help="Image or CompressedImage topic whose frames seed the world")
    g.add_argument("--seed-camera-info-topic", help="CameraInfo for the seed images (default: found by namespace)")
    g.add_argument("--seed-stride", type=int, default=1, help="use every Nth seed image (default 1)")
    g.add_argument("--seed-depth-topic", help="depth Image registered to the seed camera (16UC1 mm or 32FC1 m): "
                   "metric depth for the seeds instead of stereo")
    g.add_argument("--save-world", type=Path, help="write the world (after seeding) to this directory")
    g.add_argument("--checkpoint", type=Path, help="model checkpoint (default: the bundled model)")
    g.add_argument("--no-remember", action="store_true", help="do not add rendered views to the world")
    t = p.add_argument_group("when and where")
    t.add_argument("--rate", type=float, help="render at this rate over the TF time span (default 10 Hz)")
    t.add_argument("--at-topic", help="render at the header stamps of this topic's messages")
    t.add_argument("--poses", type=Path, help="CSV/JSON of stamp + pose (world frame) to render instead of TF")
    t.add_argument("--offset", help="x,y,z,yaw: shift the trajectory (metres, world frame) and turn it (degrees)")
    c = p.add_argument_group("camera and output")
    c.add_argument("--width", type=int, help="image width (default 64)")
    c.add_argument("--height", type=int, help="image height (default 64)")
    c.add_argument("--fov", type=float, help="horizontal field of view in degrees (default 90)")
    c.add_argument("--camera-info-topic",
                   help="take intrinsics from this CameraInfo topic (scaled to --width/--height if given)")
    c.add_argument("--topic-prefix", help="output topics' namespace (default /rtfm/<camera>)")
    c.add_argument("--depth", action="store_true", help="also write 32FC1 depth on <prefix>/depth/image_raw")
    c.add_argument("--depth-source", choices=DEPTH_SOURCES, default="rendered",
                   help="the depth written (--depth) and kept by remembered views: checked (only where a real frame "
                        "saw the same surface, NaN elsewhere, as the camera node publishes) or rendered (default)")
    c.add_argument("--storage", choices=["mcap", "sqlite3"], default="mcap", help="output storage (default mcap)")
    c.add_argument("--no-copy", action="store_true", help="do not copy the input bag's messages")
    c.add_argument("--batch", type=int, default=4,
                   help="views rendered per model call (default 4: best on CPU; raise it on a GPU)")
    c.add_argument("--threads", type=int, default=0, help="CPU threads for the model (default: PyTorch's choice)")
    c.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=run)
