"""Multi-view stereo depth for frames that come without depth: a plane sweep over posed neighbours.

Why geometry from the photos themselves: a monocular depth prior learned on procedural rooms
predicts their ~2 m whatever the scene, while photo-consistency across posed views holds at any
scale (a COLMAP-scaled photo set, a 10 m facade, a room). The sweep tests inverse-depth planes
whose range comes from the scene itself (a cheap wide sweep over half a baseline to a thousand
baselines first; where that finds nothing, where the cameras' optical axes converge) or from
the user, so nothing assumes metres.

Per reference frame (reduced to ``work_side`` pixels on its long side): every source image is
warped onto each plane; the matching cost is 1 - ZNCC over a small window (robust to exposure
and white-balance differences between photos) plus a little colour difference (for flat areas
where ZNCC is undefined); the best half of the sources per plane are averaged (occlusions); the
volume is aggregated along image rows and columns (render.semi_global), so slanted and
textureless surfaces take the depth their surroundings imply; the winner per pixel is refined
to sub-plane precision by a parabola. A confidence (how much better the winner is than the
average plane) marks pixels to trust; the rest become NaN (unknown).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from rtfm_ros.render.rays import camera_directions
from rtfm_ros.render.semi_global import aggregate_paths

PLANES = 64
WORK_SIDE = 192           # long side (pixels) at which the cost volume is built
WINDOW = 5                # ZNCC window (pixels at the working resolution)
COLOUR_WEIGHT = 0.5       # share of the absolute colour difference in the matching cost
MIN_CONFIDENCE = 0.08     # pixels whose winner is not this much better than the mean are unknown
NEAR_FACTOR, FAR_FACTOR = 0.2, 50.0  # fallback range: [near, far] x the scene distance
COARSE_PLANES = 48        # the wide first sweep that finds the range to sweep finely
COARSE_MARGIN = 1.5       # the fine range is the coarse depths' 2-98 % span, widened by this factor
SEMI_GLOBAL = True        # semi-global aggregation of the cost volume (render.semi_global)


class DepthEstimationError(ValueError):
    """Frames that multi-view stereo cannot use (no neighbour with a baseline)."""


@dataclass(frozen=True)
class PosedImage:
    """An image with its camera: rgb HxWx3 uint8 (or 3xHxW float tensor in [0, 1])."""

    rgb: np.ndarray | torch.Tensor
    K: np.ndarray                 # 3x3, pixel centres at (u + 0.5, v + 0.5)
    T_world_camera: np.ndarray    # 4x4 optical axes


def _tensor(rgb: np.ndarray | torch.Tensor) -> torch.Tensor:
    if isinstance(rgb, torch.Tensor):
        return rgb.float()
    return torch.from_numpy(np.array(rgb)).permute(2, 0, 1).float() / 255.0


def _resized(img: torch.Tensor, K: np.ndarray, side: int) -> tuple[torch.Tensor, np.ndarray]:
    """Area-downsample so the long side is at most ``side``; intrinsics scaled to match."""
    H, W = img.shape[-2:]
    s = min(1.0, side / max(H, W))
    h, w = max(8, round(H * s)), max(8, round(W * s))
    if (h, w) == (H, W):
        return img, K.astype(np.float64)
    out = F.interpolate(img[None], size=(h, w), mode="area")[0]
    K2 = K.astype(np.float64).copy()
    K2[0] *= w / W
    K2[1] *= h / H
    return out, K2


def scene_distance(ref_T: np.ndarray, others: Sequence[np.ndarray]) -> float:
    """Typical distance from the reference camera to what it looks at, from camera geometry alone.

    Where the optical axes of the reference and a neighbour converge in front of both, their
    closest approach gives a distance; the median over neighbours is used. Cameras that do not
    converge (a robot driving forward) fall back to 20x the median baseline.
    """
    c0, a0 = ref_T[:3, 3], ref_T[:3, 2]
    dists, baselines = [], []
    for T in others:
        c1, a1 = T[:3, 3], T[:3, 2]
        b = float(np.linalg.norm(c1 - c0))
        if b < 1e-9:
            continue
        baselines.append(b)
        w = c0 - c1
        aa, ab, bb, aw, bw = a0 @ a0, a0 @ a1, a1 @ a1, a0 @ w, a1 @ w
        den = aa * bb - ab * ab
        if den < 1e-6:  # parallel axes
            continue
        s = (ab * bw - bb * aw) / den
        t = (aa * bw - ab * aw) / den
        if s > 0 and t > 0:
            dists.append(s)
    if dists:
        return float(np.median(dists))
    if baselines:
        return 20.0 * float(np.median(baselines))
    raise DepthEstimationError("no neighbour with a baseline: depth cannot come from photo-consistency")


def inverse_depth_planes(distance: float, planes: int = PLANES, near: float | None = None,
                         far: float | None = None) -> torch.Tensor:
    """Plane depths (far to near), uniform in inverse depth."""
    near = NEAR_FACTOR * distance if near is None else near
    far = FAR_FACTOR * distance if far is None else far
    if not (0 < near < far and math.isfinite(far)):
        raise DepthEstimationError(f"depth range must satisfy 0 < near < far, got {near}, {far}")
    inv = torch.linspace(1.0 / far, 1.0 / near, planes, dtype=torch.float64)
    return (1.0 / inv).float()


def _gray(x: torch.Tensor) -> torch.Tensor:
    return (0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2])[:, None]


def _box(x: torch.Tensor, k: int) -> torch.Tensor:
    return F.avg_pool2d(x, k, stride=1, padding=k // 2, count_include_pad=False)


def warp_sources(ref_K: np.ndarray, ref_T: np.ndarray, h: int, w: int, sources: list[tuple[torch.Tensor, np.ndarray]],
                 src_T: Sequence[np.ndarray], depths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Every source warped onto every plane of the reference: (S x D x 3 x h x w, S x D x h x w valid)."""
    dirs = camera_directions(torch.from_numpy(ref_K).float()[None], h, w)[0].reshape(3, -1)  # 3 x hw (z = 1)
    D = depths.shape[0]
    warped, valid = [], []
    for (img, K), T in zip(sources, src_T):
        T_src_ref = torch.from_numpy(np.linalg.inv(T) @ ref_T).float()
        R, t = T_src_ref[:3, :3], T_src_ref[:3, 3:]
        pts = (R @ dirs)[None] * depths[:, None, None] + t[None]  # D x 3 x hw
        uvw = torch.from_numpy(K).float()[None] @ pts
        z = uvw[:, 2].clamp_min(1e-6)
        Hs, Ws = img.shape[-2:]
        gx = uvw[:, 0] / z / Ws * 2 - 1
        gy = uvw[:, 1] / z / Hs * 2 - 1
        grid = torch.stack([gx, gy], dim=-1).reshape(D, h, w, 2)
        ok = (pts[:, 2] > 1e-6).reshape(D, h, w) & (gx.abs() <= 1).reshape(D, h, w) & (gy.abs() <= 1).reshape(D, h, w)
        warped.append(F.grid_sample(img[None].expand(D, -1, -1, -1), grid, mode="bilinear",
                                    padding_mode="border", align_corners=False))
        valid.append(ok)
    return torch.stack(warped), torch.stack(valid)


def matching_cost(ref: torch.Tensor, warped: torch.Tensor, valid: torch.Tensor, window: int = WINDOW) -> torch.Tensor:
    """Per source and plane: S x D x h x w cost in [0, ~2] (1 - ZNCC, plus colour difference)."""
    S, D, _, h, w = warped.shape
    g_ref = _gray(ref[None])                    # 1 1 h w
    g_src = _gray(warped.reshape(S * D, 3, h, w))  # SD 1 h w
    mr, ms = _box(g_ref, window), _box(g_src, window)
    vr = (_box(g_ref * g_ref, window) - mr * mr).clamp_min(0)
    vs = (_box(g_src * g_src, window) - ms * ms).clamp_min(0)
    cov = _box(g_ref * g_src, window) - mr * ms
    zncc = cov / torch.sqrt(vr * vs + 1e-5)
    colour = _box((warped.reshape(S * D, 3, h, w) - ref[None]).abs().mean(1, keepdim=True), 3)
    cost = ((1 - zncc) * 0.5 + COLOUR_WEIGHT * colour * 4).reshape(S, D, h, w)
    return torch.where(valid, cost, torch.full_like(cost, 2.0))


def aggregate(cost: torch.Tensor) -> torch.Tensor:
    """Best half of the sources per plane and pixel (a source that is occluded is ignored)."""
    S = cost.shape[0]
    keep = max(1, (S + 1) // 2)
    return cost.topk(keep, dim=0, largest=False).values.mean(0) if S > 1 else cost[0]


def winner(volume: torch.Tensor, depths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Sub-plane winner of a D x h x w cost volume -> (depth h x w, confidence h x w)."""
    D = volume.shape[0]
    best = volume.argmin(0)
    i = best.clamp(1, D - 2)
    c0 = volume.gather(0, (i - 1)[None])[0]
    c1 = volume.gather(0, i[None])[0]
    c2 = volume.gather(0, (i + 1)[None])[0]
    den = (c0 - 2 * c1 + c2)
    off = torch.where(den > 1e-6, 0.5 * (c0 - c2) / den.clamp_min(1e-6), torch.zeros_like(den)).clamp(-0.5, 0.5)
    inv = 1.0 / depths.double()
    pos = (i.double() + off.double())
    step = (inv[-1] - inv[0]) / (D - 1)
    d = (1.0 / (inv[0] + pos * step)).float()
    conf = volume.mean(0) - volume.gather(0, best[None])[0]
    return d, conf


def _coarse_range(ref: torch.Tensor, K: np.ndarray, ref_T: np.ndarray, src: list[tuple[torch.Tensor, np.ndarray]],
                  src_T: list[np.ndarray], near: float | None, far: float | None) -> tuple[float, float]:
    """The depth range to sweep, found by a cheap wide sweep first (a quarter of the pixels, planes
    from half the median baseline to a thousand baselines): confident depths' 2nd-98th
    percentiles, widened by COARSE_MARGIN. Falls back to the cameras' convergence distance."""
    base = float(np.median([np.linalg.norm(T[:3, 3] - ref_T[:3, 3]) for T in src_T]))
    if base <= 0:
        raise DepthEstimationError("no neighbour with a baseline: depth cannot come from photo-consistency")
    small, sK = _resized(ref, K, max(16, max(ref.shape[-2:]) // 2))
    h, w = small.shape[-2:]
    depths = inverse_depth_planes(1.0, COARSE_PLANES, near or 0.5 * base, far or 1000.0 * base)
    warped, valid = warp_sources(sK, ref_T, h, w, src, src_T, depths)
    d, conf = winner(aggregate(matching_cost(small, warped, valid)), depths)
    good = d[conf >= MIN_CONFIDENCE]
    if good.numel() < 0.02 * d.numel():
        dist = scene_distance(ref_T, src_T)
        return near or NEAR_FACTOR * dist, far or FAR_FACTOR * dist
    lo, hi = float(torch.quantile(good, 0.02)), float(torch.quantile(good, 0.98))
    return near or lo / COARSE_MARGIN, far or max(hi * COARSE_MARGIN, lo / COARSE_MARGIN * 1.5)


@torch.no_grad()
def estimate_depth(ref: PosedImage, sources: Sequence[PosedImage], *, out_size: tuple[int, int] | None = None,
                   planes: int = PLANES, work_side: int = WORK_SIDE, near: float | None = None,
                   far: float | None = None, min_confidence: float = MIN_CONFIDENCE,
                   semi_global: bool = SEMI_GLOBAL) -> tuple[np.ndarray, np.ndarray]:
    """Depth of ``ref`` from photo-consistency with ``sources`` -> (depth HxW float32, NaN where unsure;
    confidence HxW float32). ``out_size`` (H, W) defaults to the reference image's size."""
    if not sources:
        raise DepthEstimationError("multi-view stereo needs at least one source view")
    ref_img = _tensor(ref.rgb)
    H, W = ref_img.shape[-2:] if out_size is None else out_size
    r, rK = _resized(ref_img, ref.K, work_side)
    h, w = r.shape[-2:]
    src = [_resized(_tensor(s.rgb), s.K, max(work_side, int(work_side * 1.5))) for s in sources]
    if near is None or far is None:
        near, far = _coarse_range(r, rK, ref.T_world_camera, src, [s.T_world_camera for s in sources], near, far)
    depths = inverse_depth_planes(1.0, planes, near, far)
    warped, valid = warp_sources(rK, ref.T_world_camera, h, w, src, [s.T_world_camera for s in sources], depths)
    volume = aggregate(matching_cost(r, warped, valid))
    if semi_global:
        volume = aggregate_paths(volume, _gray(r[None])[0, 0])
    d, conf = winner(volume, depths)
    d = torch.where(conf >= min_confidence, d, torch.full_like(d, float("nan")))
    if (h, w) != (H, W):
        d = F.interpolate(d[None, None], size=(H, W), mode="nearest")[0, 0]
        conf = F.interpolate(conf[None, None], size=(H, W), mode="bilinear", align_corners=False)[0, 0]
    return d.numpy().astype(np.float32), conf.numpy().astype(np.float32)
