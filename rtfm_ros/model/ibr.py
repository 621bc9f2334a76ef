"""Image-based rendering of a target view from posed context frames with depth.

Why this shape: forward-splatting context pixels leaves holes that any fill turns into mosaics,
and it cannot resample an image finer than it was stored. Here geometry and colour are split:

1. Target depth: every context frame's depth points are splatted into the target with a soft
   z-buffer (the nearest surface wins; points within DEPTH_TOLERANCE of it are averaged in
   inverse depth, so stereo noise does not speckle); small gaps are closed from neighbours.
2. Colour by backward warping: each target pixel's 3D point is projected into every context
   frame and sampled bilinearly from the pyramid level that matches the target's pixel size
   (no aliasing, no upsampled splats). Each sample is weighted by visibility (the point must
   be what the context frame saw there, by its own depth), by the angle between the target
   ray and the context ray (closer viewpoints count more) and by the context's rank.
3. What no context saw is filled from its neighbours (an honest, flat fill) and its depth is
   NaN, so depth consumers know it is unknown.

Everything is batched: B targets, each with its own contexts; contexts of one shape share calls.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from rtfm_ros.rays import camera_directions, fill_holes

DEPTH_TOLERANCE = 0.04   # relative depth band treated as one surface (z-buffer and visibility)
VISIBILITY_SIGMA = 0.06  # relative depth misfit at which a context sample's weight falls to e^-1
ANGLE_SIGMA = math.radians(12.0)
RANK_DECAY = 0.85        # weight of the n-th ranked context: RANK_DECAY ** n
MIN_WEIGHT = 1e-3        # total weight below which a pixel counts as unseen
GAP_FILL_ITERATIONS = 2  # pixel rings of target depth closed from neighbours


@dataclass
class ContextLevel:
    """One context frame at the pyramid level chosen for a render."""

    rgb: torch.Tensor     # 3 x h x w in [0, 1]
    depth: torch.Tensor   # h x w planar z (NaN = unknown)
    K: torch.Tensor       # 3 x 3 at this level
    T_world_camera: torch.Tensor  # 4 x 4 float64
    target: int           # index of the target view this context serves
    rank: int             # 0 = best
    weight: float = 1.0   # trust in this frame (generated views count for less than real ones)


@dataclass
class Rendered:
    rgb: torch.Tensor     # B x 3 x H x W in [0, 1]
    depth: torch.Tensor   # B x H x W planar z, NaN where no context saw the place
    seen: torch.Tensor    # B x H x W bool


def _groups(contexts: list[ContextLevel]) -> dict[tuple[int, int], list[int]]:
    out: dict[tuple[int, int], list[int]] = {}
    for i, c in enumerate(contexts):
        out.setdefault(tuple(c.rgb.shape[-2:]), []).append(i)
    return out


def _close_gaps(inv: torch.Tensor, iterations: int) -> torch.Tensor:
    """Fill zero (empty) pixels of an inverse-depth map with the max of their 3x3 neighbours
    (the nearest surface), a ring at a time: closes the pinholes of a sparse splat."""
    for _ in range(iterations):
        empty = inv <= 0
        if not bool(empty.any()):
            break
        grown = F.max_pool2d(inv[:, None], 3, stride=1, padding=1)[:, 0]
        inv = torch.where(empty, grown, inv)
    return inv


def target_depth(contexts: list[ContextLevel], tgt_K: torch.Tensor, tgt_T: torch.Tensor, H: int, W: int,
                 gap_iterations: int = GAP_FILL_ITERATIONS) -> torch.Tensor:
    """B x H x W inverse depth of the targets (0 where nothing landed), from the contexts' depth."""
    B = tgt_K.shape[0]
    dev = tgt_K.device
    T_tw = torch.linalg.inv(tgt_T.double())
    keys, zs = [], []
    for (h, w), idx in _groups(contexts).items():
        cs = [contexts[i] for i in idx]
        depth = torch.stack([c.depth for c in cs])  # n h w
        K = torch.stack([c.K for c in cs]).float()
        dirs = camera_directions(K, h, w)  # n 3 h w
        pts = dirs * depth[:, None]
        b = torch.tensor([c.target for c in cs], device=dev)
        T_tc = (T_tw[b] @ torch.stack([c.T_world_camera for c in cs]).double()).float()  # n 4 4
        cam = T_tc[:, :3, :3] @ pts.reshape(len(cs), 3, -1) + T_tc[:, :3, 3:]
        uvw = tgt_K[b].float() @ cam
        z = uvw[:, 2]
        u = torch.floor(uvw[:, 0] / z.clamp_min(1e-9))
        v = torch.floor(uvw[:, 1] / z.clamp_min(1e-9))
        ok = torch.isfinite(z) & (z > 1e-6) & (u >= 0) & (u < W) & (v >= 0) & (v < H)
        flat = b[:, None] * (H * W) + (v.clamp(0, H - 1) * W + u.clamp(0, W - 1)).long()
        keys.append(flat[ok])
        zs.append(z[ok])
    key = torch.cat(keys) if keys else torch.zeros(0, dtype=torch.long, device=dev)
    z = torch.cat(zs) if zs else torch.zeros(0, device=dev)
    zmin = torch.full((B * H * W,), float("inf"), device=dev)
    zmin.scatter_reduce_(0, key, z, reduce="amin")
    near = z <= zmin[key] * (1 + DEPTH_TOLERANCE)
    acc = torch.zeros(B * H * W, device=dev).index_add_(0, key[near], 1.0 / z[near])
    cnt = torch.zeros(B * H * W, device=dev).index_add_(0, key[near], torch.ones_like(z[near]))
    inv = (acc / cnt.clamp_min(1)).reshape(B, H, W)
    return _close_gaps(inv, gap_iterations)


def blend(contexts: list[ContextLevel], inv_depth: torch.Tensor, tgt_K: torch.Tensor, tgt_T: torch.Tensor,
          angle_sigma: float = ANGLE_SIGMA) -> tuple[torch.Tensor, torch.Tensor]:
    """Backward-warped, weighted colour: (B x 3 x H x W colour sum / weight, B x H x W weight)."""
    B, H, W = inv_depth.shape
    dev = inv_depth.device
    has = inv_depth > 0
    z_t = torch.where(has, 1.0 / inv_depth.clamp_min(1e-12), torch.ones_like(inv_depth))
    dirs = camera_directions(tgt_K.float(), H, W)  # B 3 H W
    pts_t = (dirs * z_t[:, None]).reshape(B, 3, -1)
    tgt_Tf = tgt_T.double()
    world = (tgt_Tf[:, :3, :3] @ pts_t.double() + tgt_Tf[:, :3, 3:])  # B 3 HW (float64: large worlds)
    ray_t = unit_rows(world - tgt_Tf[:, :3, 3:])
    colour = torch.zeros(B, 3, H * W, device=dev)
    weight = torch.zeros(B, H * W, device=dev)
    for (h, w), idx in _groups(contexts).items():
        cs = [contexts[i] for i in idx]
        b = torch.tensor([c.target for c in cs], device=dev)
        Tc = torch.stack([c.T_world_camera for c in cs]).double()
        T_cw = torch.linalg.inv(Tc)
        p = (T_cw[:, :3, :3] @ world[b] + T_cw[:, :3, 3:]).float()  # n 3 HW
        uvw = torch.stack([c.K for c in cs]).float() @ p
        z = uvw[:, 2]
        zc = z.clamp_min(1e-9)
        gx = uvw[:, 0] / zc / w * 2 - 1
        gy = uvw[:, 1] / zc / h * 2 - 1
        grid = torch.stack([gx, gy], dim=-1).reshape(len(cs), H, W, 2)
        rgb = F.grid_sample(torch.stack([c.rgb for c in cs]), grid, mode="bilinear", padding_mode="border",
                            align_corners=False).reshape(len(cs), 3, -1)
        dctx = torch.stack([c.depth for c in cs])
        known = torch.isfinite(dctx)
        dsamp = F.grid_sample(torch.where(known, dctx, torch.zeros_like(dctx))[:, None], grid, mode="nearest",
                              padding_mode="zeros", align_corners=False).reshape(len(cs), -1)
        inside = (z > 1e-6) & (gx.abs() < 1) & (gy.abs() < 1)
        # Visibility: the target's point must be (about) the surface the context saw at that pixel.
        misfit = torch.log(zc / dsamp.clamp_min(1e-9))
        vis = torch.where(dsamp > 0, torch.exp(-(misfit / VISIBILITY_SIGMA) ** 2), torch.full_like(misfit, 0.05))
        ray_c = unit_rows(world[b] - Tc[:, :3, 3:]).float()
        cosang = (ray_c * ray_t[b].float()).sum(1).clamp(-1, 1)
        ang = torch.arccos(cosang)
        rank = torch.tensor([c.weight * RANK_DECAY ** c.rank for c in cs], device=dev)[:, None]
        wgt = vis * torch.exp(-(ang / angle_sigma) ** 2) * rank * inside * has.reshape(B, -1)[b]
        colour.index_add_(0, b, rgb * wgt[:, None])
        weight.index_add_(0, b, wgt)
    return colour.reshape(B, 3, H, W), weight.reshape(B, H, W)


def unit_rows(v: torch.Tensor) -> torch.Tensor:
    """Normalise B x 3 x N vectors along dim 1."""
    return v / v.norm(dim=1, keepdim=True).clamp_min(1e-12)


def render(contexts: list[ContextLevel], tgt_K: torch.Tensor, tgt_T: torch.Tensor, H: int, W: int) -> Rendered:
    """Render B targets (tgt_K B x 3 x 3, tgt_T B x 4 x 4) from their contexts."""
    inv = target_depth(contexts, tgt_K, tgt_T, H, W)
    colour, weight = blend(contexts, inv, tgt_K, tgt_T)
    seen = weight > MIN_WEIGHT
    rgb = colour / weight.clamp_min(1e-12)[:, None]
    rgb = fill_holes(rgb, seen[:, None].to(rgb.dtype), iterations=max(H, W))
    depth = torch.where(seen & (inv > 0), 1.0 / inv.clamp_min(1e-12), torch.full_like(inv, float("nan")))
    return Rendered(rgb=rgb.clamp(0, 1), depth=depth, seen=seen)
