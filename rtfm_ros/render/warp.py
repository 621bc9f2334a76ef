"""Image-based rendering of a target view from posed context frames with depth.

Why this shape: forward-splatting context pixels leaves holes that any fill turns into mosaics,
and it cannot resample an image finer than it was stored. Here geometry and colour are split:

1. Target depth (render.target_depth): the best-ranked contexts' depth points are splatted
   into the target (at half resolution) with a soft z-buffer (the nearest surface wins);
   lower-ranked contexts only fill what those left empty; small gaps are closed and a 3x3
   median removes lone stereo outliers.
2. Colour by backward warping: each target pixel's 3D point is projected into every context
   frame and sampled bilinearly from the pyramid level that matches the target's pixel size
   (no aliasing, no upsampled splats). Each sample is weighted by visibility (the point must
   be what the context frame saw there, by its own depth), by the angle between the target
   ray and the context ray relative to the best-placed context at that pixel, and by rank.
3. What no context saw is filled smoothly from around it (push-pull) and its depth is NaN, so
   depth consumers know it is unknown.

For the learned renderer (render.learned) a render can also return its candidates: the best
contexts warped one by one (``slots``), and the best-ranked context warped with two *coherent*
depths (``coherent``): the target depth reduced to far-biased blocks and smoothed, and one
plane at its median. Where stereo is wrong or missing (a wing only one frame saw at a wide
angle), every slot is warped with the same broken depth and shatters alike; a coherent warp of
the nearest frame is misaligned in detail but whole, which beats fragments there.

The constants below were chosen on the procedural held-out suite and the fox photo set
together (BENCHMARKS.md); `rtfm fit` refits the blend's three to one world.

Everything is batched: B targets, each with its own contexts; contexts of one shape share calls.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from rtfm_ros.render.context import ContextLevel, groups_by_size
from rtfm_ros.render.fill import complete_inverse_depth, push_pull_fill
from rtfm_ros.render.kernels import as_float, at_most, greater, less
from rtfm_ros.render.rays import shared_directions
from rtfm_ros.render.target_depth import stacked_depth

VISIBILITY_SIGMA = 0.06  # relative depth misfit at which a context sample's weight falls to e^-1
ANGLE_SIGMA = math.radians(6.0)  # relative to the best-placed context at each pixel
RANK_DECAY = 0.85        # weight of the n-th ranked context: RANK_DECAY ** n
MIN_WEIGHT = 1e-3        # total weight below which a pixel counts as unseen
SECONDARY_HANDOVER = 0.02  # primary weight at which secondary contexts' share falls to e^-1
DEPTH_CONTEXTS = 2       # best-ranked contexts whose depth makes the target's (the rest fill gaps)
COHERENT = 2             # coherent warps of the best-ranked context (smoothed depth, median plane)
COHERENT_BLOCKS = 8      # the smoothed depth's blocks: the view's geometric-mean side / this


@dataclass
class BlendParams:
    """The blend's few free numbers: the defaults above, or a world's fitted values (rtfm fit),
    which may be tensors that carry gradients."""

    angle_sigma: float | torch.Tensor = ANGLE_SIGMA
    visibility_sigma: float | torch.Tensor = VISIBILITY_SIGMA
    rank_decay: float | torch.Tensor = RANK_DECAY


@dataclass
class Rendered:
    rgb: torch.Tensor     # B x 3 x H x W in [0, 1]
    depth: torch.Tensor   # B x H x W planar z, NaN where no context saw the place
    seen: torch.Tensor    # B x H x W bool
    inv_depth: torch.Tensor  # B x H x W the target's inverse depth the colour was fetched with (0: none)
    # B x S x 5 x H x W when asked: the S best-ranked real contexts warped one by one with the
    # completed target depth: colour (3), share of the blend weight (1), own depth confirms (1)
    slots: torch.Tensor | None = None
    # B x COHERENT x 4 x H x W with the slots: the best-ranked real context warped with the
    # coherent depths (coherent_depths): colour (3), inside that context's image (1)
    coherent: torch.Tensor | None = None


@dataclass
class _Samples:
    """One group of same-sized contexts sampled at every target pixel (rows: contexts)."""

    b: torch.Tensor        # n: the target each context serves
    rgb: torch.Tensor      # n x 3 x HW colour fetched from the context
    base: torch.Tensor     # n x HW visibility x trust x rank weight (0 outside the context)
    cost: torch.Tensor     # n x HW 1 - cos(angle between the target's ray and the context's)
    visible: torch.Tensor  # n x HW the context's own depth confirms the point
    index: list[int]       # the contexts' positions in the list given


def _project(cs: list[ContextLevel], dirs: torch.Tensor, z_flat: torch.Tensor, T_tw: torch.Tensor, H: int,
             W: int) -> tuple[torch.Tensor, ...]:
    """Same-sized contexts' pixels of their targets' points (rays ``dirs`` B x 3 x HW at depths
    ``z_flat`` B x 1 x HW): (target of each context n, context-to-target transforms n x 4 x 4,
    grid n x H x W x 2 in grid_sample's [-1, 1], depth in the context n x HW, the same clamped
    to 1e-9, the targets' depths and rays per context)."""
    h, w = cs[0].depth.shape[-2:]
    dev = dirs.device
    b = torch.tensor([c.target for c in cs], device=dev)
    T_tc = T_tw.index_select(0, b) @ torch.stack([c.T_world_camera for c in cs]).double()   # context -> target
    T_ct = torch.linalg.inv(T_tc).float()
    # The context's pixel of each target point: K (R P + t) with P = z * dirs, as z * (K R dirs) + K t.
    Kc = torch.stack([c.K for c in cs]).float()
    dirs_b, zb = dirs.index_select(0, b), z_flat.index_select(0, b)
    uvw = (Kc @ T_ct[:, :3, :3] @ dirs_b).mul_(zb).add_(Kc @ T_ct[:, :3, 3:])
    z = uvw[:, 2]
    zc = z.clamp_min(1e-9)
    grid = torch.empty(len(cs), H * W, 2, device=dev)  # written in place: no stacked copy
    gx, gy = grid[..., 0], grid[..., 1]
    torch.div(uvw[:, 0], zc, out=gx).mul_(2.0 / w).sub_(1)
    torch.div(uvw[:, 1], zc, out=gy).mul_(2.0 / h).sub_(1)
    return b, T_tc, grid.reshape(len(cs), H, W, 2), z, zc, zb, dirs_b


def _inside(grid: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """n x HW 0/1: the points _project placed in front of the context and inside its image."""
    n = grid.shape[0]
    gx, gy = grid[..., 0].reshape(n, -1), grid[..., 1].reshape(n, -1)
    return greater(z, 1e-6).mul_(less(gx.abs(), 1)).mul_(less(gy.abs(), 1))


def _sample(contexts: list[ContextLevel], inv_depth: torch.Tensor, tgt_K: torch.Tensor, tgt_T: torch.Tensor,
            params: BlendParams) -> tuple[list[_Samples], torch.Tensor]:
    """Every context sampled at the targets' points (from ``inv_depth``), and the best angle cost per
    target pixel among contexts that see it (B x HW; 0 where none does).

    Written for PyTorch's per-op cost on CPU (same values as the plain formulas in the
    comments): in-place steps where no blend parameter is involved, masks made as 0/1 floats
    and applied by multiplying (kernels.greater; ``where`` is ~15x slower than a multiply
    here, bool masks ~5x), and no exp of the huge
    exponents of pixels with no context depth (exp's underflow path is ~5x slower)."""
    B, H, W = inv_depth.shape
    dev = inv_depth.device
    has = inv_depth > 0
    has_f = as_float(has, inv_depth.dtype)
    z_t = (1.0 / inv_depth.clamp_min(1e-12)).mul_(has_f).add_(1 - has_f)  # where(has, 1 / inv, 1): inv finite
    dirs = shared_directions(tgt_K.float(), H, W).reshape(B, 3, -1)  # B 3 HW, z = 1
    dirs2 = (dirs * dirs).sum(1)                                       # B HW
    z_flat = z_t.reshape(B, 1, -1)                                     # target-frame points: z * dirs
    has_flat = has_f.reshape(B, -1)
    T_tw = torch.linalg.inv(tgt_T.double())
    parts = []
    for idx in groups_by_size(contexts).values():
        cs = [contexts[i] for i in idx]
        b, T_tc, grid, z, zc, zb, dirs_b = _project(cs, dirs, z_flat, T_tw, H, W)
        rgb = F.grid_sample(_stacked_rgb(cs), grid, mode="bilinear", padding_mode="border",
                            align_corners=False).reshape(len(cs), 3, -1)
        dctx = torch.stack([c.depth for c in cs])
        dsamp = F.grid_sample(torch.nan_to_num(dctx, nan=0.0)[:, None], grid, mode="nearest",
                              padding_mode="zeros", align_corners=False).reshape(len(cs), -1)
        inside = _inside(grid, z)
        # Visibility: the target's point must be (about) the surface the context saw at that pixel:
        # vis = exp(-((zc / max(dsamp, 1e-9) - 1) / sigma)^2) where dsamp > 0, else 0.05. Where
        # dsamp <= 0 the exponent is not used: zc is added to dsamp there so it is 0, not -inf.
        depth_at = greater(dsamp, 0)
        no_depth = 1 - depth_at
        misfit = torch.div(zc, torch.mul(no_depth, zc).add_(dsamp).clamp_min_(1e-9)).sub_(1)  # ~ log ratio
        scaled = misfit / params.visibility_sigma
        vis = (torch.mul(scaled, scaled).neg_().exp_() * depth_at).add_(no_depth.mul_(0.05))
        # Angle between the target's ray and the context's ray to the same point (1 - cos ~ angle^2 / 2),
        # from per-pixel maps: ray_c = z d - c, so ray_c . d = z |d|^2 - c . d and
        # |ray_c|^2 = z^2 |d|^2 - 2 z c . d + |c|^2 (d = dirs, c = the context's centre).
        centre = T_tc[:, :3, 3].float()                                  # n 3
        c_dot_d = (centre[:, :, None] * dirs_b).sum(1)                    # n HW
        zb, d2 = zb[:, 0], dirs2.index_select(0, b)
        along = torch.mul(zb, d2).sub_(c_dot_d)
        norm2 = torch.mul(zb, zb).mul_(d2).sub_(torch.mul(zb, 2).mul_(c_dot_d))
        norm2.add_((centre * centre).sum(1, keepdim=True)).clamp_min_(1e-18)
        cost = along.mul_(norm2.mul_(d2).rsqrt_()).neg_().add_(1)        # 1 - cos
        rank = (torch.tensor([c.weight for c in cs], device=dev)
                * params.rank_decay ** torch.tensor([float(c.rank) for c in cs], device=dev))[:, None]
        base = (vis * rank).mul_(inside).mul_(has_flat.index_select(0, b))
        parts.append(_Samples(b, rgb, base, cost, vis > 0.5, idx))
    # The angle weight is relative to the best-placed context that sees each pixel, so a view far
    # from every context still takes its colour from the closest one instead of going unseen.
    # Costs are at most 2: an unseen context's is raised by _UNSEEN (a where with inf, slower).
    best = torch.full((B, H * W), _UNSEEN, device=dev)
    for p in parts:
        unseen = greater(p.base, 0).mul_(as_float(p.visible, p.cost.dtype)).neg_().add_(1)
        best.scatter_reduce_(0, p.b[:, None].expand_as(p.cost), torch.add(p.cost, unseen, alpha=_UNSEEN), reduce="amin")
    return parts, best.mul_(best < _UNSEEN)


_UNSEEN = 1e30  # above any angle cost (at most 2), finite (where the seen ones need inf and a where)


def _stacked_rgb(cs: list[ContextLevel]) -> torch.Tensor:
    """n x 3 x h x w float colour in [0, 1] of same-sized contexts; uint8 images (prepared
    frames' own pixels) are stacked first and converted once (the same values as each
    converted alone, without a float copy per context and render)."""
    imgs = [c.rgb for c in cs]
    if all(i.dtype == torch.uint8 for i in imgs):
        return torch.stack(imgs).to(torch.float32).mul_(1.0 / 255.0)
    return torch.stack([i.to(torch.float32).mul_(1.0 / 255.0) if i.dtype == torch.uint8 else i for i in imgs])


def _falloff(p: _Samples, best: torch.Tensor, params: BlendParams) -> torch.Tensor:
    """The angle term of a context's blend weight: 1 for the best-placed context at each pixel,
    falling off with its ray's angle beyond that one's."""
    return torch.exp(-(p.cost - best.index_select(0, p.b)).clamp_min(0) * (2.0 / params.angle_sigma ** 2))


def _accumulate(parts: list[_Samples], best: torch.Tensor, B: int, H: int, W: int, params: BlendParams,
                has: torch.Tensor | None = None,
                falloff: list[torch.Tensor] | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Weighted colour sum, weight and support of sampled contexts (only at ``has`` pixels, if
    given); ``falloff``: the parts' angle terms, when already computed."""
    dev = best.device
    colour = torch.zeros(B, 3, H * W, device=dev)
    weight = torch.zeros(B, H * W, device=dev)
    support = torch.zeros(B, H * W, device=dev)
    flat = None if has is None else as_float(has.reshape(B, -1), best.dtype)
    for k, p in enumerate(parts):
        base = p.base if flat is None else p.base * flat.index_select(0, p.b)
        wgt = base * (_falloff(p, best, params) if falloff is None else falloff[k])
        colour.index_add_(0, p.b, p.rgb * wgt[:, None])
        weight.index_add_(0, p.b, wgt)
        support.index_add_(0, p.b, base)
    return colour.reshape(B, 3, H, W), weight.reshape(B, H, W), support.reshape(B, H, W)


def blend(contexts: list[ContextLevel], inv_depth: torch.Tensor, tgt_K: torch.Tensor, tgt_T: torch.Tensor,
          params: BlendParams | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Backward-warped, weighted colour: (B x 3 x H x W colour sum, B x H x W weight, B x H x W
    support: the visibility-and-rank weight before the angle term, which says whether anything saw it).

    Geometry is in each target camera's frame (float32 stays exact however far the world
    reaches); only the context-to-target transforms are composed in float64.
    """
    B, H, W = inv_depth.shape
    params = params or BlendParams()
    parts, best = _sample(contexts, inv_depth, tgt_K, tgt_T, params)
    return _accumulate(parts, best, B, H, W, params)


def _slot_planes(parts: list[_Samples], falloff: list[torch.Tensor], contexts: list[ContextLevel], B: int, H: int,
                 W: int, slots: int) -> torch.Tensor:
    """B x slots x 5 x H x W: the best-ranked contexts one by one (see Rendered.slots), each
    part's rows written with one indexed copy per plane group (no stacked copy of them first)."""
    out = torch.zeros(B, slots, 5, H * W, device=falloff[0].device if falloff else None)
    for p, fall in zip(parts, falloff):
        rows = [row for row, i in enumerate(p.index) if contexts[i].rank < slots]
        if not rows:
            continue
        sel = torch.tensor(rows, device=out.device)
        base = p.base.index_select(0, sel)
        where = [(contexts[p.index[r]].target, contexts[p.index[r]].rank) for r in rows]
        at = (torch.tensor([t for t, _ in where]), torch.tensor([r for _, r in where]))
        out[:, :, :3][at] = p.rgb.index_select(0, sel)
        out[:, :, 3][at] = base * fall.index_select(0, sel)
        out[:, :, 4][at] = greater(base, 0).mul_(as_float(p.visible.index_select(0, sel)))
    out[:, :, 3] /= out[:, :, 3].sum(1, keepdim=True).clamp_min(1e-6)
    return out.reshape(B, slots, 5, H, W)


def coherent_depths(inv: torch.Tensor, view_pixels: int) -> list[torch.Tensor]:
    """COHERENT B x H x W inverse depths without fragments, from a completed one (no holes:
    fill.complete_inverse_depth; a view without depth is all 0 and gets no candidate): blocks
    of about sqrt(view_pixels) / COHERENT_BLOCKS pixels take their farthest value (the far side
    misplaces less, as in the completion) and are upsampled bilinearly; and one plane at each
    view's median."""
    B, H, W = inv.shape
    side = max(2, round(math.sqrt(view_pixels) / COHERENT_BLOCKS))
    far = -F.max_pool2d(-inv[:, None], side, ceil_mode=True)
    smooth = F.interpolate(far, size=(H, W), mode="bilinear", align_corners=False)[:, 0]
    med = inv.reshape(B, -1).median(1).values
    return [smooth, med[:, None, None].expand(B, H, W)]


def _coherent_planes(primary: list[ContextLevel], inv: torch.Tensor, tgt_K: torch.Tensor, tgt_T: torch.Tensor,
                     view_pixels: int) -> torch.Tensor:
    """B x COHERENT x 4 x H x W (Rendered.coherent) from the completed target depth ``inv``:
    colour and whether the point lands in the frame, nothing else (no visibility or angle)."""
    B, H, W = inv.shape
    out = torch.zeros(B, COHERENT, 4, H * W, device=inv.device)
    best = [c for c in primary if c.rank == 0]
    if not best:
        return out.reshape(B, COHERENT, 4, H, W)
    dirs = shared_directions(tgt_K.float(), H, W).reshape(B, 3, -1)
    T_tw = torch.linalg.inv(tgt_T.double())
    for k, depth in enumerate(coherent_depths(inv, view_pixels)):
        has = greater(depth, 0)
        z_t = (1.0 / depth.clamp_min(1e-12)).mul_(has).add_(1 - has).reshape(B, 1, -1)  # 1 where no depth
        for cs in groups_by_size(best).values():
            group = [best[i] for i in cs]
            b, _, grid, z, _, _, _ = _project(group, dirs, z_t, T_tw, H, W)
            out[b, k, :3] = F.grid_sample(_stacked_rgb(group), grid, mode="bilinear", padding_mode="border",
                                          align_corners=False).reshape(len(group), 3, -1)
            out[b, k, 3] = _inside(grid, z).mul_(has.reshape(B, -1).index_select(0, b))
    return out.reshape(B, COHERENT, 4, H, W)


def render(contexts: list[ContextLevel], tgt_K: torch.Tensor, tgt_T: torch.Tensor, H: int, W: int,
           params: BlendParams | None = None, slots: int = 0, view_pixels: int | None = None) -> Rendered:
    """Render B targets (tgt_K B x 3 x 3, tgt_T B x 4 x 4) from their contexts.

    Contexts with weight 1 are primary; lower-weight ones (generated views) only supply depth
    where no primary one landed and colour where primary ones barely see the place, so views
    made from views never overrule what real frames show. With ``slots``, the ``slots``
    best-ranked primary contexts are also returned warped one by one with the target depth
    completed where it had holes (what the learned renderer chooses from), from the same
    samples the blend uses, with the coherent warps beside them (Rendered.coherent).
    ``view_pixels``: the size of the whole view these targets are tiles of (default H * W),
    which picks the resolution of the target depth and the coherent depth's blocks.
    """
    primary = [c for c in contexts if c.weight >= 1.0]
    secondary = [c for c in contexts if c.weight < 1.0]
    # Depth is taken from the best-ranked contexts first; the others only fill where those saw
    # nothing (one context's stereo outliers cannot punch through a better-placed one's surface).
    inv = torch.zeros(tgt_K.shape[0], H, W, device=tgt_K.device)
    groups = [g for g in ([c for c in primary if c.rank < DEPTH_CONTEXTS],
                          [c for c in primary if c.rank >= DEPTH_CONTEXTS], secondary) if g]
    if groups:
        for layer in stacked_depth(groups, tgt_K, tgt_T, H, W, view_pixels or H * W):
            inv = layer.mul(at_most(inv, 0)).add_(inv)  # where(inv > 0, inv, layer): both finite, >= 0
    params = params or BlendParams()
    B = tgt_K.shape[0]
    planes = coherent = None
    if slots:
        completed = complete_inverse_depth(inv)
        parts, best = _sample(primary, completed, tgt_K, tgt_T, params)
        falloff = [_falloff(p, best, params) for p in parts]
        planes = _slot_planes(parts, falloff, primary, B, H, W, slots)
        coherent = _coherent_planes(primary, completed, tgt_K, tgt_T, view_pixels or H * W)
        colour, weight, support = _accumulate(parts, best, B, H, W, params, has=inv > 0, falloff=falloff)
    else:
        colour, weight, support = blend(primary, inv, tgt_K, tgt_T, params)
    if secondary:
        c2, w2, s2 = blend(secondary, inv, tgt_K, tgt_T, params)
        share = torch.exp(-support / SECONDARY_HANDOVER)
        colour, weight, support = colour + c2 * share[:, None], weight + w2 * share, support + s2 * share
    seen = (support > MIN_WEIGHT) & (weight > 1e-12)
    rgb = colour / weight.clamp_min(1e-12)[:, None]
    if not bool(seen.all()):
        rgb = push_pull_fill(rgb, seen)
    depth = torch.where(seen & (inv > 0), 1.0 / inv.clamp_min(1e-12), float("nan"))
    return Rendered(rgb=rgb.clamp(0, 1), depth=depth, seen=seen, inv_depth=inv, slots=planes, coherent=coherent)
