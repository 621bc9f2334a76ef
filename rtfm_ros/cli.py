"""The one command-line program: `rtfm <command> ...`.

Each command lives in its own module exposing ``add_parser(subparsers)``, which registers the
subcommand and sets ``func(args) -> int``. Modules are imported only when listed here, so a
command's heavy dependencies load only when that command runs... as long as the module keeps
its heavy imports inside ``func``.
"""

from __future__ import annotations

import argparse
import importlib
import sys

COMMAND_MODULES: list[str] = [
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rtfm", description="rtfm_ros: a camera simulator driven by a learned world model")
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
