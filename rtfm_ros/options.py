"""Settings are frozen, checked dataclasses; command-line options are made from their fields.

A setting is declared once, as a dataclass field made by :func:`setting` (its default and help,
and where the command line spells it differently, its flag); the dataclass checks every value
in ``__post_init__``. :func:`add_options` adds one option per field to a parser or argument
group (the type from the annotation: int, float, str, Path, ``X | None``; a bool that is off by
default is a switch, one that is on by default is switched off by its flag, ``--no-<name>``
unless told), and :func:`from_options` builds the dataclass from the parsed options, so a value
is checked in one place whether it comes from Python or the command line.
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")
_SCALARS: dict[Any, type] = {int: int, float: float, str: str, Path: Path}


def setting(default: Any = dataclasses.MISSING, help: str = "", *, flag: str | None = None,
            choices: Sequence[Any] | None = None, metavar: str | None = None, cli: bool = True) -> Any:
    """A dataclass field with its help (and its flag, choices, metavar) for :func:`add_options`;
    ``cli=False``: a setting the command line gives another way (or not at all)."""
    meta = {"help": help, "flag": flag, "choices": choices, "metavar": metavar, "cli": cli}
    return dataclasses.field(default=default, metadata=meta)


def _scalar(annotation: Any) -> tuple[type | None, bool]:
    """(scalar type, optional) of a field's annotation; (None, ...) when it is not a plain scalar."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return (_SCALARS.get(args[0]), True) if len(args) == 1 else (None, True)
    if annotation is bool:
        return bool, False
    return _SCALARS.get(annotation), False


def cli_fields(cls: type) -> list[dataclasses.Field[Any]]:
    """The fields of a settings dataclass that the command line gives as options of their own."""
    return [f for f in dataclasses.fields(cls) if f.metadata.get("cli", False)]


def add_options(parser: argparse.ArgumentParser | argparse._ArgumentGroup, cls: type,
                names: Sequence[str] | None = None) -> None:
    """One option per field of ``cls`` made by :func:`setting` (those in ``names``, in that order)."""
    hints = typing.get_type_hints(cls)
    by_name = {f.name: f for f in cli_fields(cls)}
    for name in names if names is not None else list(by_name):
        f = by_name[name]
        meta, kind = f.metadata, hints[name]
        kw: dict[str, Any] = {"dest": name, "help": meta["help"]}
        if kind is bool:
            default = bool(f.default)
            flag = meta["flag"] or (f"--no-{name.replace('_', '-')}" if default else f"--{name.replace('_', '-')}")
            parser.add_argument(flag, action="store_false" if default else "store_true", default=default, **kw)
            continue
        scalar, _ = _scalar(kind)
        if scalar is None:
            raise TypeError(f"{cls.__name__}.{name}: {kind} is not an option type (give it with cli=False)")
        flag = meta["flag"] or f"--{name.replace('_', '-')}"
        if f.default is dataclasses.MISSING:
            kw["required"] = True
        else:
            kw["default"] = f.default
        for key in ("choices", "metavar"):
            if meta[key] is not None:
                kw[key] = list(meta[key]) if key == "choices" else meta[key]
        parser.add_argument(flag, type=scalar, **kw)


def from_options(cls: type[T], args: argparse.Namespace, **others: Any) -> T:
    """cls made from the parsed options of its fields (those added by :func:`add_options`) and ``others``."""
    values = {f.name: getattr(args, f.name) for f in cli_fields(cls) if hasattr(args, f.name)}
    return cls(**values, **others)
