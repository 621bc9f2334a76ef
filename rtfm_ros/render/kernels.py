"""Small image filters of the renderer, written for the sizes it runs them at.

Why not PyTorch's general ops: at the renderer's sizes (a 32x32 half-resolution target depth
per view, batches of 16-48 views, one channel) their per-call cost dwarfs the arithmetic.
``nanmedian`` over an unfolded 3x3 neighbourhood took ~2.5 ms a call (an unfold and a sort per
pixel), ``max_pool2d`` ~1 ms and a nearest ``interpolate`` ~1 ms; the versions here do the
same with a handful of elementwise ops on shifted views and give the same values (the tests
compare them with the ops they replace, NaN and empty pixels included).

The median is a sorting network of 25 min/max pairs over the nine shifted views of the map:
invalid pixels (and the border) sort last as +inf, and the median of the k valid values is the
lower middle one, element (k - 1) // 2, as nanmedian picks.
"""

from __future__ import annotations

from functools import lru_cache

import torch
import torch.nn.functional as F

# A 9-input sorting network (25 compare-exchanges in 7 layers; every 0-1 input is checked by
# tests/test_render_median.py, which by the 0-1 principle proves it sorts every input).
NETWORK_9 = (
    (0, 3), (1, 7), (2, 5), (4, 8),
    (0, 7), (2, 4), (3, 8), (5, 6),
    (0, 2), (1, 3), (4, 5), (7, 8),
    (1, 4), (3, 6), (5, 7),
    (0, 1), (2, 4), (3, 5), (6, 8),
    (2, 3), (4, 5), (6, 7),
    (1, 2), (3, 4), (5, 6),
)
_LOWER = 5  # the median of up to nine values is one of the five smallest


def sort9(values: list[torch.Tensor], keep: int = 9) -> list[torch.Tensor]:
    """Nine same-shaped tensors sorted elementwise (ascending), the ``keep`` smallest returned
    (compare-exchanges that cannot reach those are skipped)."""
    v = list(values)
    needed = _needed(keep)
    for k, (i, j) in enumerate(NETWORK_9):
        if k in needed:
            v[i], v[j] = torch.minimum(v[i], v[j]), torch.maximum(v[i], v[j])
    return v[:keep]


def _needed(keep: int) -> frozenset[int]:
    """The exchanges whose result reaches one of the first ``keep`` outputs."""
    live = set(range(keep))
    out = set()
    for k in range(len(NETWORK_9) - 1, -1, -1):
        i, j = NETWORK_9[k]
        if i in live or j in live:
            out.add(k)
            live.update((i, j))
    return frozenset(out)


def median3(inv: torch.Tensor) -> torch.Tensor:
    """3x3 median of the valid (> 0) pixels of B x H x W ``inv`` at its valid pixels; the
    others keep their value. Equal to the nanmedian of the valid neighbours (border excluded)."""
    B, H, W = inv.shape
    valid = inv > 0
    inf = torch.full((), float("inf"), dtype=inv.dtype, device=inv.device)
    x = F.pad(torch.where(valid, inv, inf)[:, None], (1, 1, 1, 1), value=float("inf"))[:, 0]
    shifted = [x[:, i:i + H, j:j + W] for i in range(3) for j in range(3)]
    low = sort9(shifted, _LOWER)
    count = box3x3(valid.to(inv.dtype))
    pick = ((count - 1) * 0.5).floor().clamp(0, _LOWER - 1).long()
    med = torch.gather(torch.stack(low), 0, pick[None])[0]
    return torch.where(valid, med, inv)


def max3x3(x: torch.Tensor) -> torch.Tensor:
    """B x H x W maximum over each pixel's 3x3 neighbourhood (the border padded with -inf), as
    ``F.max_pool2d(x[:, None], 3, stride=1, padding=1)[:, 0]``: rows, then columns."""
    H, W = x.shape[-2:]
    p = F.pad(x[:, None], (1, 1, 1, 1), value=float("-inf"))[:, 0]
    rows = torch.maximum(torch.maximum(p[:, :, :W], p[:, :, 1:W + 1]), p[:, :, 2:])
    return torch.maximum(torch.maximum(rows[:, :H], rows[:, 1:H + 1]), rows[:, 2:])


def upsample_nearest(x: torch.Tensor, factor: int) -> torch.Tensor:
    """B x H x W -> B x fH x fW, each pixel repeated ``factor`` times along both axes, as
    ``F.interpolate(x[:, None], scale_factor=factor, mode="nearest")[:, 0]``."""
    B, H, W = x.shape
    wide = x[..., None].expand(B, H, W, factor).reshape(B, H, W * factor)  # columns, then whole rows
    return wide[:, :, None].expand(B, H, factor, W * factor).reshape(B, H * factor, W * factor)


def box3x3(x: torch.Tensor) -> torch.Tensor:
    """B x H x W sum over each pixel's 3x3 neighbourhood (zeros beyond the border)."""
    H, W = x.shape[-2:]
    p = F.pad(x[:, None], (1, 1, 1, 1))[:, 0]
    rows = p[:, :, :W] + p[:, :, 1:W + 1] + p[:, :, 2:]
    return rows[:, :H] + rows[:, 1:H + 1] + rows[:, 2:]


def pad_pool(x: torch.Tensor, multiple: int, scale: int) -> torch.Tensor:
    """``F.avg_pool2d(F.pad(x, (0, (-W) % multiple, 0, (-H) % multiple), mode="replicate"), scale)``
    for N x C x H x W ``x`` (``multiple`` a multiple of ``scale``): the pad only where one is
    needed, and a float32 pool as a sum of the ``scale ** 2`` strided views in the pool's own
    order (NCHW ``avg_pool2d`` runs at a fifth of that speed on the learned renderer's input)."""
    H, W = x.shape[-2:]
    if (-H) % multiple or (-W) % multiple:
        x = F.pad(x, (0, (-W) % multiple, 0, (-H) % multiple), mode="replicate")
    if x.dtype != torch.float32 or scale == 1:
        return F.avg_pool2d(x, scale)
    terms = [x[..., i::scale, j::scale] for i in range(scale) for j in range(scale)]
    total = terms[0] + terms[1]
    for term in terms[2:]:
        total += term
    return total / (scale * scale)


def upsample_bilinear(x: torch.Tensor, scale: int, H: int, W: int) -> torch.Tensor:
    """``F.interpolate(x, scale_factor=scale, mode="bilinear", align_corners=False)[..., :H, :W]``
    for N x C x h x w float ``x``, as two matrix products with the interpolation weights (the
    same weights; sums in another order, so float32 rounding noise). Why: the CPU kernel takes a
    channels-last path at these sizes and copies its output back, ~2x slower for the learned
    renderer's 16 x 8 x 32 x 32 output. A non-finite input spreads along its row and column."""
    h, w = x.shape[-2:]
    rows = _interpolation_matrix(h, H, scale, x.device)          # H x h
    cols = _interpolation_matrix(w, W, scale, x.device).T        # w x W
    return torch.matmul(rows, torch.matmul(x.contiguous(), cols))


@lru_cache(maxsize=16)
def _interpolation_matrix(n_in: int, n_out: int, scale: int, device: torch.device) -> torch.Tensor:
    """n_out x n_in linear interpolation weights of align_corners=False upsampling by ``scale``
    (the source of output i is (i + 0.5) / scale - 0.5, clamped at 0, as PyTorch computes it)."""
    src = ((torch.arange(n_out, dtype=torch.float64) + 0.5) / scale - 0.5).clamp_min(0)
    i0 = src.floor().long().clamp_max(n_in - 1)
    i1 = (i0 + 1).clamp_max(n_in - 1)
    frac = src - i0
    m = torch.zeros(n_out, n_in, dtype=torch.float64)
    at = torch.arange(n_out)
    m.index_put_((at, i0), 1 - frac, accumulate=True)
    m.index_put_((at, i1), frac, accumulate=True)
    return m.float().to(device)


def pool_rows_cols(x: torch.Tensor, scale: int) -> torch.Tensor:
    """``scale`` x ``scale`` average of N x C x H x W float ``x`` (sides multiples of ``scale``):
    row groups summed first (whole contiguous rows), then column groups, then scaled. The same
    values as ``F.avg_pool2d(x, scale)`` up to float32 rounding (another summation order); ~3x
    faster than pad_pool's strided sums on the learned renderer's 16 x 26 x 64 x 64 input."""
    N, C, H, W = x.shape
    rows = x.view(N, C, H // scale, scale, W)
    acc = torch.add(rows[:, :, :, 0], rows[:, :, :, 1]) if scale > 1 else rows[:, :, :, 0].clone()
    for i in range(2, scale):
        acc += rows[:, :, :, i]
    cols = acc.view(N, C, H // scale, W // scale, scale)
    out = torch.add(cols[..., 0], cols[..., 1]) if scale > 1 else cols[..., 0].clone()
    for j in range(2, scale):
        out += cols[..., j]
    return out.mul_(1.0 / (scale * scale))


def greater(x: torch.Tensor, value: float) -> torch.Tensor:
    """``(x > value).to(x.dtype)``: 1 where greater, else 0 (NaN: 0), written straight into a
    float tensor. Why: comparisons into bool and bool -> float casts take PyTorch's slow paths
    on this CPU build (~4x and ~6x an elementwise multiply at 63 x 4096), and multiplying a
    float tensor by a bool one promotes element by element (~6x)."""
    return torch.gt(x, value, out=torch.empty_like(x))


def less(x: torch.Tensor, value: float) -> torch.Tensor:
    """``(x < value).to(x.dtype)`` (see greater)."""
    return torch.lt(x, value, out=torch.empty_like(x))


def at_least(x: torch.Tensor, value: float) -> torch.Tensor:
    """``(x >= value).to(x.dtype)`` (see greater)."""
    return torch.ge(x, value, out=torch.empty_like(x))


def at_most(x: torch.Tensor, value: float) -> torch.Tensor:
    """``(x <= value).to(x.dtype)`` (see greater)."""
    return torch.le(x, value, out=torch.empty_like(x))


def as_float(mask: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """A bool mask as 0/1 ``dtype``, through its bytes (the direct cast is ~6x slower here)."""
    return mask.view(torch.uint8).to(dtype)
