"""What a rendered view's depth is taken as: the one policy for publishing and storing it.

A rendered view's depth is the renderer's guess. Fed back into the memory as if measured, a
wrong guess is seen again from every later pose that uses the view (phantom obstacles that grow).
``StoredDepth`` names the three choices, and every caller (the camera node, bag replay, the
browser view, the Gym envs) goes through :func:`view_depth` for both what it publishes and what
a remembered view keeps:

- ``checked``: the rendered depth only where a real frame (seeded or observed, never a generated
  view) whose depth is measured (given with the frame: "sensor") or triangulated from posed real
  neighbours ("stereo"), never the learned monocular prior, saw the same surface: the pixel's 3D
  point, projected into that frame, lands within ``tolerance`` (relative) of the frame's depth
  there. A point that some real frame saw through (its depth there is farther than the point by
  more than the tolerance) is a phantom and is dropped even when another frame agrees.
  Everything else is NaN, as a depth camera reports "no return" (REP 118).
- ``rendered``: the depth as rendered (NaN where no frame saw the place).
- ``none``: no depth (a remembered view keeps its image only; its depth is estimated like a photo's).
"""

from __future__ import annotations

from typing import Literal, Protocol

import numpy as np

from rtfm_ros.geometry import PinholeCamera
from rtfm_ros.memory import FrameMemory
from rtfm_ros.render.config import STORED_DEPTHS
from rtfm_ros.render.prepare import PreparedFrame

StoredDepth = Literal["checked", "rendered", "none"]  # as STORED_DEPTHS
REAL_SOURCES = ("seed", "observed")
TRUSTED_DEPTH = ("sensor", "stereo")  # PreparedFrame.source values that count as known
CHECK_FRAMES = 4      # real frames consulted per view
CHECK_CANDIDATES = 16  # context candidates looked at to find them


class PreparedWorld(Protocol):
    """What the check reads: a world's frames and their prepared depth."""

    @property
    def memory(self) -> FrameMemory: ...

    def prepare(self, frame_id: int) -> PreparedFrame: ...


def view_depth(policy: str, depth: np.ndarray, T_world_camera: np.ndarray, camera: PinholeCamera,
               world: PreparedWorld, tolerance: float) -> np.ndarray | None:
    """A rendered view's depth as ``policy`` (a StoredDepth) takes it."""
    if policy not in STORED_DEPTHS:
        raise ValueError(f"depth policy must be one of {', '.join(STORED_DEPTHS)}, got {policy!r}")
    if policy == "none":
        return None
    depth = np.asarray(depth, dtype=np.float32)
    if policy == "rendered":
        return depth
    return checked_depth(depth, T_world_camera, camera, world, tolerance)[0]


def pinhole_rays(camera: PinholeCamera) -> np.ndarray:
    """HxWx2 normalised rays (x/z, y/z) of an ideal camera's pixel centres."""
    u, v = np.meshgrid(np.arange(camera.width) + 0.5, np.arange(camera.height) + 0.5)
    return np.stack([(u - camera.cx) / camera.fx, (v - camera.cy) / camera.fy], -1).astype(np.float32)


def points_camera(depth: np.ndarray, rays: np.ndarray) -> np.ndarray:
    """HxWx3 points in the optical frame from z-depth and per-pixel rays (x/z, y/z); NaN stays NaN."""
    z = depth.astype(np.float32)
    return np.stack([rays[..., 0] * z, rays[..., 1] * z, z], axis=-1)


def checked_depth(depth: np.ndarray, T_world_camera: np.ndarray, camera: PinholeCamera,
                  world: PreparedWorld, tolerance: float = 0.1) -> tuple[np.ndarray, int]:
    """depth kept where real frames agree (NaN elsewhere) and how many real frames were consulted."""
    out = np.full(depth.shape, np.nan, dtype=np.float32)
    frames = real_frames_near(world, T_world_camera, camera)
    if not frames:
        return out, 0
    pts = points_camera(depth, pinhole_rays(camera)).reshape(-1, 3).astype(np.float64)
    finite = np.isfinite(pts).all(axis=1) & (pts[:, 2] > 0)
    points = pts @ T_world_camera[:3, :3].T + T_world_camera[:3, 3]
    support = np.zeros(len(pts), dtype=bool)
    seen_through = np.zeros(len(pts), dtype=bool)
    for T_j, cam_j, depth_j in frames:
        local = (points - T_j[:3, 3]) @ T_j[:3, :3]  # inverse rigid transform
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


def frame_depth(world: PreparedWorld, frame_id: int) -> np.ndarray | None:
    """A real frame's depth if it is measured or triangulated (None for the prior or no depth)."""
    prep = world.prepare(frame_id)
    if prep.source not in TRUSTED_DEPTH:
        return None
    depth: np.ndarray = prep.depth[0].cpu().numpy()
    return depth


def real_frames_near(world: PreparedWorld, T_world_camera: np.ndarray, camera: PinholeCamera,
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
