"""The one command-line program: `rtfm <command> ...`.

Each command lives in its own module exposing ``add_parser(subparsers)``, which registers the
subcommand and sets ``func(args) -> int``. Every listed module is imported to build the parser, so
modules keep heavy imports (mujoco, rclpy) inside their command functions.
"""

from __future__ import annotations

import argparse
import importlib
import sys

COMMAND_MODULES: list[str] = [
    "rtfm_ros.demo",
    "rtfm_ros.learn.train",
    "rtfm_ros.learn.train_renderer",
    "rtfm_ros.replay",
    "rtfm_ros.data.generate",
    "rtfm_ros.data.importers",
    "rtfm_ros.evaluate.suite",
    "rtfm_ros.render.fit",
    "rtfm_ros.serve",
    "rtfm_ros.rl",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rtfm", description="rtfm_ros: a camera simulator driven by a learned world model")
    sub = parser.add_subparsers(dest="command", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(name).add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError) as exc:
        print(f"rtfm {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
