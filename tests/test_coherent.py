"""The coherent candidates (render.warp.coherent_depths): depth without fragments, and the best
context warped with it."""

from __future__ import annotations

import dataclasses

import numpy as np
import torch
from test_render_kernels import _contexts

from rtfm_ros.geometry import make_transform
from rtfm_ros.render import context, warp


def test_coherent_depths_drop_small_near_fragments() -> None:
    inv = torch.full((2, 64, 64), 0.1)
    inv[0, 20:23, 30:33] = 0.5   # a near stereo fragment inside a far wall
    inv[0, 40:, :] = 0.2         # a nearer floor over the bottom third
    inv[1] = 0                   # a view without depth
    smooth, plane = warp.coherent_depths(inv, 64 * 64)  # blocks of 8 pixels
    assert smooth.shape == plane.shape == inv.shape
    assert float(smooth[0, 16:28, 24:40].max()) < 0.1 + 1e-6  # the fragment is gone
    assert float(smooth[0, 56:, :].min()) > 0.19               # the floor is kept away from its edge
    assert bool((smooth[0] <= inv[0].max()).all()) and bool((smooth[0] >= 0.1 - 1e-6).all())
    assert torch.equal(plane[0], torch.full((64, 64), 0.1))    # the median
    assert not bool(smooth[1].any()) and not bool(plane[1].any())


def _wall_context(rank: int, x: float, rgb: torch.Tensor) -> context.ContextLevel:
    h, w = rgb.shape[-2:]
    K = torch.tensor([[w * 0.8, 0, w / 2], [0, w * 0.8, h / 2], [0, 0, 1]], dtype=torch.float32)
    return context.ContextLevel(rgb=rgb, depth=torch.full((h, w), 3.0), K=K,
                             T_world_camera=torch.from_numpy(make_transform(None, [x, 0.0, 0.0])), target=0, rank=rank)


def test_coherent_warps_of_a_wall_are_the_best_slot() -> None:
    rng = np.random.default_rng(0)
    ctx = [_wall_context(r, x, torch.from_numpy(rng.random((3, 32, 48)).astype(np.float32)))
           for r, x in enumerate((0.05, -0.1, 0.15))]
    tgt_K = torch.tensor([[[40.0, 0, 24], [0, 40, 16], [0, 0, 1]]])
    tgt_T = torch.from_numpy(make_transform(None, [0.0, 0.0, 0.0]))[None]
    out = warp.render(ctx, tgt_K, tgt_T, 32, 48, slots=4)
    assert out.slots is not None and out.coherent is not None
    assert out.coherent.shape == (1, warp.COHERENT, 4, 32, 48)
    inside = out.coherent[0, :, 3]
    assert bool(((inside == 0) | (inside == 1)).all()) and float(inside.mean()) > 0.8
    # a fronto-parallel wall: every coherent depth is the wall's, so each coherent warp is the
    # best-ranked context's slot wherever that context sees the place
    slot = out.slots[0, 0]
    both = (inside > 0) & (slot[3] > 0)
    for k in range(warp.COHERENT):
        diff = (out.coherent[0, k, :3] - slot[:3]).abs().amax(0)[both[k]]
        assert float(diff.max()) < 1e-4


def test_every_view_of_a_batch_gets_its_own_best_context() -> None:
    ctx, tgt_K, tgt_T = _contexts(3)
    out = warp.render(ctx, tgt_K, tgt_T, 24, 20, slots=4)
    assert out.coherent is not None and out.slots is not None
    for b in range(tgt_K.shape[0]):
        mine = [dataclasses.replace(c, target=0) for c in ctx if c.target == b]
        alone = warp.render(mine, tgt_K[b:b + 1], tgt_T[b:b + 1], 24, 20, slots=4)
        assert alone.coherent is not None
        torch.testing.assert_close(out.coherent[b], alone.coherent[0], rtol=0, atol=1e-5)
