"""Piecewise-planar completion of a frame's checked stereo depth.

The consistency check (render.consistency) keeps stereo depth only where neighbours agree, which
on sparse real photo sets is a fraction of each frame; the warps of such frames break up into
fragments. Much of what is left out lies on planes (walls, floors, facades), and colour edges
mostly separate them. So the frame is cut into superpixels (SLIC), a plane is fitted per
superpixel to the checked depth that is there (RANSAC), and the superpixel's holes take the
plane's depth where the fit explains most of its points. Then the same again with ever larger
superpixels (about a third as many each pass), fitted to the depth the finer passes left: a
wall or the ground that stereo left almost empty is filled by a plane fitted over a region
large enough to hold some of its depth. Superpixels without a convincing plane stay holes. A
filled point is then checked against the neighbours (completed_depth): where one of them sees a
surface behind it, it would float in the free space that neighbour looks through, and is
dropped. Only checked depth is fitted: planes fitted to the unchecked stereo where little was
confirmed filled more of entry-p10 but cost 1.2 dB on the procedural suite, whose plain walls
give stereo little to match (BENCHMARKS.md, "Piecewise-planar completion").

All superpixels of a pass are fitted at once (hypotheses and their scores as arrays); SLIC is
most of the cost, 0.25-0.9 s per frame once, when its depth is estimated.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np
import torch
from skimage.segmentation import slic

from rtfm_ros.render.consistency import PosedDepth, seen_through
from rtfm_ros.render.rays import camera_directions

FREE_SPACE_TOLERANCE = 0.05   # relative depth by which a neighbour must see past a filled point


@dataclass(frozen=True)
class PlanarConfig:
    """How the completion cuts and fits; the defaults are those measured in BENCHMARKS.md."""

    scales: tuple[int, ...] = (200, 67, 22, 7)  # SLIC superpixels per frame, one pass each
    min_points: int = 20           # fewer depth points than this: no fit
    min_holes: int = 10            # fewer hole pixels than this: nothing to fill
    hypotheses: int = 64           # RANSAC planes tried per superpixel
    scored_points: int = 256       # points each hypothesis is scored on (sampled per superpixel)
    tolerance: float = 0.02        # relative depth error of an inlier
    min_inliers: float = 0.6       # share of inliers a plane needs to fill
    depth_band: float = 2.0        # filled depth within [median / band, median * band]
    seed: int = 0


def planar_fill(rgb: np.ndarray, checked: np.ndarray, K: np.ndarray,
                config: PlanarConfig = PlanarConfig()) -> np.ndarray:
    """``checked`` (H, W, NaN = unchecked) with its holes filled by per-superpixel planes, one
    pass per entry of ``config.scales`` (module docstring).

    ``K`` is the intrinsics of the depth map, ``rgb`` the frame's image (any size; resized to the
    depth's).
    Known depth is never changed.
    """
    height, width = checked.shape
    if rgb.shape[:2] != (height, width):
        rgb = cv2.resize(rgb, (width, height), interpolation=cv2.INTER_AREA)
    # Per-pixel viewing rays with z = 1 (HW, 3), the render core's own (render.rays).
    rays = camera_directions(torch.from_numpy(K[None]).float(), height, width)[0].reshape(3, -1).T.numpy()
    out = checked
    for segments in config.scales:
        out = _fill_pass(rgb, out, rays, segments, config)
    return out if out is not checked else checked.copy()


def _fill_pass(rgb: np.ndarray, checked: np.ndarray, rays: np.ndarray, segments: int,
               config: PlanarConfig) -> np.ndarray:
    """One pass of planar_fill with ``segments`` SLIC superpixels of ``rgb`` (at the depth's size)."""
    labels = slic(rgb, n_segments=segments, compactness=10, start_label=0).ravel()
    count = int(labels.max()) + 1
    fit_depth = checked.ravel()
    known = np.isfinite(fit_depth)
    fit = known & (np.nan_to_num(fit_depth) > 0)
    holes = np.bincount(labels[~known], minlength=count)
    points = np.bincount(labels[fit], minlength=count)
    active = np.flatnonzero((holes >= config.min_holes) & (points >= config.min_points))
    out = checked.copy()
    if active.size == 0:
        return out

    # Fit points grouped by superpixel: sampling is an offset into each group.
    fit_idx = np.flatnonzero(fit)
    fit_idx = fit_idx[np.argsort(labels[fit_idx], kind="stable")]
    starts = np.concatenate([[0], np.cumsum(points)[:-1]])
    rng = np.random.default_rng(config.seed)

    def sample(k: int) -> np.ndarray:   # (A, k) pixel indices, uniform within each superpixel
        off = (rng.random((active.size, k)) * points[active, None]).astype(np.int64)
        return np.asarray(fit_idx[starts[active, None] + off])

    corners = sample(3 * config.hypotheses).reshape(active.size, config.hypotheses, 3)
    P = rays[corners] * fit_depth[corners][..., None]                 # (A, h, 3, 3)
    normal = np.cross(P[:, :, 1] - P[:, :, 0], P[:, :, 2] - P[:, :, 0])
    length = np.linalg.norm(normal, axis=-1, keepdims=True)
    degenerate = length[..., 0] < 1e-12
    normal = normal / np.maximum(length, 1e-12)
    offset = np.einsum("ahk,ahk->ah", normal, P[:, :, 0])            # plane: n . X = offset

    scored = sample(config.scored_points)                             # (A, m)
    z = fit_depth[scored]
    with np.errstate(divide="ignore", invalid="ignore"):
        predicted = offset[:, None, :] / np.einsum("amk,ahk->amh", rays[scored], normal)
        inlier = np.abs(predicted / z[..., None] - 1.0) < config.tolerance
    score = inlier.sum(axis=1)                                        # (A, h)
    score[degenerate] = -1
    best = score.argmax(axis=1)
    good = score[np.arange(active.size), best] >= config.min_inliers * config.scored_points
    plane_n = normal[np.arange(active.size), best]
    plane_d = offset[np.arange(active.size), best]
    median = np.median(z, axis=1)

    # Fill each accepted superpixel's holes with its plane, within the band around its median.
    slot = np.full(count, -1)
    slot[active[good]] = np.flatnonzero(good)
    hole_idx = np.flatnonzero(~known)
    hole_slot = slot[labels[hole_idx]]
    hole_idx, hole_slot = hole_idx[hole_slot >= 0], hole_slot[hole_slot >= 0]
    with np.errstate(divide="ignore", invalid="ignore"):
        depth = plane_d[hole_slot] / np.einsum("pk,pk->p", rays[hole_idx], plane_n[hole_slot])
    ref = median[hole_slot]
    ok = np.isfinite(depth) & (depth > ref / config.depth_band) & (depth < ref * config.depth_band)
    out.reshape(-1)[hole_idx[ok]] = depth[ok].astype(out.dtype)
    return out


def completed_depth(rgb: np.ndarray, checked: np.ndarray, K: np.ndarray,
                    T_world_camera: np.ndarray, neighbours: Sequence[PosedDepth],
                    config: PlanarConfig = PlanarConfig()) -> np.ndarray:
    """planar_fill, keeping only filled points no neighbour sees through (module docstring).
    ``neighbours`` are those the check of ``checked`` used (their unchecked stereo)."""
    filled = planar_fill(rgb, checked, K, config)
    new = np.isfinite(filled) & ~np.isfinite(checked)
    if not new.any():
        return filled
    ref = PosedDepth(torch.from_numpy(filled), K, T_world_camera)
    through = torch.zeros(checked.shape, dtype=torch.bool)
    for other in neighbours:
        through |= seen_through(ref, other, FREE_SPACE_TOLERANCE)
    filled[new & through.numpy()] = np.nan
    return filled
