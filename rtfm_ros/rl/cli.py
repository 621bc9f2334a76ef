"""`rtfm rl train | eval | plot`: PPO in CameraNav from the command line."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from rtfm_ros.options import add_options, from_options
from rtfm_ros.rl.config import EvalConfig, RLConfigError, TaskConfig, TrainConfig


def _train(args: argparse.Namespace) -> int:
    from rtfm_ros.rl.train import train

    cfg, task = from_options(TrainConfig, args), from_options(TaskConfig, args)
    out = train(cfg, task)
    print(f"policy: {out / 'policy.safetensors'}  log: {out / 'progress.csv'}")
    return 0


def _eval(args: argparse.Namespace) -> int:
    from rtfm_ros.rl.evaluate import evaluate

    cfg = from_options(EvalConfig, args)
    task = from_options(TaskConfig, args) if cfg.policy is None else None
    result, task = evaluate(cfg, task)
    who = {"random": "random actions", "forward": "straight ahead"}[cfg.baseline] if cfg.policy is None \
        else str(cfg.policy)
    print(f"{who} on {cfg.source} views, {result.episodes} held-out episodes "
          f"(worlds {cfg.seed_base}..{cfg.seed_base + cfg.episodes - 1}): {result.line()}")
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"policy": who,
                                         "source": cfg.source, "episodes": result.episodes,
                                         "success_rate": result.success_rate, "return_mean": result.return_mean,
                                         "return_std": result.return_std, "length_mean": result.length_mean,
                                         "task": task.to_dict()}, indent=1))
    return 0


def _plot(args: argparse.Namespace) -> int:
    from rtfm_ros.rl.plot import plot_curves

    labels = args.labels.split(",") if args.labels else [r.name for r in args.runs]
    if len(labels) != len(args.runs):
        raise RLConfigError(f"{len(labels)} labels for {len(args.runs)} runs")
    print(plot_curves(args.runs, labels, args.out, args.title))
    return 0


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("rl", help="PPO in CameraNav: train from pixels, score on held-out worlds, plot curves")
    cmd = p.add_subparsers(dest="rl_command", required=True)
    t = cmd.add_parser("train", help="train a PPO CNN policy on model (or MuJoCo) views")
    add_options(t, TrainConfig)
    add_options(t.add_argument_group("task"), TaskConfig)
    t.set_defaults(func=_train)
    e = cmd.add_parser("eval", help="success rate and return of a policy (or a baseline) on held-out worlds; "
                                    "load only policies from your own runs")
    add_options(e, EvalConfig)
    add_options(e.add_argument_group("task (baselines only; a policy brings its own)"), TaskConfig)
    e.add_argument("--json", type=Path, default=None, help="also write the result here")
    e.set_defaults(func=_eval)
    g = cmd.add_parser("plot", help="learning curves of runs (their progress.csv) as one PNG")
    g.add_argument("runs", type=Path, nargs="+", help="run folders")
    g.add_argument("-o", "--out", type=Path, required=True, help="PNG to write")
    g.add_argument("--labels", default="", help="comma-separated labels, one per run")
    g.add_argument("--title", default="")
    g.set_defaults(func=_plot)
