"""Semi-global aggregation of a stereo cost volume (Hirschmüller's SGM, over inverse-depth planes).

Why: a plane sweep that picks each pixel's best plane from a small window alone is unsure where
the window sees little texture or a surface at a grazing angle (the window's footprint on the
wall is stretched, so its colours do not match); those pixels become unknown and renders built
on them shatter. SGM adds, along four image paths, a small penalty P1 for a one-plane step
between neighbours (slanted surfaces change plane gradually) and a larger P2 for any jump
(allowed, but only where the image has an edge, so depth breaks follow colour breaks). The
winner per pixel then reflects its neighbourhood along whole rows and columns, and textureless
or slanted surfaces get the depth their textured borders imply. The volume keeps its scale
(each path's cost minus its running minimum), so the same confidence margin applies after it.
"""

from __future__ import annotations

import torch

P1 = 0.05          # penalty for a one-plane step between neighbouring pixels (costs are ~0-2)
P2 = 0.5           # penalty for a larger jump, where the image is flat
EDGE = 0.04        # grey-level difference at which P2 has halved (a jump at an edge is cheap)


def _paths(cost: torch.Tensor, guide: torch.Tensor, p1: float, p2: float) -> torch.Tensor:
    """Sum of the forward and backward path costs along the last axis of B x D x h x w volumes
    (``guide``: B x h x w grey image for the edge-aware P2): B x D x h x w."""
    out = cost.clone()
    for flip in (False, True):
        c = cost.flip(-1) if flip else cost
        g = guide.flip(-1) if flip else guide
        jump = (p2 / (1.0 + (g[..., 1:] - g[..., :-1]).abs() / EDGE)).clamp_min(2 * p1)  # B h (w - 1)
        acc = torch.empty_like(c)
        prev = c[..., 0]
        acc[..., 0] = prev
        inf = torch.full_like(prev[:, :1], float("inf"))
        for x in range(1, c.shape[-1]):
            low = prev.amin(1, keepdim=True)                                  # B 1 h
            step = torch.minimum(torch.cat([prev[:, 1:], inf], 1), torch.cat([inf, prev[:, :-1]], 1)) + p1
            best = torch.minimum(torch.minimum(prev, step), low + jump[..., x - 1][:, None])
            prev = c[..., x] + best - low
            acc[..., x] = prev
        out += (acc.flip(-1) if flip else acc) - cost
    return out


@torch.no_grad()
def aggregate_paths(volume: torch.Tensor, gray: torch.Tensor, p1: float = P1, p2: float = P2) -> torch.Tensor:
    """The D x h x w cost volume aggregated along 4 paths (left, right, up, down), averaged so it
    stays on the input's scale; ``gray``: the reference image (h x w) whose edges let depth jump."""
    horizontal = _paths(volume[None], gray[None], p1, p2)[0]
    vertical = _paths(volume.transpose(1, 2)[None], gray.t()[None], p1, p2)[0].transpose(1, 2)
    # horizontal and vertical each hold two paths minus the pixel's own cost once
    return (horizontal + vertical + 2 * volume) / 4
