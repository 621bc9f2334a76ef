"""`rtfm fit WORLD`: fit the renderer's few free parameters to one world, from its own frames.

Why per world: photos of one place share a kind of
geometry that no procedural training set predicts, but the world's own real frames are ground
truth for each other. Leave-one-out: each real frame is rendered from the others (never from
itself) at a reduced size, and the loss against the frame fits, by gradient descent through the
renderer (rtfm_ros.render.warp):

- the blend's parameters (angle and visibility widths, rank decay): how much to trust the
  best-placed frame over the others and the frames' depth over their agreement, which differs
  between a turntable of photos and a robot driving through a room. They are kept only if the
  render that runs (the learned renderer where it is on) scores at least as well with them as
  with the defaults on the same leave-one-out views at RENDERER_WIDTH.

- the learned renderer (render.learned), fine-tuned from the render core's weights on the same
  leave-one-out views (at RENDERER_WIDTH, a few hundred steps of the training loss): it learns
  this world's look and the way its stereo fails. Every HOLD_EVERY-th frame is held back and
  the step that renders those best is kept (the core's weights when none beats them); a world
  of fewer than 2 * HOLD_EVERY real frames keeps the core's weights, as nothing can check it.

Per-frame exposure (a gain and offset per channel) was tried and is not fitted: on photo sets
shot at one exposure it soaked up misregistration and lost 0.2-3 dB on held-out photos
(BENCHMARKS.md).

The result is saved beside the world and loaded with it (rtfm_ros.render.fit_file).
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F

from rtfm_ros.options import add_options, from_options, setting
from rtfm_ros.render import warp
from rtfm_ros.render.fit_file import SUFFIX, FitError, WorldFit, fit_path, save_fit
from rtfm_ros.render.learned import LearnedRenderer
from rtfm_ros.render.prepare import target_camera_for_memory
from rtfm_ros.render.views import view_contexts

if TYPE_CHECKING:
    from rtfm_ros.world import WorldModel

FIT_SIDE = 128        # long side of the leave-one-out renders
FIT_STEPS = 150
FIT_BATCH = 4
FIT_LR = 0.03
RENDERER_STEPS = 200  # fine-tuning steps of the learned renderer (0: keep the core's)
RENDERER_WIDTH = 320  # width of its leave-one-out views
RENDERER_LR = 2e-4
HOLD_EVERY = 4        # every 4th real frame is held back to choose the adaptation's step
CHECK_EVERY = 25      # steps between checks on the held-back frames


def fit_world(wm: WorldModel, steps: int = FIT_STEPS, batch: int = FIT_BATCH, lr: float = FIT_LR,
              side: int = FIT_SIDE, seed: int = 0, progress: bool = False,
              renderer_steps: int = RENDERER_STEPS) -> tuple[WorldFit, dict[str, Any]]:
    """Leave-one-out fit over the world's real frames. Returns (fit, report with losses)."""
    fit, report = _fit_blend(wm, steps, batch, lr, side, seed, progress)
    # The blend is fitted on the pipeline's own render at a small size; the render that runs
    # (the learned renderer over the blend's candidates, at full size) can lose with it (0.1 dB
    # on entry-p10's held-out photos, BENCHMARKS.md), so the fitted blend is kept only where it
    # scores at least as well as the default on the same leave-one-out views.
    default = WorldFit(warp.BlendParams(), fit.frames)
    views = {"default": _loo_views(wm, default, progress), "fitted": _loo_views(wm, fit, progress)}
    scores = {k: _loo_psnr(wm, v) for k, v in views.items()}
    keep = "fitted" if scores["fitted"] >= scores["default"] else "default"
    report |= {"blend_kept": keep == "fitted", "blend_loo_psnr_default": scores["default"],
               "blend_loo_psnr_fitted": scores["fitted"]}
    fit = fit if keep == "fitted" else default
    real = sum(1 for i in wm.memory if wm.memory.source(i) != "generated")
    adapt = renderer_steps and wm.core.learned_renderer is not None and wm.config.use_learned
    if adapt and real < 2 * HOLD_EVERY:
        # No frame can be held back to check an adaptation on so few frames; unchecked, it was as
        # likely to lose as to gain on held-out photos (BENCHMARKS.md), so the core's weights stay.
        report["renderer_skipped"] = (f"{real} real frames: fewer than {2 * HOLD_EVERY}, none can be held back "
                                      "to check the adaptation; the core's learned renderer is kept")
    elif adapt:
        fit.renderer, more = adapt_renderer(wm, renderer_steps, seed=seed, progress=progress, views=views[keep])
        report |= more
    return fit, report


Views = list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]


def _loo_views(wm: WorldModel, fit: WorldFit, progress: bool, width: int = RENDERER_WIDTH) -> Views:
    """Each real frame rendered from the others (never from itself) with ``fit``'s blend, at most
    ``width`` wide: the learned renderer's inputs, the frame and the geometric render."""
    from tqdm import tqdm

    from rtfm_ros.images import resize_image
    from rtfm_ros.learn.renderer_data import view_example
    from rtfm_ros.learn.train_renderer import example_tensors

    mem = wm.memory
    previous, wm.fit = wm.fit, fit
    try:
        out = []
        for i in tqdm([i for i in mem if mem.source(i) != "generated"], desc="leave-one-out views", unit="view",
                      disable=not progress):
            cam = mem.camera(i)
            cam = cam.scaled(width, max(8, round(cam.height * width / cam.width))) if cam.width > width else cam
            truth = resize_image(np.asarray(mem.get(i).rgb), cam.width, cam.height)
            out.append(example_tensors(view_example(wm, mem.pose(i), cam, truth, "fit", exclude=[i])))
    finally:
        wm.fit = previous
    return out


def _loo_psnr(wm: WorldModel, views: Views) -> float:
    """Mean PSNR of the render that runs (the learned renderer where it is on, else the
    geometric one) on leave-one-out views."""
    from rtfm_ros.evaluate.metrics import psnr_torch
    from rtfm_ros.learn.train_renderer import validate

    net = wm.core.learned_renderer if wm.config.use_learned else None
    if net is not None:
        return validate(net, views, wm.device)["psnr"]
    return float(np.mean([float(psnr_torch(g[None], y[None])[0]) for _, y, g in views]))


def adapt_renderer(wm: WorldModel, steps: int, *, lr: float = RENDERER_LR, seed: int = 0, progress: bool = False,
                   views: Views | None = None) -> tuple[LearnedRenderer, dict[str, Any]]:
    """The core's learned renderer fine-tuned on the world's own real frames, each rendered from
    the others (never from itself; ``views``: those already made with the world's fit, else made
    here); report: leave-one-out PSNR before and after."""
    import copy

    from tqdm import tqdm

    from rtfm_ros.learn.train_renderer import RendererTrainConfig, loss_fn, sample_batch, validate
    from rtfm_ros.runtime import autocast

    base = wm.core.learned_renderer
    if base is None:
        raise FitError("the render core has no learned renderer to adapt")
    examples = views if views is not None else _loo_views(wm, wm.fit or WorldFit(warp.BlendParams(), 0), progress)
    # Every HOLD_EVERY-th frame is held back to choose the step (the adaptation overfits a few
    # views otherwise): the weights kept are the best on those frames, the core's own if no step
    # beats them.
    if len(examples) < 2 * HOLD_EVERY:
        raise FitError(f"{len(examples)} real frames: too few to hold any back and check the adaptation")
    held = examples[::HOLD_EVERY]
    train = [e for k, e in enumerate(examples) if k % HOLD_EVERY]
    model = copy.deepcopy(base).train()
    before = validate(model, examples, wm.device)
    best_score = validate(model, held, wm.device)["psnr"]
    best_state, best_step = copy.deepcopy(model.state_dict()), 0
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    cfg = RendererTrainConfig(data="", batch_size=8, crop=96)
    rng = np.random.default_rng(seed)
    for step in tqdm(range(1, steps + 1), desc="adapting the learned renderer", unit="step", disable=not progress):
        x, y = sample_batch(train, cfg, rng)
        with autocast(wm.device):
            pred = model(x.to(wm.device))
        loss = loss_fn(pred.float(), y.to(wm.device))
        opt.zero_grad(set_to_none=True)
        loss.backward()  # type: ignore[no-untyped-call]
        opt.step()
        if step % CHECK_EVERY == 0 or step == steps:
            score = validate(model, held, wm.device)["psnr"]
            if score > best_score:
                best_score, best_state, best_step = score, copy.deepcopy(model.state_dict()), step
    model.load_state_dict(best_state)
    after = validate(model, examples, wm.device)
    return model.eval(), {"renderer_steps": steps, "renderer_best_step": best_step, "renderer_held_back": len(held),
                          "renderer_loo_psnr_before": before["psnr"], "renderer_loo_psnr_after": after["psnr"]}


def _fit_blend(wm: WorldModel, steps: int, batch: int, lr: float, side: int, seed: int,
               progress: bool) -> tuple[WorldFit, dict[str, Any]]:
    """The blend's three parameters by leave-one-out (module docstring)."""
    from tqdm import tqdm

    mem = wm.memory
    real = [i for i in mem if mem.source(i) != "generated"]
    if len(real) < 3:
        raise FitError(f"a fit needs at least 3 real frames, the world has {len(real)}")
    n = len(mem)
    dev = wm.device
    start = warp.BlendParams()
    raw = torch.tensor([math.log(start.angle_sigma), math.log(start.visibility_sigma),
                        math.log(start.rank_decay / (1 - start.rank_decay))], device=dev, requires_grad=True)
    opt = torch.optim.Adam([raw], lr=lr)
    rng = np.random.default_rng(seed)
    targets = {}
    for i in real:  # ground truth at the fit size, and each frame's context without itself
        cam = target_camera_for_memory(mem.camera(i), side)
        rgb = torch.from_numpy(np.array(mem.get(i).rgb)).permute(2, 0, 1).float()[None] / 255
        truth = F.interpolate(rgb, size=(cam.height, cam.width), mode="area")[0].to(dev)
        # The run-time context (rtfm_ros.render.views: juggling, generated views weighted down),
        # without the frame itself: the fit tunes the renderer that runs.
        ctx, _ = view_contexts([(wm, mem.pose(i), cam)], [cam], dev, frozenset({i}))
        if any(c.weight >= 1.0 for c in ctx):
            targets[i] = (cam, truth, ctx)
    if not targets:
        raise FitError("no real frame has other frames that see it")
    keys = sorted(targets)

    def loo_loss(pick: list[int]) -> torch.Tensor:
        loss = torch.zeros((), device=dev)
        params = warp.BlendParams(raw[0].exp(), raw[1].exp(), torch.sigmoid(raw[2]))
        for i in pick:  # one target at a time: contexts of different sizes, small renders
            cam, truth, ctx = targets[i]
            out = warp.render(ctx, torch.from_numpy(cam.K).float()[None].to(dev),
                             torch.from_numpy(mem.pose(i))[None].to(dev), cam.height, cam.width, params)
            seen = out.seen[0].float()
            loss = loss + ((out.rgb[0] - truth).abs().mean(0) * seen).sum() / seen.sum().clamp_min(1)
        return loss / len(pick)

    with torch.no_grad():
        before = float(loo_loss(keys))
    losses = []
    bar = tqdm(range(steps), desc="fitting", unit="step", disable=not progress)
    for _ in bar:
        pick = [keys[int(k)] for k in rng.choice(len(keys), size=min(batch, len(keys)), replace=False)]
        loss = loo_loss(pick)
        opt.zero_grad()
        loss.backward()  # type: ignore[no-untyped-call]
        opt.step()
        with torch.no_grad():
            raw.clamp_(-6, 6)
        losses.append(float(loss.detach()))
        bar.set_postfix(loss=f"{losses[-1]:.4f}")
    with torch.no_grad():
        fit = WorldFit(warp.BlendParams(float(raw[0].exp()), float(raw[1].exp()), float(torch.sigmoid(raw[2]))), n)
    with torch.no_grad():
        after = float(loo_loss(keys))
    return fit, {"first_loss": before, "last_loss": after,
                 "frames": len(targets), "steps": steps, "angle_sigma_deg": math.degrees(fit.params.angle_sigma),
                 "visibility_sigma": fit.params.visibility_sigma, "rank_decay": fit.params.rank_decay}


@dataclass(frozen=True)
class FitOptions:
    """`rtfm fit WORLD`: one option per field."""

    world: str = setting(help="world file (.rtfm)", cli=False)  # the positional argument
    steps: int = setting(FIT_STEPS, "gradient steps of the blend")
    renderer_steps: int = setting(RENDERER_STEPS, "fine-tuning steps of the learned renderer (0: keep the core's)")
    checkpoint: str | None = setting(None, "model checkpoint (default: the bundled model)")
    out: str | None = setting(None, f"fit file (default: WORLD{SUFFIX}, loaded with the world)")

    def __post_init__(self) -> None:
        if isinstance(self.steps, bool) or not isinstance(self.steps, int) or self.steps < 1:
            raise FitError(f"--steps must be >= 1, got {self.steps}")
        if isinstance(self.renderer_steps, bool) or not isinstance(self.renderer_steps, int) or self.renderer_steps < 0:
            raise FitError(f"--renderer-steps must be >= 0, got {self.renderer_steps}")


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register `rtfm fit WORLD`."""
    p = sub.add_parser("fit", help="adapt the renderer (blend and learned renderer) to one world by leave-one-out")
    p.add_argument("world", help="world file (.rtfm)")
    add_options(p, FitOptions)
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from rtfm_ros.world import WorldModel

    opt = from_options(FitOptions, args, world=args.world)
    wm = WorldModel.load(opt.checkpoint, world=opt.world, fit=False)
    fit, report = fit_world(wm, steps=opt.steps, progress=True, renderer_steps=opt.renderer_steps)
    out = save_fit(fit, opt.out or fit_path(opt.world))
    print(f"fitted {report['frames']} frames in {report['steps']} steps: loss {report['first_loss']:.4f} -> "
          f"{report['last_loss']:.4f}; angle {report['angle_sigma_deg']:.1f} deg, visibility "
          f"{report['visibility_sigma']:.3f}, rank decay {report['rank_decay']:.2f}; saved {out}")
    verdict = "kept" if report["blend_kept"] else "not kept, the defaults render better"
    print(f"fitted blend {verdict}: leave-one-out PSNR {report['blend_loo_psnr_fitted']:.2f} dB against "
          f"{report['blend_loo_psnr_default']:.2f} with the defaults")
    if "renderer_skipped" in report:
        print(f"learned renderer not adapted: {report['renderer_skipped']}")
    if "renderer_steps" in report:
        print(f"learned renderer adapted: kept step {report['renderer_best_step']} of {report['renderer_steps']} "
              f"(best on {report['renderer_held_back']} held-back frames); leave-one-out PSNR "
              f"{report['renderer_loo_psnr_before']:.2f} -> {report['renderer_loo_psnr_after']:.2f} dB")
    return 0
