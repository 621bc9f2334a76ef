"""A context frame as a render reads it: one pyramid level of its colour and depth, posed.

Its own module because both halves of a render read it (render.target_depth splats its depth,
render.warp fetches its colour), and contexts of one size share every batched call."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class ContextLevel:
    """One context frame at the pyramid level chosen for a render."""

    rgb: torch.Tensor     # 3 x h x w float in [0, 1], or uint8 0-255 (converted where sampled)
    depth: torch.Tensor   # h x w planar z (NaN = unknown)
    K: torch.Tensor       # 3 x 3 at this level
    T_world_camera: torch.Tensor  # 4 x 4 float64
    target: int           # index of the target view this context serves
    rank: int             # 0 = best
    weight: float = 1.0   # trust in this frame (generated views count for less than real ones)
    splat_depth: torch.Tensor | None = None  # a coarser level's depth for the target-depth splat
    splat_K: torch.Tensor | None = None
    measured: bool = False  # depth a sensor measured (not estimated): splatted at a finer resolution


def groups_by_size(contexts: list[ContextLevel], splat: bool = False) -> dict[tuple[int, int], list[int]]:
    """The contexts' positions grouped by the size of their depth (``splat``: of the level their
    depth is splatted from), so that each group is one batched call."""
    out: dict[tuple[int, int], list[int]] = {}
    for i, c in enumerate(contexts):
        d = c.splat_depth if splat and c.splat_depth is not None else c.depth
        h, w = d.shape[-2:]
        out.setdefault((h, w), []).append(i)
    return out
