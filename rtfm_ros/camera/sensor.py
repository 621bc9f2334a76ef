"""What turns a render into a sensor's output: exposure, gain, noise, trusted depth, point clouds.

ROS-free (numpy), shared by the node and the benchmarks.

Depth that a costmap can trust (``depth_source: checked``): the rendered depth at a pixel is
published only where a real frame (seeded or observed, never a generated view) whose depth is
measured (given with the frame: "sensor") or triangulated from its posed real neighbours
("stereo"), never the learned monocular prior, saw the same surface: the pixel's 3D point,
projected into that frame, lands within ``tolerance`` (relative) of the frame's depth there. A point that some
real frame saw through (its depth there is farther than the point by more than the tolerance)
is a phantom and is dropped even when another frame agrees. Everything else is NaN, as a depth
camera reports "no return" (REP 118).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from rtfm_ros.geometry import PinholeCamera

if TYPE_CHECKING:  # pragma: no cover
    from rtfm_ros.world import WorldModel

REAL_SOURCES = ("seed", "observed")
TRUSTED_DEPTH = ("sensor", "stereo")  # WorldModel.prepare(...).source values that count as known
CHECK_FRAMES = 4      # real frames consulted per view
CHECK_CANDIDATES = 16  # context candidates looked at to find them


def expose(rgb: np.ndarray, exposure: float = 1.0, gain_db: float = 0.0, noise_stddev: float = 0.0,
           rng: np.random.Generator | None = None) -> np.ndarray:
    """A sensor's response: light x exposure (linear), read noise (stddev, fraction of full scale), x gain.

    The render is taken as the scene at exposure 1 and gain 0 dB; noise is added before the
    gain, so gain amplifies it as on a real sensor. Identity (no copy) at the defaults.
    """
    if exposure == 1.0 and gain_db == 0.0 and noise_stddev == 0.0:
        return rgb
    linear = (rgb.astype(np.float32) / 255.0) ** 2.2 * exposure
    if noise_stddev > 0:
        rng = rng if rng is not None else np.random.default_rng()
        linear = linear + rng.normal(0.0, noise_stddev, size=linear.shape).astype(np.float32)
    linear = np.clip(linear * 10.0 ** (gain_db / 20.0), 0.0, 1.0)
    out: np.ndarray = np.round(255.0 * linear ** (1 / 2.2)).astype(np.uint8)
    return out


def points_camera(depth: np.ndarray, rays: np.ndarray) -> np.ndarray:
    """HxWx3 points in the optical frame from z-depth and per-pixel rays (x/z, y/z); NaN stays NaN."""
    z = depth.astype(np.float32)
    return np.stack([rays[..., 0] * z, rays[..., 1] * z, z], axis=-1)


def checked_depth(depth: np.ndarray, rays: np.ndarray, T_world_camera: np.ndarray, camera: PinholeCamera,
                  world: WorldModel, tolerance: float = 0.1) -> tuple[np.ndarray, int]:
    """depth kept where real frames agree (NaN elsewhere) and how many real frames were consulted."""
    out = np.full(depth.shape, np.nan, dtype=np.float32)
    frames = real_frames_near(world, T_world_camera, camera)
    if not frames:
        return out, 0
    pts = points_camera(depth, rays).reshape(-1, 3).astype(np.float64)
    finite = np.isfinite(pts).all(axis=1) & (pts[:, 2] > 0)
    world = pts @ T_world_camera[:3, :3].T + T_world_camera[:3, 3]
    support = np.zeros(len(pts), dtype=bool)
    seen_through = np.zeros(len(pts), dtype=bool)
    for T_j, cam_j, depth_j in frames:
        local = (world - T_j[:3, 3]) @ T_j[:3, :3]  # inverse rigid transform
        zj = local[:, 2]
        with np.errstate(divide="ignore", invalid="ignore"):
            uj = np.floor(cam_j.fx * local[:, 0] / zj + cam_j.cx)
            vj = np.floor(cam_j.fy * local[:, 1] / zj + cam_j.cy)
        h, w = depth_j.shape
        inside = finite & (zj > 1e-6) & (uj >= 0) & (uj < w) & (vj >= 0) & (vj < h)
        idx = np.flatnonzero(inside)
        seen = depth_j[vj[idx].astype(np.intp), uj[idx].astype(np.intp)].astype(np.float64)
        ok = np.isfinite(seen) & (seen > 0)
        idx, seen, z = idx[ok], seen[ok], zj[idx[ok]]
        support[idx[np.abs(seen - z) <= tolerance * z]] = True
        seen_through[idx[seen > z * (1.0 + tolerance)]] = True
    keep = (support & ~seen_through).reshape(depth.shape)
    out[keep] = depth[keep]
    return out, len(frames)


def frame_depth(world: WorldModel, frame_id: int) -> np.ndarray | None:
    """A real frame's depth if it is measured or triangulated (None for the prior or no depth)."""
    prep = world.prepare(frame_id)
    if prep.source not in TRUSTED_DEPTH:
        return None
    depth: np.ndarray = prep.depth[0].cpu().numpy()
    return depth


def real_frames_near(world: WorldModel, T_world_camera: np.ndarray, camera: PinholeCamera,
                     limit: int = CHECK_FRAMES) -> list[tuple[np.ndarray, PinholeCamera, np.ndarray]]:
    """(pose, camera, depth) of up to limit real frames with known depth that best cover the view."""
    memory = world.memory
    if len(memory) == 0:
        return []
    ids = memory.select_context(T_world_camera, camera, CHECK_CANDIDATES, generated_prior=1e-3)
    found = []
    for i in ids:
        if memory.source(i) not in REAL_SOURCES:
            continue
        depth = frame_depth(world, i)
        if depth is None:
            continue
        cam = memory.camera(i)
        if depth.shape != (cam.height, cam.width):
            cam = cam.scaled(depth.shape[1], depth.shape[0])
        found.append((memory.pose(i), cam, depth.astype(np.float32, copy=False)))
        if len(found) >= limit:
            break
    return found


def phantom_near_share(depth: np.ndarray, truth: np.ndarray, margin: float = 0.2) -> tuple[float, float]:
    """(share of published pixels >= margin too near vs ground truth, share of pixels published)."""
    pub = np.isfinite(depth) & np.isfinite(truth) & (truth > 0)
    n = int(pub.sum())
    near = int((depth[pub] < (1.0 - margin) * truth[pub]).sum()) if n else 0
    return (near / n if n else 0.0), n / depth.size

