"""`rtfm data generate`: render procedural worlds along seeded trajectories into a clip dataset.

World i gets seed ``seed_offset + i`` and kind ``kinds[seed % len(kinds)]``; its clips take
trajectory kinds in turn (ground_robot, handheld, loop, shifted by the seed) so every dataset
mixes them. Work is split into shards of whole worlds; each shard is rendered and written by
one worker process (spawn context, one MuJoCo renderer per world), so the bytes on disk depend
only on the arguments, never on the number of workers. Seeds of the held-out evaluation suite
(rtfm_ros.sim.worlds.HELDOUT_SEED_BASE and above) are refused.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rtfm_ros.data import data_subparsers
from rtfm_ros.options import add_options, from_options, setting

if TYPE_CHECKING:  # pragma: no cover
    from rtfm_ros.data.clips import Clip
    from rtfm_ros.sim.renderer import WorldRenderer
    from rtfm_ros.sim.worlds import World

DEFAULT_CLIPS_PER_SHARD = 8
TRAJ_ORDER = ("ground_robot", "handheld", "loop")


class GenerateError(ValueError):
    """Bad generation settings."""


def render_clip(world: World, renderer: WorldRenderer, kind: str, n_frames: int, traj_seed: int, *, step: float,
                max_turn_deg: float) -> Clip:
    """One Clip: a trajectory of ``kind`` through ``world`` rendered with ``renderer`` (RGB + depth)."""
    import numpy as np

    from rtfm_ros.data.clips import Clip
    from rtfm_ros.sim.trajectories import make_trajectory

    traj = make_trajectory(world, kind, n_frames, traj_seed, step=step, max_turn_deg=max_turn_deg)
    cam = renderer.camera
    h, w = cam.height, cam.width
    rgb = np.empty((n_frames, h, w, 3), np.uint8)
    depth = np.empty((n_frames, h, w), np.float32)
    for k, T in enumerate(traj.T_world_camera):
        rgb[k], depth[k] = renderer.render(T)
    meta = {"source": "procedural", "world": world.describe(), "trajectory": kind, "trajectory_seed": traj_seed,
            "step": step, "max_turn_deg": max_turn_deg}
    return Clip(rgb=rgb, T_world_camera=traj.T_world_camera, K=np.repeat(cam.K[None], n_frames, axis=0),
                stamps=traj.stamps, depth=depth, meta=meta)


def world_clips(seed: int, settings: dict[str, Any]) -> list[Any]:
    """Every clip of one world, as `generate` makes them."""
    from rtfm_ros.geometry import PinholeCamera
    from rtfm_ros.sim.renderer import WorldRenderer
    from rtfm_ros.sim.worlds import make_world

    kinds = settings["kinds"]
    world = make_world(seed, kinds[seed % len(kinds)])
    camera = PinholeCamera.from_fov(settings["res"], settings["res"], settings["fov"])
    clips = []
    with WorldRenderer(world, camera) as renderer:
        for j in range(settings["clips_per_world"]):
            kind = TRAJ_ORDER[(seed + j) % len(TRAJ_ORDER)]
            clips.append(render_clip(world, renderer, kind, settings["frames"], j,
                                     step=settings["step"], max_turn_deg=settings["max_turn_deg"]))
    return clips


def _shard_task(task: str) -> str:
    """Worker entry point (JSON in, JSON out): render some worlds and write their shard."""
    from rtfm_ros.data.clips import write_shard

    t = json.loads(task)
    clips = [c for seed in t["seeds"] for c in world_clips(seed, t["settings"])]
    entry = write_shard(Path(t["out"]) / t["file"], clips)
    return json.dumps({"shard": t["shard"], "entry": entry, "worlds": len(t["seeds"])})


def check_seeds(seed_offset: int, worlds: int) -> None:
    """Refuse negative seeds and any overlap with the held-out evaluation suite."""
    from rtfm_ros.sim.worlds import HELDOUT_SEED_BASE

    if worlds < 1:
        raise GenerateError(f"--worlds must be >= 1, got {worlds}")
    if seed_offset < 0:
        raise GenerateError(f"--seed-offset must be >= 0, got {seed_offset}")
    if seed_offset + worlds > HELDOUT_SEED_BASE:
        raise GenerateError(
            f"world seeds {seed_offset}..{seed_offset + worlds - 1} reach the held-out evaluation seeds "
            f"(>= {HELDOUT_SEED_BASE}); training worlds must stay below {HELDOUT_SEED_BASE}")


@dataclass(frozen=True)
class GenerateConfig:
    """What `rtfm data generate` renders, checked when made; its options are made from these fields."""

    worlds: int = setting(help="number of worlds (one seed each)")
    frames: int = setting(help="frames per clip")
    res: int = setting(64, "square image size in pixels (default 64)")
    fov: float = setting(90.0, "field of view in degrees (default 90)")
    kinds: tuple[str, ...] = setting(("room", "multiroom"), cli=False)  # --kinds, comma-separated
    seed_offset: int = setting(0, "first world seed (default 0)")
    clips_per_world: int = setting(2, "trajectories per world (default 2)")
    clips_per_shard: int = setting(DEFAULT_CLIPS_PER_SHARD, "clips written to one shard (whole worlds)")
    step: float = setting(0.2, "max camera motion per frame, metres")
    max_turn_deg: float = setting(15.0, "max camera rotation per frame, degrees", flag="--max-turn")
    workers: int = setting(1, "worker processes (default 1)")

    def __post_init__(self) -> None:
        from rtfm_ros.geometry import PinholeCamera
        from rtfm_ros.sim.trajectories import check_parameters as check_trajectory
        from rtfm_ros.sim.worlds import KINDS

        check_seeds(self.seed_offset, self.worlds)
        bad = [k for k in self.kinds if k not in KINDS]
        if not self.kinds or bad:
            raise GenerateError(f"unknown world kinds {bad or list(self.kinds)}; expected some of {', '.join(KINDS)}")
        if min(self.frames, self.clips_per_world, self.clips_per_shard, self.workers) < 1:
            raise GenerateError("--frames, --clips-per-world, --clips-per-shard and --workers must be >= 1")
        PinholeCamera.from_fov(self.res, self.res, self.fov)  # validates resolution and field of view
        check_trajectory("loop", self.frames, self.step, self.max_turn_deg)


def generate(out_dir: str | Path, cfg: GenerateConfig, *, overwrite: bool = False, progress: bool = True) -> Path:
    """Render a dataset; returns its directory. Same settings (workers aside) -> same bytes."""
    import multiprocessing

    from tqdm import tqdm

    from rtfm_ros.data.clips import prepare_output, shard_name, write_index

    worlds, seed_offset, workers, res = cfg.worlds, cfg.seed_offset, cfg.workers, cfg.res
    settings = {"kinds": list(cfg.kinds), "frames": cfg.frames, "res": res, "fov": cfg.fov,
                "clips_per_world": cfg.clips_per_world, "step": cfg.step, "max_turn_deg": cfg.max_turn_deg}
    out = prepare_output(out_dir, overwrite)
    per_shard = max(1, cfg.clips_per_shard // cfg.clips_per_world)
    seeds = list(range(seed_offset, seed_offset + worlds))
    tasks = [json.dumps({"shard": s, "file": shard_name(s), "out": str(out), "settings": settings,
                         "seeds": seeds[i: i + per_shard]}) for s, i in enumerate(range(0, worlds, per_shard))]
    entries: dict[int, dict[str, Any]] = {}
    t0 = time.perf_counter()
    with tqdm(total=worlds, unit="world", desc="rendering", disable=not progress) as bar:
        results: Iterator[str]
        if workers == 1:
            results = map(_shard_task, tasks)
            pool = None
        else:
            pool = multiprocessing.get_context("spawn").Pool(min(workers, len(tasks)))
            results = pool.imap_unordered(_shard_task, tasks)
        try:
            for text in results:
                r = json.loads(text)
                entries[r["shard"]] = r["entry"]
                bar.update(r["worlds"])
        finally:
            if pool is not None:
                pool.close()
                pool.join()
    from rtfm_ros.sim.renderer import MUJOCO_VERSION

    info = {"generator": "rtfm data generate", "settings": settings, "seed_offset": seed_offset, "worlds": worlds,
            "world_seeds": [seed_offset, seed_offset + worlds - 1], "trajectory_kinds": list(TRAJ_ORDER),
            "mujoco": MUJOCO_VERSION}
    write_index(out, [entries[s] for s in sorted(entries)], resolution=(res, res), info=info)
    if progress:
        n = worlds * cfg.clips_per_world * cfg.frames
        dt = time.perf_counter() - t0
        print(f"wrote {worlds * cfg.clips_per_world} clips ({n} frames) to {out} in {dt:.1f} s ({n / dt:.0f} frames/s)")
    return out


def _kinds(text: str) -> list[str]:
    return [k.strip() for k in text.split(",") if k.strip()]


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register `rtfm data generate` (the `data` group is shared with `rtfm data import`)."""
    data = data_subparsers(sub)
    p = data.add_parser("generate", help="render procedural MuJoCo worlds into a clip dataset")
    add_options(p, GenerateConfig, ["worlds", "frames", "res", "fov"])
    p.add_argument("--kinds", type=_kinds, default=list(GenerateConfig.kinds), help="world kinds, comma-separated")
    add_options(p, GenerateConfig, ["seed_offset", "clips_per_world", "clips_per_shard", "step", "max_turn_deg",
                                    "workers"])
    p.add_argument("--overwrite", action="store_true", help="replace a dataset already in --out")
    p.add_argument("--out", required=True, help="output directory")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    generate(args.out, from_options(GenerateConfig, args, kinds=tuple(args.kinds)), overwrite=args.overwrite)
    return 0
