"""The batched render core: views (world, pose, camera) -> images and depth in one call.

Shared by WorldModel.render_batch (N views of one world) and envs.batching.render_many (one view
per world, many worlds sharing one render core). It reads a world only through the ViewWorld
protocol (rtfm_ros.world.WorldModel is the one implementation), so the render package never
imports the facade built on it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Protocol

import numpy as np
import torch

from rtfm_ros.geometry import PinholeCamera
from rtfm_ros.memory import FrameMemory
from rtfm_ros.render import context, warp
from rtfm_ros.render.cache import RenderCore
from rtfm_ros.render.config import RenderConfig
from rtfm_ros.render.fit_file import WorldFit
from rtfm_ros.render.learned import SLOTS, LearnedRenderer, finish, input_planes
from rtfm_ros.render.prepare import PreparedFrame

# Generated views feed back into later renders; real (seeded, observed) frames are trusted more
# so errors do not compound: context juggling ranks generated views after every real frame
# that sees the place (GENERATED_PRIOR), at most EXTRA_GENERATED of them join the real context,
# and their pixels count for GENERATED_WEIGHT of a real frame's where both see a place. A
# generated view at exactly the target pose is exempt (a revisit gives back what was shown).
GENERATED_PRIOR = 1e-3
GENERATED_WEIGHT = 0.05
EXTRA_GENERATED = 2


class EmptyWorldError(RuntimeError):
    """Rendering was asked of a world with no frames."""


class ViewWorld(Protocol):
    """What the render core reads of a world."""

    @property
    def memory(self) -> FrameMemory: ...
    @property
    def core(self) -> RenderCore: ...
    config: RenderConfig
    fit: WorldFit | None

    def prepare(self, frame_id: int) -> PreparedFrame: ...
    def memory_camera(self, camera: PinholeCamera) -> PinholeCamera: ...


@torch.no_grad()
def render_views(views: Sequence[tuple[ViewWorld, np.ndarray, PinholeCamera]],
                 context_cameras: Sequence[PinholeCamera] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """One batched render of views (world, T_world_camera, camera) of one size, each from its own
    world's memory, all worlds on one render core -> (NxHxWx3 uint8, NxHxW depth, NaN where unseen).

    Poses and cameras must already be validated (render_batch / render_many do it). Views of
    worlds with different fitted blend parameters are blended in one call per parameter set.
    ``context_cameras`` (one per view) pick each view's context frames instead of its camera.
    """
    if not views:
        raise ValueError("no views to render")
    if context_cameras is not None and len(context_cameras) != len(views):
        raise ValueError(f"{len(context_cameras)} context cameras for {len(views)} views")
    core = views[0][0].core
    if any(wm.core is not core for wm, _, _ in views):
        raise ValueError("render_views needs worlds that share one render core (group them first)")
    H, W = views[0][2].height, views[0][2].width
    images = np.empty((len(views), H, W, 3), np.uint8)
    depths = np.empty((len(views), H, W), np.float32)
    groups: dict[tuple[int, tuple[float, ...] | None],
                 tuple[warp.BlendParams | None, LearnedRenderer | None, list[int]]] = {}
    for i, (wm, _, _) in enumerate(views):
        params = wm.fit.params if wm.fit is not None else None
        learned = _learned_renderer(wm)
        key = (id(learned), None if params is None else tuple(float(v) for v in dataclasses.astuple(params)))
        groups.setdefault(key, (params, learned, []))[2].append(i)
    for params, learned, idx in groups.values():
        pick = [views[i][2] if context_cameras is None else context_cameras[i] for i in idx]
        images[idx], depths[idx] = _render_group([views[i] for i in idx], pick, params, core.device, learned)
    return images, depths


def _learned_renderer(wm: ViewWorld) -> LearnedRenderer | None:
    """The learned renderer a world's views go through: its own fitted one (rtfm fit), else the
    render core's; None with the learned renderer switched off."""
    if not wm.config.use_learned:
        return None
    if wm.fit is not None and wm.fit.renderer is not None:
        return wm.fit.renderer.to(wm.core.device)
    return wm.core.learned_renderer


def _context_ids(wm: ViewWorld, T: np.ndarray, cam: PinholeCamera, exclude: frozenset[int] = frozenset()) -> list[int]:
    """The view's context: the best real frames, then a few generated views after them (never
    the ``exclude``d ones: leave-one-out training and fitting)."""
    if len(wm.memory) == 0:
        raise EmptyWorldError("the world is empty: seed the world first (add_frame or a saved world)")
    k = wm.config.context_size
    ids = wm.memory.select_context(T, cam, k + EXTRA_GENERATED + len(exclude), generated_prior=GENERATED_PRIOR)
    generated = {i: wm.memory.source(i) == "generated" for i in ids if i not in exclude}
    real = [i for i, g in generated.items() if not g]
    gen = [i for i, g in generated.items() if g]
    ids = real[:k] + gen[: max(EXTRA_GENERATED, k - len(real))]
    if not ids:
        raise EmptyWorldError("context selection found no frame to render from")
    return ids


def view_contexts(views: Sequence[tuple[ViewWorld, np.ndarray, PinholeCamera]], pick: Sequence[PinholeCamera],
                  dev: torch.device,
                  exclude: frozenset[int] = frozenset()) -> tuple[list[context.ContextLevel], list[int]]:
    """Every view's context frames at the pyramid level its pixels need, and the views whose exact
    pose and camera a stored frame holds (a revisit: it gives back what was shown)."""
    contexts: list[context.ContextLevel] = []
    revisits = []
    for b, ((wm, T, cam), pick_cam) in enumerate(zip(views, pick)):
        mem = wm.memory
        for rank, fid in enumerate(_context_ids(wm, T, pick_cam, exclude)):
            prep = wm.prepare(fid)
            Tf = mem.pose(fid)
            exact = float(np.abs(Tf - T).max()) < 1e-6
            if exact and b not in revisits and mem.camera(fid) == wm.memory_camera(cam):
                revisits.append(b)
            generated = mem.source(fid) == "generated"
            weight = GENERATED_WEIGHT if generated and not exact else 1.0
            contexts.append(prep.context(prep.level_for(cam.fx), Tf, b, rank, weight, dev,
                                         measured=prep.source == "sensor" and not generated))
    return contexts, revisits


def _targets(views: Sequence[tuple[ViewWorld, np.ndarray, PinholeCamera]],
             dev: torch.device) -> tuple[torch.Tensor, torch.Tensor, int, int]:
    cams = [cam for _, _, cam in views]
    tgt_K = torch.from_numpy(np.stack([c.K for c in cams])).to(dev, torch.float32)
    tgt_T = torch.from_numpy(np.stack([T for _, T, _ in views])).to(dev, torch.float64)
    return tgt_K, tgt_T, cams[0].height, cams[0].width


def _render_group(views: Sequence[tuple[ViewWorld, np.ndarray, PinholeCamera]], pick: Sequence[PinholeCamera],
                  params: warp.BlendParams | None, dev: torch.device,
                  learned: LearnedRenderer | None = None) -> tuple[np.ndarray, np.ndarray]:
    contexts, revisits = view_contexts(views, pick, dev)
    tgt_K, tgt_T, H, W = _targets(views, dev)
    use = learned is not None and len(revisits) < len(views)
    whole = max(c.width * c.height for c in pick)  # a tile renders as the whole view it belongs to
    out = warp.render(contexts, tgt_K, tgt_T, H, W, params, slots=SLOTS if use else 0, view_pixels=whole)
    rgb = out.rgb
    if learned is not None and use:
        rgb = finish(learned, out)
        rgb[revisits] = out.rgb[revisits]
    images = (rgb * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
    return images, out.depth.float().cpu().numpy()


@torch.no_grad()
def learned_inputs(views: Sequence[tuple[ViewWorld, np.ndarray, PinholeCamera]],
                   exclude: frozenset[int] = frozenset()) -> tuple[torch.Tensor, torch.Tensor]:
    """What the learned renderer sees for these views, and the geometric render (B x 3 x H x W),
    with frames ``exclude`` kept out of the context (training examples: learn.renderer_data)."""
    dev = views[0][0].core.device
    contexts, _ = view_contexts(views, [cam for _, _, cam in views], dev, exclude)
    tgt_K, tgt_T, H, W = _targets(views, dev)
    params = views[0][0].fit.params if views[0][0].fit is not None else None
    out = warp.render(contexts, tgt_K, tgt_T, H, W, params, slots=SLOTS)
    return input_planes(out), out.rgb
