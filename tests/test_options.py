"""Settings are frozen, checked dataclasses; the command line's options are made from their fields."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import pytest

from rtfm_ros.learn.train import TrainConfig
from rtfm_ros.options import add_options, cli_fields, from_options
from rtfm_ros.replay import ReplayError, ReplayOptions
from rtfm_ros.replay.cli import add_parser as add_replay


def _replay_parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser()
    add_replay(root.add_subparsers())
    return root


def test_replay_options_come_from_the_dataclass_and_are_checked_there():
    args = _replay_parser().parse_args(["replay", "in.mcap", "--camera-frame", "cam", "--rate", "5", "--batch", "2",
                                        "--no-copy", "--no-remember", "--quiet", "--world", "w.rtfm",
                                        "--depth-source", "checked", "--offset", "1,0,0,90"])
    opt = from_options(ReplayOptions, args, offset=(1.0, 0.0, 0.0, 90.0), camera=None)
    assert opt == ReplayOptions(camera_frame="cam", rate_hz=5.0, batch_size=2, copy=False, remember=False,
                                progress=False, world=Path("w.rtfm"), depth_source="checked",
                                offset=(1.0, 0.0, 0.0, 90.0))
    defaults = from_options(ReplayOptions, _replay_parser().parse_args(["replay", "b", "--camera-frame", "cam"]),
                            offset=None, camera=None)
    assert defaults == ReplayOptions(camera_frame="cam")  # every default is the dataclass's own
    with pytest.raises(dataclasses.FrozenInstanceError):
        opt.batch_size = 3  # type: ignore[misc]
    for bad, match in [({"rate_hz": 0.0}, "--rate"), ({"batch_size": 0}, "--batch"), ({"depth_source": "x"}, "depth"),
                       ({"rate_hz": 1.0, "at_topic": "/t"}, "exclusive"), ({"camera_frame": "/"}, "camera-frame")]:
        with pytest.raises(ReplayError, match=match):
            ReplayOptions(**{"camera_frame": "cam", **bad})


def test_train_options_come_from_the_dataclass_and_are_checked_there():
    parser = argparse.ArgumentParser()
    add_options(parser, TrainConfig)
    flags = {a.dest for a in parser._actions}
    assert {f.name for f in cli_fields(TrainConfig)} <= flags and "examples" not in flags
    cfg = from_options(TrainConfig, parser.parse_args(["--data", "d", "--steps", "7", "--compile", "--amp", "off"]))
    assert cfg == TrainConfig(data="d", steps=7, compile=True, amp="off")
    for bad in ({"steps": 0}, {"lr": float("nan")}, {"amp": "fp8"}, {"max_minutes": -1.0}, {"warmup": 1.5}):
        with pytest.raises(ValueError, match="train config"):
            TrainConfig(data="d", **bad)
