"""The fixed held-out evaluation suite and `rtfm eval`.

Held-out worlds: seeds ``HELDOUT_SEED_BASE + i`` (i = 0 .. worlds-1, default 8), kinds
alternating room / multiroom. Training data never uses seeds >= HELDOUT_SEED_BASE
(`rtfm data generate` refuses them), so these worlds are never seen in training.

Per world, one seeded ``loop`` trajectory of CONTEXT_FRAMES + TAIL_FRAMES poses (drive out,
turn, back, turn, out again); its first CONTEXT_FRAMES frames are the context views (RGB +
depth). Targets, TARGETS_PER_KIND of each kind:

- ``interpolation``: between two context poses three frames apart (alpha 0.3-0.7), nudged by
  up to 0.1 m sideways and 8 degrees of yaw: inside the region the context saw.
- ``extrapolation``: free points 1-3 m away from every context position, random heading and
  pitch: views of places the context saw from elsewhere or not at all.
- ``revisit``: frames after the context (the loop coming back over its first pass), nudged by
  up to 0.05 m and 3 degrees: places seen long ago, where a memory should recall them.
- ``half_unseen``: extrapolation views picked so that about half of each view (40-60 %, measured
  with ground-truth depth against the context the juggling gives it) was never seen: where a
  renderer must imagine.

Everything derives from the world seed, so the suite is the same on every machine; it is
built once and cached as a clip dataset (per world a "context" clip and a "targets" clip whose
meta lists each target's kind); bump SUITE_VERSION whenever worlds, trajectories or rendering
change, so that stale caches are refused rather than silently compared. Each renderer then
gets, for each target, the same context: the ``budget`` views chosen by
rtfm_ros.memory.juggling.select_context (as at run time).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from rtfm_ros.camera.sensor import DepthNoise
from rtfm_ros.options import add_options, from_options, setting
from rtfm_ros.sim.targets import (
    CONTEXT_FRAMES,
    TAIL_FRAMES,
    TARGET_KINDS,
    TARGETS_PER_KIND,
    UNSEEN_KINDS,
    view_targets,
)
from rtfm_ros.sim.worlds import HELDOUT_SEED_BASE, KINDS, make_world

if TYPE_CHECKING:
    from rtfm_ros.data.clips import Clip
    from rtfm_ros.geometry import PinholeCamera

SUITE_VERSION = 2
DEFAULT_WORLDS = 8
DEFAULT_RES = 64
DEFAULT_FOV = 90.0
DEFAULT_BUDGET = 4  # context views per target


class SuiteError(ValueError):
    """A suite that cannot be built, loaded or evaluated."""


@dataclass
class SuiteWorld:
    seed: int
    kind: str
    context: Clip
    targets: Clip
    target_kinds: list[str]


@dataclass
class Suite:
    worlds: list[SuiteWorld]
    settings: dict[str, Any]

    @property
    def num_targets(self) -> int:
        return sum(len(w.target_kinds) for w in self.worlds)


def heldout_seeds(worlds: int = DEFAULT_WORLDS) -> list[int]:
    return [HELDOUT_SEED_BASE + i for i in range(worlds)]


def build_world(seed: int, res: int = DEFAULT_RES, fov: float = DEFAULT_FOV) -> SuiteWorld:
    """Render one held-out world's context and targets."""
    from rtfm_ros.data.clips import Clip
    from rtfm_ros.geometry import PinholeCamera
    from rtfm_ros.sim.renderer import WorldRenderer
    from rtfm_ros.sim.trajectories import make_trajectory

    if seed < HELDOUT_SEED_BASE:
        raise SuiteError(f"suite worlds use held-out seeds >= {HELDOUT_SEED_BASE}, got {seed}")
    kind = KINDS[seed % len(KINDS)]
    world = make_world(seed, kind)
    traj = make_trajectory(world, "loop", CONTEXT_FRAMES + TAIL_FRAMES, seed=0)
    rng = np.random.default_rng([seed, 1])  # seeded as in version 1: its three kinds are unchanged
    camera = PinholeCamera.from_fov(res, res, fov)
    ctx_T = traj.T_world_camera[:CONTEXT_FRAMES]
    with WorldRenderer(world, camera) as r:
        ctx = [r.render(T) for T in ctx_T]

        def unseen_share(T: np.ndarray) -> float:
            idx = choose_context(T, camera, ctx_T, [camera] * len(ctx_T), DEFAULT_BUDGET)
            mask = unseen_mask(r.render(T)[1], camera.K, T, [(ctx[i][1], camera.K, ctx_T[i]) for i in idx])
            return float(mask.mean())

        target_T, target_kinds = view_targets(world, traj.T_world_camera, rng, CONTEXT_FRAMES, unseen_share)
        tgt = [r.render(T) for T in target_T]

    def clip(frames: list[Any], poses: Sequence[np.ndarray], stamps: np.ndarray, meta: dict[str, Any]) -> Clip:
        return Clip(rgb=np.stack([f[0] for f in frames]), depth=np.stack([f[1] for f in frames]),
                    T_world_camera=np.stack(poses), K=np.repeat(camera.K[None], len(frames), axis=0),
                    stamps=stamps, meta=meta)

    base = {"source": "heldout-suite", "world": world.describe(), "suite_version": SUITE_VERSION}
    context = clip(ctx, list(traj.T_world_camera[:CONTEXT_FRAMES]), traj.stamps[:CONTEXT_FRAMES],
                   {**base, "role": "context", "trajectory": "loop"})
    targets = clip(tgt, target_T, np.full(len(tgt), traj.stamps[-1]), {**base, "role": "targets",
                                                                        "target_kinds": target_kinds})
    return SuiteWorld(seed, kind, context, targets, target_kinds)


def default_suite_dir(res: int = DEFAULT_RES, fov: float = DEFAULT_FOV, worlds: int = DEFAULT_WORLDS) -> Path:
    return Path("data") / f"heldout-suite-v{SUITE_VERSION}-r{res}-fov{fov:g}-w{worlds}"


def load_suite(suite_dir: str | Path | None = None, *, res: int = DEFAULT_RES, fov: float = DEFAULT_FOV,
               worlds: int = DEFAULT_WORLDS, progress: bool = False) -> Suite:
    """The suite from its cache directory, building (and caching) it first if needed."""
    from tqdm import tqdm

    from rtfm_ros.data.clips import INDEX, open_dataset, write_dataset

    seeds = heldout_seeds(worlds)
    settings = {"version": SUITE_VERSION, "res": res, "fov": fov, "worlds": worlds, "seeds": seeds,
                "context_frames": CONTEXT_FRAMES, "targets_per_kind": TARGETS_PER_KIND, "kinds": list(TARGET_KINDS)}
    path = Path(suite_dir) if suite_dir is not None else default_suite_dir(res, fov, worlds)
    if not (path / INDEX).exists():
        built = (build_world(s, res, fov) for s in tqdm(seeds, desc="building held-out suite",
                                                         unit="world", disable=not progress))
        write_dataset(path, (c for w in built for c in (w.context, w.targets)), clips_per_shard=2,
                      info={"suite": settings})
    ds = open_dataset(path)
    if ds.info.get("suite") != settings:
        raise SuiteError(f"{path} holds a suite built with {ds.info.get('suite')}, not {settings}; "
                         f"use another --suite-dir or delete it")
    clips = list(ds)
    out = []
    for ctx, tgt in zip(clips[0::2], clips[1::2]):
        seed = int(ctx.meta["world"]["seed"])
        out.append(SuiteWorld(seed, ctx.meta["world"]["kind"], ctx, tgt, list(tgt.meta["target_kinds"])))
    return Suite(out, settings)


def choose_context(target_T: np.ndarray, camera: PinholeCamera, poses: np.ndarray, cameras: list[Any],
                   budget: int) -> list[int]:
    """Context indices for one target, as the run-time juggling picks them."""
    from rtfm_ros.memory.juggling import select_context

    return list(select_context(target_T, camera, poses, cameras, budget))


MIN_UNSEEN_SHARE = 0.05  # targets with less of the view unseen do not count for the unseen-region score


def unseen_mask(target_depth: np.ndarray, K: np.ndarray, T: np.ndarray,
                context: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> np.ndarray:
    """H x W bool: target pixels no context frame saw, from ground-truth depth (target and
    contexts as (depth, K, T_world_camera)): a pixel is seen when a context's own depth puts a
    surface where the target's point is (render.consistency.agreement)."""
    import torch

    from rtfm_ros.render.consistency import PosedDepth, agreement

    ref = PosedDepth(torch.from_numpy(np.asarray(target_depth, np.float32)), K, T)
    seen = torch.zeros(target_depth.shape, dtype=torch.bool)
    for d, Kc, Tc in context:
        seen |= agreement(ref, PosedDepth(torch.from_numpy(np.asarray(d, np.float32)), Kc, Tc), tolerance=0.05)
    out: np.ndarray = (~seen).numpy() & np.isfinite(target_depth)
    return out


@dataclass
class EvalTable:
    """Mean PSNR / SSIM per renderer and target kind (plus 'all'), GMSD over all targets and the
    unseen-region realism (patch SWD inside the never-seen pixels, per kind in UNSEEN_KINDS)."""

    scores: dict[str, dict[str, dict[str, float]]]  # renderer -> kind -> {psnr, ssim, gmsd, swd, n}
    seconds_per_frame: dict[str, float]
    unseen_share: dict[str, float] = field(default_factory=dict)  # kind -> mean share of a view no context saw

    def to_markdown(self) -> str:
        kinds = list(TARGET_KINDS) + ["all"]
        head = ("| renderer | " + " | ".join(f"{k} PSNR / SSIM / GMSD" for k in kinds)
                + " | " + " | ".join(f"unseen SWD ({k})" for k in UNSEEN_KINDS) + " | ms / frame |")
        rows = [head, "|" + "---|" * (len(kinds) + len(UNSEEN_KINDS) + 2)]
        for name, per in self.scores.items():
            cells = [f"{per[k]['psnr']:.2f} / {per[k]['ssim']:.3f} / {per[k]['gmsd']:.3f}" if per[k]["n"] else "-"
                     for k in kinds]
            swds = [f"{1000 * per[k]['swd']:.2f}e-3" if np.isfinite(per[k]["swd"]) else "-" for k in UNSEEN_KINDS]
            rows.append(f"| {name} | " + " | ".join(cells + swds) + f" | {1000 * self.seconds_per_frame[name]:.1f} |")
        shares = ", ".join(f"{k} {100 * v:.0f} %" for k, v in self.unseen_share.items())
        rows.append(f"\nnever seen, mean share of each view: {shares}; "
                    "unseen SWD: sliced Wasserstein distance of 7x7 detail patches, lower is more like the truth")
        return "\n".join(rows)


def evaluate(renderers: dict[str, Callable[..., Any]], suite: Suite, context_budget: int = DEFAULT_BUDGET,
             progress: bool = False) -> EvalTable:
    """Score each renderer on every target with the same context; returns the table."""
    from tqdm import tqdm

    from rtfm_ros.evaluate.baselines import ContextView
    from rtfm_ros.evaluate.metrics import gmsd, patch_swd, psnr, ssim

    if not renderers:
        raise SuiteError("no renderers to evaluate")
    if context_budget < 1:
        raise SuiteError(f"context_budget must be >= 1, got {context_budget}")
    vals: dict[str, dict[str, dict[str, list[float]]]] = {
        name: {k: {"psnr": [], "ssim": [], "gmsd": [], "swd": []} for k in TARGET_KINDS} for name in renderers}
    shares: dict[str, list[float]] = {k: [] for k in UNSEEN_KINDS}
    spent = {name: 0.0 for name in renderers}
    with tqdm(total=suite.num_targets, desc="evaluating", unit="view", disable=not progress) as bar:
        for w in suite.worlds:
            ctx = w.context
            cams = [ctx.camera(i) for i in range(len(ctx))]
            for t, kind in enumerate(w.target_kinds):
                T, cam, truth = w.targets.T_world_camera[t], w.targets.camera(t), w.targets.rgb[t]
                idx = choose_context(T, cam, ctx.T_world_camera, cams, context_budget)
                views = [ContextView(ctx.rgb[i], ctx.T_world_camera[i], cams[i],
                                     None if ctx.depth is None else ctx.depth[i]) for i in idx]
                unseen = None
                if kind in UNSEEN_KINDS and ctx.depth is not None and w.targets.depth is not None:
                    unseen = unseen_mask(w.targets.depth[t], cam.K, T,
                                         [(ctx.depth[i], cams[i].K, ctx.T_world_camera[i]) for i in idx])
                    shares[kind].append(float(unseen.mean()))
                for name, fn in renderers.items():
                    t0 = time.perf_counter()
                    img = np.asarray(fn(views, T, cam))
                    spent[name] += time.perf_counter() - t0
                    vals[name][kind]["psnr"].append(psnr(img, truth))
                    vals[name][kind]["ssim"].append(ssim(img, truth))
                    vals[name][kind]["gmsd"].append(gmsd(img, truth))
                    if unseen is not None and unseen.mean() >= MIN_UNSEEN_SHARE:
                        vals[name][kind]["swd"].append(patch_swd(img, truth, unseen))
                bar.update(1)
    def mean(v: list[float]) -> float:
        finite = [x for x in v if np.isfinite(x)]
        return float(np.mean(finite)) if finite else float("nan")

    scores: dict[str, dict[str, dict[str, float]]] = {}
    for name, per in vals.items():
        scores[name] = {k: {m: mean(v[m]) for m in ("psnr", "ssim", "gmsd", "swd")} | {"n": len(v["psnr"])}
                        for k, v in per.items()}
        scores[name]["all"] = {m: mean([x for v in per.values() for x in v[m]])
                               for m in ("psnr", "ssim", "gmsd", "swd")}
        scores[name]["all"]["n"] = sum(len(v["psnr"]) for v in per.values())
    return EvalTable(scores, {n: spent[n] / max(1, suite.num_targets) for n in renderers},
                     {k: float(np.mean(v)) for k, v in shares.items() if v})


def _baseline(name: str) -> Callable[..., Any]:
    from rtfm_ros.evaluate.baselines import BASELINES

    return BASELINES[name]


# The "sensor_depth" rows: the views' depth as a common active stereo depth camera (5 cm
# baseline, RealSense-like disparity noise and steps at 640 pixels wide) measures it, with
# dropouts beside depth edges and in its occlusion shadow.
SENSOR = DepthNoise("stereo", baseline=0.05, disparity_stddev=0.08, subpixel=0.125, edge_jump=0.05)

# Renderers `rtfm eval` knows: name -> factory(args) -> render(context, T_world_camera, camera).
# Adding one is one line, e.g. "model": lambda args: <load args.checkpoint as a renderer>.
RENDERERS: dict[str, Callable[[EvalOptions], Callable[..., Any]]] = {
    "nearest_frame": lambda args: _baseline("nearest_frame"),
    "oracle_reprojection": lambda args: _baseline("oracle_reprojection"),
    "ranked_reprojection": lambda args: _baseline("ranked_reprojection"),
    "model": lambda args: _model(args, use_depth=True),
    "no_learning": lambda args: _model(args, use_depth=True, learned=False),
    "model_sensor_depth": lambda args: _model(args, use_depth=True, depth_noise=SENSOR),
    "no_learning_sensor_depth": lambda args: _model(args, use_depth=True, learned=False, depth_noise=SENSOR),
    "model_predicted_depth": lambda args: _model(args, use_depth=False),
    "no_learning_predicted_depth": lambda args: _model(args, use_depth=False, learned=False),
    # the pipeline before stereo's consistency check and the learned renderer
    "unchecked_no_learning_predicted_depth": lambda args: _model(args, use_depth=False, learned=False,
                                                                 check_depth=False),
}


def _model(opt: EvalOptions, use_depth: bool, learned: bool = True,
           check_depth: bool = True, depth_noise: DepthNoise | None = None) -> Callable[..., Any]:
    from rtfm_ros.evaluate.model_renderer import model_renderer

    return model_renderer(opt.checkpoint, device=opt.device, use_depth=use_depth,
                          learned=learned, check_depth=check_depth, depth_noise=depth_noise)


@dataclass(frozen=True)
class EvalOptions:
    """`rtfm eval` on the procedural suite: one option per field (the holdout's are HoldoutOptions)."""

    suite_dir: str | None = setting(None, "suite cache directory (built on first use)")
    res: int = setting(DEFAULT_RES, f"image size (default {DEFAULT_RES})")
    fov: float = setting(DEFAULT_FOV, f"field of view (default {DEFAULT_FOV:g})")
    worlds: int = setting(DEFAULT_WORLDS, f"held-out worlds (default {DEFAULT_WORLDS})")
    budget: int = setting(DEFAULT_BUDGET, f"context views per target (default {DEFAULT_BUDGET})")
    renderers: str | None = setting(None, "comma-separated subset of the known renderers (default: all)")
    checkpoint: str | None = setting(None, "model checkpoint, for renderers that load one")
    device: str = setting("auto", "auto, cpu or cuda")

    def __post_init__(self) -> None:
        for name, lo in (("res", 8), ("worlds", 1), ("budget", 1)):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < lo:
                raise SuiteError(f"--{name} must be an integer >= {lo}, got {v!r}")
        if not 0 < self.fov < 180:
            raise SuiteError(f"--fov must be in (0, 180) degrees, got {self.fov}")

    def renderer_names(self) -> list[str]:
        names = [n.strip() for n in self.renderers.split(",")] if self.renderers else list(RENDERERS)
        unknown = [n for n in names if n not in RENDERERS]
        if unknown:
            raise SuiteError(f"unknown renderers {unknown}; known: {', '.join(RENDERERS)}")
        return names


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register `rtfm eval`."""
    from rtfm_ros.evaluate.holdout import HoldoutOptions

    p = sub.add_parser("eval", help="score renderers on the held-out suite, or leave-k-out on your posed photos")
    add_options(p, EvalOptions)
    h = p.add_argument_group("leave-k-out on your own posed photos (instead of the procedural suite)")
    add_options(h, HoldoutOptions)
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    opt = from_options(EvalOptions, args)
    if args.holdout:
        from rtfm_ros.evaluate.holdout import HoldoutOptions, run

        return run(from_options(HoldoutOptions, args), checkpoint=opt.checkpoint)
    names = opt.renderer_names()
    suite = load_suite(opt.suite_dir, res=opt.res, fov=opt.fov, worlds=opt.worlds, progress=True)
    table = evaluate({n: RENDERERS[n](opt) for n in names}, suite, context_budget=opt.budget, progress=True)
    print(f"held-out suite: {len(suite.worlds)} worlds, {suite.num_targets} targets, {opt.res}x{opt.res}, "
          f"fov {opt.fov:g}, context budget {opt.budget}")
    print(table.to_markdown())
    return 0
