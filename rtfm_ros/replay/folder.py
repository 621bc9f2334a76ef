"""`rtfm replay --ray [ADDRESS] FOLDER -o OUT`: every bag of a folder replayed as a Ray task.

A fleet records many bags; each replay is independent (its own world, seeded from its own
images, or the same --world opened read-only by each), so they spread over a Ray cluster as
tasks of one CPU each, one output bag per input (OUT/<bag name>). A bag that fails (corrupt,
no TF, a crashed worker) is reported with its reason and leaves no output; the others go on.
Ray is imported only here, so a plain replay never needs it.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rtfm_ros.replay.options import ReplayError, ReplayOptions

BAG_SUFFIXES = (".mcap", ".db3")


@dataclass(frozen=True)
class BagOutcome:
    """What became of one input bag: its output and frame count, or why it failed."""

    bag: Path
    output: Path
    error: str | None = None
    rendered: int = 0
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.error is None


def find_bags(folder: Path) -> list[Path]:
    """The bags in a folder: bag directories and .mcap / .db3 files, by name (hidden ones skipped)."""
    if not folder.is_dir():
        raise ReplayError(f"--ray replays a folder of bags; {folder} is not a directory")
    bags = sorted(p for p in folder.iterdir() if not p.name.startswith(".")
                  and (p.is_dir() or p.suffix in BAG_SUFFIXES))
    if not bags:
        raise ReplayError(f"no bags (directories, .mcap or .db3 files) in {folder}")
    return bags


def replay_one(bag: Path, output: Path, opt: ReplayOptions, threads: int) -> BagOutcome:
    """One replay, its failure caught and returned (so a Ray task never retries or loses it)."""
    import torch

    from rtfm_ros.replay.render import replay

    torch.set_num_threads(max(1, threads))
    t = time.perf_counter()
    try:
        res = replay(bag, output, opt)
    except Exception as exc:  # noqa: BLE001 - reported per bag, the other bags go on
        return BagOutcome(bag, output, error=f"{type(exc).__name__}: {exc}")
    return BagOutcome(bag, output, rendered=res.rendered, seconds=time.perf_counter() - t)


def replay_folder(folder: Path, out_dir: Path, opt: ReplayOptions, *, address: str | None = None,
                  cpus_per_task: float = 1.0, threads: int = 1,
                  report: Callable[[BagOutcome], None] | None = None) -> list[BagOutcome]:
    """Replay every bag of ``folder`` into ``out_dir``/<name> as Ray tasks, in input order.

    ``address``: the cluster to join when Ray is not initialised yet ("" or None: a local one,
    or the one RAY_ADDRESS names; shut down again at the end). ``report`` is called with each
    outcome as it arrives."""
    import ray

    bags = find_bags(folder)
    if opt.save_world is not None:
        raise ReplayError("--save-world names one world; it cannot be combined with --ray over many bags")
    if out_dir.exists():
        raise ReplayError(f"output {out_dir} exists already; refusing to overwrite it")
    outputs = [out_dir / (b.stem if b.suffix in BAG_SUFFIXES else b.name) for b in bags]
    if len(set(outputs)) != len(outputs):
        raise ReplayError(f"bags in {folder} share a name without suffix; their outputs would collide")
    opt = dataclasses.replace(opt, progress=False)
    own = not ray.is_initialized()
    if own:
        ray.init(address=address or None, include_dashboard=False, log_to_driver=False)
    try:
        out_dir.mkdir(parents=True)
        task: Any = ray.remote(num_cpus=cpus_per_task, max_retries=0)(replay_one)
        pending = {task.remote(b, o, opt, threads): (b, o) for b, o in zip(bags, outputs)}
        done: dict[Path, BagOutcome] = {}
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            bag, output = pending.pop(ready[0])
            try:
                outcome: BagOutcome = ray.get(ready[0])
            except ray.exceptions.RayError as exc:  # the worker died: this bag only
                outcome = BagOutcome(bag, output, error=f"{type(exc).__name__}: {exc}")
            done[bag] = outcome
            if report is not None:
                report(outcome)
    finally:
        if own:
            ray.shutdown()
    return [done[b] for b in bags]


def describe(outcome: BagOutcome) -> str:
    """One line per bag, as `rtfm replay --ray` prints them."""
    if outcome.ok:
        return f"ok      {outcome.bag.name} -> {outcome.output} ({outcome.rendered} frames, {outcome.seconds:.1f} s)"
    return f"FAILED  {outcome.bag.name}: {outcome.error}"
