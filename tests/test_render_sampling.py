"""warp._sample written for PyTorch's per-op cost (in-place steps, masks by multiplying, no exp
of unused huge exponents, cached ray directions, colour converted per batch) gives exactly what
the plain formulation gives, and renders from uint8 contexts equal renders from float ones."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from test_render_kernels import _contexts

from rtfm_ros.render import context, rays, target_depth, warp


def _plain_sample(contexts: list[context.ContextLevel], inv_depth: torch.Tensor, tgt_K: torch.Tensor,
                  tgt_T: torch.Tensor, params: warp.BlendParams) -> tuple[list[warp._Samples], torch.Tensor]:
    """warp._sample as it was written before (where, exp of every exponent, new tensors)."""
    B, H, W = inv_depth.shape
    has = inv_depth > 0
    z_t = torch.where(has, 1.0 / inv_depth.clamp_min(1e-12), torch.ones_like(inv_depth))
    dirs = rays.camera_directions(tgt_K.float(), H, W).reshape(B, 3, -1)
    dirs2 = (dirs * dirs).sum(1)
    z_flat = z_t.reshape(B, 1, -1)
    T_tw = torch.linalg.inv(tgt_T.double())
    parts = []
    for (h, w), idx in target_depth.groups_by_size(contexts).items():
        cs = [contexts[i] for i in idx]
        b = torch.tensor([c.target for c in cs])
        T_tc = T_tw.index_select(0, b) @ torch.stack([c.T_world_camera for c in cs]).double()
        T_ct = torch.linalg.inv(T_tc).float()
        Kc = torch.stack([c.K for c in cs]).float()
        dirs_b, zb = dirs.index_select(0, b), z_flat.index_select(0, b)
        uvw = (Kc @ T_ct[:, :3, :3] @ dirs_b) * zb + Kc @ T_ct[:, :3, 3:]
        z = uvw[:, 2]
        zc = z.clamp_min(1e-9)
        gx = uvw[:, 0] / zc * (2.0 / w) - 1
        gy = uvw[:, 1] / zc * (2.0 / h) - 1
        grid = torch.stack([gx, gy], -1).reshape(len(cs), H, W, 2)
        rgb = F.grid_sample(torch.stack([c.rgb.float() / 255 if c.rgb.dtype == torch.uint8 else c.rgb for c in cs]),
                            grid, mode="bilinear", padding_mode="border", align_corners=False).reshape(len(cs), 3, -1)
        dctx = torch.stack([c.depth for c in cs])
        dsamp = F.grid_sample(torch.nan_to_num(dctx, nan=0.0)[:, None], grid, mode="nearest",
                              padding_mode="zeros", align_corners=False).reshape(len(cs), -1)
        inside = (z > 1e-6) & (gx.abs() < 1) & (gy.abs() < 1)
        misfit = zc / dsamp.clamp_min(1e-9) - 1
        vis = torch.where(dsamp > 0, torch.exp(-(misfit / params.visibility_sigma) ** 2), 0.05)
        centre = T_tc[:, :3, 3].float()
        c_dot_d = (centre[:, :, None] * dirs_b).sum(1)
        zb, d2 = zb[:, 0], dirs2.index_select(0, b)
        along = zb * d2 - c_dot_d
        norm2 = (zb * zb * d2 - 2 * zb * c_dot_d + (centre * centre).sum(1, keepdim=True)).clamp_min(1e-18)
        cosang = along * torch.rsqrt(norm2 * d2)
        rank = (torch.tensor([c.weight for c in cs])
                * params.rank_decay ** torch.tensor([float(c.rank) for c in cs]))[:, None]
        parts.append(warp._Samples(b, rgb, vis * rank * (inside & has.reshape(B, -1).index_select(0, b)), 1 - cosang,
                                   vis > 0.5, idx))
    best = torch.full((B, H * W), float("inf"))
    for p in parts:
        seen_cost = torch.where(p.visible & (p.base > 0), p.cost, float("inf"))
        best.scatter_reduce_(0, p.b[:, None].expand_as(p.cost), seen_cost, reduce="amin")
    return parts, torch.where(torch.isfinite(best), best, torch.zeros_like(best))


def _inverse_depth(seed: int, B: int, H: int, W: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    inv = 1 / (1.0 + 3 * torch.rand(B, H, W, generator=g))
    inv[torch.rand(B, H, W, generator=g) < 0.2] = 0
    return inv


@pytest.mark.parametrize("seed", range(8))
def test_sample_equals_the_plain_formulation(seed: int) -> None:
    ctx, tgt_K, tgt_T = _contexts(seed)
    for c in ctx[::3]:  # a context with no depth at all, and one far off: huge misfits
        c.depth = torch.full_like(c.depth, float("nan"))
    ctx[1].depth = ctx[1].depth * 50
    inv = _inverse_depth(seed, 3, 24, 20)
    params = warp.BlendParams()
    new, best = warp._sample(ctx, inv, tgt_K, tgt_T, params)
    old, ref = _plain_sample(ctx, inv, tgt_K, tgt_T, params)
    assert torch.equal(best, ref) and bool((best > 0).any())
    for p, q in zip(new, old):
        for f in ("b", "rgb", "base", "cost", "visible"):
            assert torch.equal(getattr(p, f), getattr(q, f)), f
        assert p.index == q.index


def test_sample_with_blend_parameters_that_carry_gradients() -> None:
    ctx, tgt_K, tgt_T = _contexts(3)
    sigma = torch.tensor(warp.VISIBILITY_SIGMA, requires_grad=True)
    decay = torch.tensor(warp.RANK_DECAY, requires_grad=True)
    params = warp.BlendParams(visibility_sigma=sigma, rank_decay=decay)
    inv = _inverse_depth(3, 3, 24, 20)
    parts, _ = warp._sample(ctx, inv, tgt_K, tgt_T, params)
    sum(p.base.sum() for p in parts).backward()
    assert sigma.grad is not None and decay.grad is not None and float(sigma.grad.abs()) > 0


def test_shared_directions_equal_camera_directions() -> None:
    K = torch.tensor([[50.0, 0, 32], [0, 50, 30], [0, 0, 1]])
    other = torch.tensor([[40.0, 0, 20], [0, 44, 16], [0, 0, 1]])
    for batch in (K.repeat(5, 1, 1), torch.stack([K, other, K])):
        for H, W in ((64, 64), (7, 11)):
            assert torch.equal(rays.shared_directions(batch, H, W), rays.camera_directions(batch, H, W))


def test_uint8_contexts_render_as_their_float_colour() -> None:
    ctx, tgt_K, tgt_T = _contexts(5)
    rng = np.random.default_rng(5)
    as_bytes = [dataclasses.replace(c, rgb=torch.from_numpy(rng.integers(0, 256, tuple(c.rgb.shape), dtype=np.uint8)))
                for c in ctx]
    as_float = [dataclasses.replace(c, rgb=c.rgb.to(torch.float32).mul_(1.0 / 255.0)) for c in as_bytes]
    mixed = [c if k % 2 else f for k, (c, f) in enumerate(zip(as_bytes, as_float))]
    ref = warp.render(as_float, tgt_K, tgt_T, 24, 20, slots=4)
    for test in (as_bytes, mixed):
        out = warp.render(test, tgt_K, tgt_T, 24, 20, slots=4)
        assert torch.equal(out.rgb, ref.rgb) and out.slots is not None and ref.slots is not None
        assert torch.equal(out.slots, ref.slots)


def _plain_splat(contexts: list[context.ContextLevel], tgt_K: torch.Tensor, tgt_T: torch.Tensor, H: int,
                 W: int) -> torch.Tensor:
    """target_depth's splat before the gap closing, as written before: the points that land
    compacted with nonzero, then the soft z-buffer over them alone."""
    B = tgt_K.shape[0]
    T_tw = torch.linalg.inv(tgt_T.double())
    keys, zs = [], []
    for (h, w), idx in target_depth.groups_by_size(contexts).items():
        cs = [contexts[i] for i in idx]
        depth = torch.stack([c.depth for c in cs])
        K = torch.stack([c.K for c in cs]).float()
        pts = rays.camera_directions(K, h, w) * depth[:, None]
        b = torch.tensor([c.target for c in cs])
        T_tc = (T_tw.index_select(0, b) @ torch.stack([c.T_world_camera for c in cs]).double()).float()
        cam = T_tc[:, :3, :3] @ pts.reshape(len(cs), 3, -1) + T_tc[:, :3, 3:]
        uvw = tgt_K.index_select(0, b).float() @ cam
        z = uvw[:, 2]
        u = torch.floor(uvw[:, 0] / z.clamp_min(1e-9))
        v = torch.floor(uvw[:, 1] / z.clamp_min(1e-9))
        ok = torch.isfinite(z) & (z > 1e-6) & (u >= 0) & (u < W) & (v >= 0) & (v < H)
        flat = b[:, None] * (H * W) + (v.clamp(0, H - 1) * W + u.clamp(0, W - 1)).long()
        sel = ok.reshape(-1).nonzero().squeeze(1)
        keys.append(flat.reshape(-1).index_select(0, sel))
        zs.append(z.reshape(-1).index_select(0, sel))
    key, z = torch.cat(keys), torch.cat(zs)
    zmin = torch.full((B * H * W,), float("inf"))
    zmin.scatter_reduce_(0, key, z, reduce="amin")
    near = z <= zmin[key] * (1 + target_depth.DEPTH_TOLERANCE)
    sel = near.nonzero().squeeze(1)
    key_near, z_near = key.index_select(0, sel), z.index_select(0, sel)
    acc = torch.zeros(B * H * W).index_add_(0, key_near, 1.0 / z_near)
    cnt = torch.zeros(B * H * W).index_add_(0, key_near, torch.ones_like(z_near))
    return (acc / cnt.clamp_min(1)).reshape(B, H, W)


@pytest.mark.parametrize("seed", range(8))
def test_splat_without_compaction_equals_the_compacted_one(seed: int) -> None:
    ctx, tgt_K, tgt_T = _contexts(seed)
    ctx[0].depth = ctx[0].depth.clone()
    ctx[0].depth[0, :3] = torch.tensor([-1.0, float("inf"), 1e-8])  # behind, at infinity, at the camera
    for H, W in ((24, 20), (9, 31)):
        out = target_depth.target_depth(ctx, tgt_K, tgt_T, H, W, gap_iterations=0)
        assert torch.equal(out, _plain_splat(ctx, tgt_K, tgt_T, H, W)) and bool((out > 0).any())
