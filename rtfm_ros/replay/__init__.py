"""Rosbag replay: render a simulated camera along a recorded bag's TF, seed worlds from its images.

options (what is asked) -> trajectory (where/when) + seeding (the bag's images) -> render (the
replay and the output bag); cli is `rtfm replay`.
"""

from rtfm_ros.replay.cli import add_parser, run
from rtfm_ros.replay.options import ReplayError, ReplayOptions, ReplayResult
from rtfm_ros.replay.render import default_prefix, replay
from rtfm_ros.replay.seeding import seed_world
from rtfm_ros.replay.trajectory import apply_offset, load_poses, parse_offset

__all__ = ["ReplayError", "ReplayOptions", "ReplayResult", "add_parser", "apply_offset", "default_prefix",
           "load_poses", "parse_offset", "replay", "run", "seed_world"]
