"""Training data: the clip dataset format, procedural generation and importers."""

from __future__ import annotations

import argparse
import weakref
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from typing import TypeAlias

    SubParsers: TypeAlias = argparse._SubParsersAction[argparse.ArgumentParser]
# The `rtfm data` parser of each command line -> its own subcommands.
_GROUPS: weakref.WeakKeyDictionary[argparse.ArgumentParser, SubParsers] = weakref.WeakKeyDictionary()


def data_subparsers(sub: SubParsers) -> SubParsers:
    """The `rtfm data ...` command group, created by whichever data command registers first."""
    if "data" not in sub.choices:
        data = sub.add_parser("data", help="make and import training data (generate, import)")

        def show_help(args: argparse.Namespace) -> int:
            data.print_help()
            return 2

        data.set_defaults(func=show_help)
        _GROUPS[data] = data.add_subparsers(dest="data_command", metavar="{generate,import}")
    return _GROUPS[sub.choices["data"]]
