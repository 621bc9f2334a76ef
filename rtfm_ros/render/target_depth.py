"""The target view's depth, splatted from its context frames' depth (render.warp fetches colour with it).

Why a soft z-buffer at reduced resolution: the nearest surface must win where several frames
land on one pixel, but stereo noise spreads one surface over a band of depths, so points within
DEPTH_TOLERANCE of the nearest are averaged (in inverse depth); geometry varies slowly next to
colour, so large views splat at half or a quarter of their resolution (a fraction of the work)
and are upsampled, with small gaps closed and a 3x3 median against lone stereo outliers.
"""

from __future__ import annotations

import math

import torch

from rtfm_ros.render.context import ContextLevel, groups_by_size
from rtfm_ros.render.kernels import at_least, at_most, greater, less, max3x3, median3, upsample_nearest
from rtfm_ros.render.rays import shared_directions

DEPTH_TOLERANCE = 0.08   # relative depth band treated as one surface in the z-buffer
GAP_FILL_ITERATIONS = 2  # pixel rings of target depth closed from neighbours
DEPTH_MEDIAN = True      # 3x3 median on the target's depth before colour is fetched
SPLAT_MIN_SIDE = 32      # targets at least twice this size splat their depth at half resolution
QUARTER_DEPTH_PIXELS = 400 * 300  # ... and larger ones at a quarter


def _close_gaps(inv: torch.Tensor, iterations: int) -> torch.Tensor:
    """Fill zero (empty) pixels of an inverse-depth map with the max of their 3x3 neighbours
    (the nearest surface), a ring at a time: closes the pinholes of a sparse splat."""
    for _ in range(iterations):
        empty = at_most(inv, 0)
        if not bool(empty.any()):
            break
        inv = max3x3(inv).mul_(empty).add_(inv)  # where(empty, grown, inv): inv is 0 there, both finite
    return inv


def target_depth(contexts: list[ContextLevel], tgt_K: torch.Tensor, tgt_T: torch.Tensor, H: int, W: int,
                 gap_iterations: int = GAP_FILL_ITERATIONS, coarse: bool = False,
                 targets: list[int] | None = None) -> torch.Tensor:
    """B x H x W inverse depth of the targets (0 where nothing landed), from the contexts' depth
    (their coarser splat levels with ``coarse``); ``targets``: each context's target index
    instead of its own ``target`` (several splats stacked as one batch of targets)."""
    B = tgt_K.shape[0]
    dev = tgt_K.device
    T_tw = torch.linalg.inv(tgt_T.double())
    keys, zs = [], []
    for (h, w), idx in groups_by_size(contexts, splat=coarse).items():
        cs = [contexts[i] for i in idx]
        levels = [(c.splat_depth, c.splat_K) if coarse and c.splat_depth is not None and c.splat_K is not None
                  else (c.depth, c.K) for c in cs]
        depth = torch.stack([d for d, _ in levels])  # n h w
        K = torch.stack([k for _, k in levels]).float()
        dirs = shared_directions(K, h, w)  # n 3 h w
        pts = dirs * depth[:, None]
        b = torch.tensor([c.target if targets is None else targets[i] for c, i in zip(cs, idx)], device=dev)
        T_tc = (T_tw.index_select(0, b) @ torch.stack([c.T_world_camera for c in cs]).double()).float()  # n 4 4
        cam = T_tc[:, :3, :3] @ pts.reshape(len(cs), 3, -1) + T_tc[:, :3, 3:]
        uvw = tgt_K.index_select(0, b).float() @ cam
        z = uvw[:, 2]
        u = torch.floor(uvw[:, 0] / z.clamp_min(1e-9))
        v = torch.floor(uvw[:, 1] / z.clamp_min(1e-9))
        ok = greater(z, 1e-6).mul_(less(z, math.inf)).mul_(at_least(u, 0)).mul_(less(u, W))
        ok = ok.mul_(at_least(v, 0)).mul_(less(v, H)).long()  # 0/1
        flat = b[:, None] * (H * W) + (v.clamp(0, H - 1) * W + u.clamp(0, W - 1)).long()
        # Points that miss go to one extra bin past the targets' pixels (no compaction by
        # nonzero: ~4x the cost of the arithmetic at these sizes); whatever their z, it only
        # reaches that bin, which is dropped.
        keys.append(flat.mul_(ok).add_(ok.neg_().add_(1).mul_(B * H * W)).reshape(-1))
        zs.append(z.reshape(-1))
    key = torch.cat(keys) if keys else torch.zeros(0, dtype=torch.long, device=dev)
    z = torch.cat(zs) if zs else torch.zeros(0, device=dev)
    zmin = torch.full((B * H * W + 1,), math.inf, device=dev)
    zmin.scatter_reduce_(0, key, z, reduce="amin")
    near = (z <= zmin.index_select(0, key) * (1 + DEPTH_TOLERANCE)).to(z.dtype)  # the nearest surface's points
    acc = torch.zeros(B * H * W + 1, device=dev).index_add_(0, key, z.reciprocal().mul_(near))
    cnt = torch.zeros(B * H * W + 1, device=dev).index_add_(0, key, near)
    inv = (acc[:-1] / cnt[:-1].clamp_min(1)).reshape(B, H, W)
    return _close_gaps(inv, gap_iterations)


def stacked_depth(groups: list[list[ContextLevel]], tgt_K: torch.Tensor, tgt_T: torch.Tensor, H: int, W: int,
           view_pixels: int) -> torch.Tensor:
    """G x B x H x W target inverse depth from each group of contexts alone, all groups splatted,
    filtered and upsampled as one stack of G * B targets (one pass of small ops, not G)."""
    B = tgt_K.shape[0]
    contexts = [c for g in groups for c in g]
    targets = [k * B + c.target for k, g in enumerate(groups) for c in g]
    K_all, T_all = tgt_K.repeat(len(groups), 1, 1), tgt_T.repeat(len(groups), 1, 1)
    # Geometry at half the resolution (colour still at full): a quarter of the splat work; at a
    # quarter for large views (by the whole view's size, so its tiles match it). Depth a sensor
    # measured is splatted one step finer: its edges are exact, and a coarse splat's blocks put
    # the wrong surface's colour along every silhouette (up to 1.6 dB on RGB-D rooms, BENCHMARKS.md).
    # The real frames decide (generated views only fill where none of them landed).
    f = (4 if view_pixels > QUARTER_DEPTH_PIXELS else 2) if min(H, W) >= 2 * SPLAT_MIN_SIDE else 1
    real = [c for c in contexts if c.weight >= 1.0]
    if f > 1 and real and all(c.measured for c in real):
        f //= 2
    if f > 1:
        K_s = K_all.clone()
        K_s[:, :2] /= f
        h, w = -(-H // f), -(-W // f)
        inv = target_depth(contexts, K_s, T_all, h, w, coarse=True, targets=targets)
        if DEPTH_MEDIAN:
            inv = median3(inv)
        inv = upsample_nearest(inv, f)[:, :H, :W]
    else:
        inv = target_depth(contexts, K_all, T_all, H, W, targets=targets)
        inv = median3(inv) if DEPTH_MEDIAN else inv
    return inv.reshape(len(groups), B, H, W)
