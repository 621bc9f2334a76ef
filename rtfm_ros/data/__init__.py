"""Training data: the clip dataset format, procedural generation and importers."""

from __future__ import annotations

import argparse


def data_subparsers(sub: argparse._SubParsersAction) -> argparse._SubParsersAction:
    """The `rtfm data ...` command group, created by whichever data command registers first."""
    if "data" not in sub.choices:
        data = sub.add_parser("data", help="make and import training data (generate, import)")
        data.set_defaults(func=lambda args: data.print_help() or 2)
        data._rtfm_sub = data.add_subparsers(dest="data_command", metavar="{generate,import}")  # type: ignore[attr-defined]
    return sub.choices["data"]._rtfm_sub  # type: ignore[attr-defined]
