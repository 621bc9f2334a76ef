"""The renderer's own small kernels (render.kernels) and batched steps give exactly what the
general PyTorch ops and the one-at-a-time code they replace give, empty and NaN pixels included."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from rtfm_ros.geometry import make_transform
from rtfm_ros.render import context, kernels, prepare, target_depth, warp


def _nanmedian3(inv: torch.Tensor) -> torch.Tensor:
    """The definition median3 replaces: nanmedian over the unfolded 3x3 neighbourhood."""
    B, H, W = inv.shape
    x = torch.where(inv > 0, inv, torch.full_like(inv, float("nan")))
    patches = F.unfold(x[:, None], 3, padding=1)
    edge = F.unfold(torch.ones_like(x)[:, None], 3, padding=1) == 0
    patches = torch.where(edge, torch.full_like(patches, float("nan")), patches)
    med = patches.nanmedian(dim=1).values.reshape(B, H, W)
    return torch.where(inv > 0, torch.nan_to_num(med, nan=0.0), inv)


def _maps(seed: int, *, ties: bool = False) -> torch.Tensor:
    """A random batch of maps with empty (0), negative and NaN pixels, sizes down to 1x1."""
    g = torch.Generator().manual_seed(seed)
    B, H, W = (int(v) for v in torch.randint(1, 11, (3,), generator=g))
    x = torch.rand(B, H, W, generator=g) * 3
    m = torch.rand(B, H, W, generator=g)
    x[m < 0.3] = 0
    x[(m >= 0.3) & (m < 0.35)] = float("nan")
    x[(m >= 0.35) & (m < 0.4)] = -1
    return (x * 4).round() / 4 if ties else x


def _same(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.shape == b.shape and torch.equal(a.nan_to_num(-123.0), b.nan_to_num(-123.0))


def test_sorting_network_sorts_every_input() -> None:
    # 0-1 principle: a comparator network that sorts every 0/1 input sorts every input.
    for bits in itertools.product((0.0, 1.0), repeat=9):
        out = kernels.sort9([torch.tensor([b]) for b in bits])
        assert [float(o) for o in out] == sorted(bits)
    vals = [torch.tensor([float(v)]) for v in (5, 3, 8, 1, 9, 2, 7, 4, 6)]
    assert [float(o) for o in kernels.sort9(vals, keep=5)] == [1, 2, 3, 4, 5]


@pytest.mark.parametrize("seed", range(60))
def test_median3_equals_nanmedian_of_valid_neighbours(seed: int) -> None:
    x = _maps(seed, ties=seed % 3 == 0)
    assert _same(kernels.median3(x), _nanmedian3(x))


def test_median3_on_all_empty_and_all_valid_maps() -> None:
    empty = torch.zeros(2, 5, 6)
    assert _same(kernels.median3(empty), _nanmedian3(empty))
    full = torch.rand(3, 7, 4) + 0.1
    assert _same(kernels.median3(full), _nanmedian3(full))


@pytest.mark.parametrize("seed", range(30))
def test_max_box_and_nearest_equal_the_pooling_ops(seed: int) -> None:
    x = _maps(seed)
    assert _same(kernels.max3x3(x), F.max_pool2d(x[:, None], 3, stride=1, padding=1)[:, 0])
    finite = x.nan_to_num(0.0)
    box = F.conv2d(finite[:, None], torch.ones(1, 1, 3, 3), padding=1)[:, 0]
    assert torch.allclose(kernels.box3x3(finite), box, atol=1e-5)
    for f in (2, 4):
        assert _same(kernels.upsample_nearest(x, f), F.interpolate(x[:, None], scale_factor=f, mode="nearest")[:, 0])


def _contexts(seed: int, B: int = 3,
              per_view: int = 4) -> tuple[list[context.ContextLevel], torch.Tensor, torch.Tensor]:
    """Random contexts of several shapes around B targets (some generated, some depth missing)."""
    rng = np.random.default_rng(seed)
    ctx = []
    for b in range(B):
        for rank in range(per_view):
            h, w = (16, 16) if rank % 2 else (8, 12)
            depth = torch.from_numpy(rng.uniform(1.0, 4.0, (h, w)).astype(np.float32))
            depth[torch.from_numpy(rng.random((h, w)) < 0.2)] = float("nan")
            K = torch.tensor([[w * 0.9, 0, w / 2], [0, w * 0.9, h / 2], [0, 0, 1]], dtype=torch.float32)
            K_half = K * torch.tensor([[0.5], [0.5], [1.0]])
            T = torch.from_numpy(make_transform(None, [b * 0.1 + rng.normal(0, 0.1), rng.normal(0, 0.05), 0.0]))
            ctx.append(context.ContextLevel(rgb=torch.from_numpy(rng.random((3, h, w)).astype(np.float32)), depth=depth,
                                         K=K, T_world_camera=T, target=b, rank=rank,
                                         weight=1.0 if rank < 3 else 0.05,
                                         splat_depth=depth[::2, ::2].contiguous(), splat_K=K_half))
    tgt_K = torch.tensor([[64 * 0.9, 0, 32], [0, 64 * 0.9, 32], [0, 0, 1]], dtype=torch.float32).repeat(B, 1, 1)
    tgt_T = torch.from_numpy(np.stack([make_transform(None, [b * 0.1, 0.0, -0.2]) for b in range(B)]))
    return ctx, tgt_K, tgt_T


@pytest.mark.parametrize("size", [(64, 64), (24, 20)])
def test_depth_groups_stacked_equal_each_group_alone(size: tuple[int, int]) -> None:
    ctx, tgt_K, tgt_T = _contexts(1)
    groups = [[c for c in ctx if c.rank < 2], [c for c in ctx if c.rank == 2], [c for c in ctx if c.rank == 3]]
    H, W = size
    stacked = target_depth.stacked_depth(groups, tgt_K, tgt_T, H, W, H * W)
    for k, g in enumerate(groups):
        assert torch.equal(stacked[k], target_depth.stacked_depth([g], tgt_K, tgt_T, H, W, H * W)[0])
    assert bool((stacked > 0).any())


def test_slot_planes_equal_per_context_copies() -> None:
    ctx, tgt_K, tgt_T = _contexts(2)
    B, H, W, slots = 3, 32, 32, 3
    inv = warp.complete_inverse_depth(target_depth.stacked_depth([ctx], tgt_K, tgt_T, H, W, H * W)[0])
    params = warp.BlendParams()
    parts, best = warp._sample(ctx, inv, tgt_K, tgt_T, params)
    falloff = [warp._falloff(p, best, params) for p in parts]
    ref = torch.zeros(B, slots, 5, H * W)
    for p, fall in zip(parts, falloff):
        wgt = p.base * fall
        for row, i in enumerate(p.index):
            c = ctx[i]
            if c.rank < slots:
                ref[c.target, c.rank, :3] = p.rgb[row]
                ref[c.target, c.rank, 3] = wgt[row]
                ref[c.target, c.rank, 4] = (p.visible[row] & (p.base[row] > 0)).float()
    ref[:, :, 3] /= ref[:, :, 3].sum(1, keepdim=True).clamp_min(1e-6)
    assert bool((ref[:, :, 3] > 0).any()) and bool((ref[:, :, 4] > 0).any())
    assert torch.equal(warp._slot_planes(parts, falloff, ctx, B, H, W, slots), ref.reshape(B, slots, 5, H, W))


@pytest.mark.parametrize("seed", range(20))
def test_pad_pool_equals_replicate_pad_then_avg_pool(seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    N, C = (int(v) for v in torch.randint(1, 4, (2,), generator=g))
    H, W = (int(v) for v in torch.randint(1, 70, (2,), generator=g))
    x = torch.rand(N, C, H, W, generator=g) * 10.0 ** float(torch.randn(1, generator=g))
    for scale in (2, 4):
        m = 8 * scale
        ref = F.avg_pool2d(F.pad(x, (0, (-W) % m, 0, (-H) % m), mode="replicate"), scale)
        assert torch.equal(kernels.pad_pool(x, m, scale), ref)
    half = x.to(torch.bfloat16)
    assert torch.equal(kernels.pad_pool(half, 16, 2), F.avg_pool2d(F.pad(half, (0, (-W) % 16, 0, (-H) % 16),
                                                                         mode="replicate"), 2))


@pytest.mark.parametrize("seed", range(12))
def test_pyramid_levels_built_on_use_equal_the_whole_pyramid(seed: int) -> None:
    rng = np.random.default_rng(seed)
    H, W = (int(v) for v in rng.integers(1, 140, 2))
    rgb = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
    depth = rng.uniform(0.1, 5, (H, W)).astype(np.float32)
    m = rng.random((H, W))
    depth[m < 0.2] = np.nan
    depth[(m >= 0.2) & (m < 0.25)] = np.inf
    depth[(m >= 0.25) & (m < 0.3)] = 0
    depth[(m >= 0.3) & (m < 0.32)] = -1
    K = np.array([[W * 0.8, 0, W / 2], [0, W * 0.8, H / 2], [0, 0, 1.0]])
    full = prepare.PreparedFrame(*prepare._pyramid(rgb, depth, K, None)[:3], "sensor")
    rgbs, depths, Ks, levels = prepare._pyramid(rgb, depth, K)
    lazy = prepare.PreparedFrame(rgbs, depths, Ks, "sensor", levels=levels)
    assert lazy.levels == full.levels == len(full.rgb) and lazy.nbytes == full.nbytes
    assert len(lazy.rgb) == min(prepare.EAGER_LEVELS, levels)
    for fx in (K[0, 0], K[0, 0] / 2.5, K[0, 0] / 9, K[0, 0] / 100):
        assert lazy.level_for(fx) == full.level_for(fx)
    lazy.context(lazy.level_for(K[0, 0] / 9), np.eye(4), 0, 0, 1.0, torch.device("cpu"))
    lazy.ensure_level(levels + 3)
    assert len(lazy.rgb) == len(full.rgb)
    for a, b in zip(lazy.rgb, full.rgb):
        assert torch.equal(a, b)
    for a, b in zip(lazy.depth, full.depth):
        assert _same(a, b)
    for a, b in zip(lazy.K, full.K):
        assert np.array_equal(a, b)
