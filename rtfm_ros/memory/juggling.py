"""Context juggling: which stored frames should the model see when rendering a new view.

The renderer can only attend to a few frames, so they should (1) actually see what the target
camera sees and (2) see *different* parts of it. ``select_context`` scores frustum overlap by
Monte-Carlo: points spread through the target frustum (a fixed low-discrepancy pattern, so the
result is deterministic) are projected into every candidate camera. A point counts for a
candidate when it lies in front of it, inside its image and within range, weighted by how
closely the two viewing rays agree (a surface seen from the other side does not help) and by
how similar the viewing distances are (resolution). Frames are then picked greedily by
marginal coverage gain, so the K frames cover the target view instead of repeating one spot.

Only poses and intrinsics are touched (never pixels), and only ``candidates`` frames near the
target are scored, so the cost does not grow with the size of the world. The training
pipeline calls the same function, which keeps train-time and run-time context identical.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import Protocol

import numpy as np
from scipy.stats import qmc

from rtfm_ros.geometry import GeometryError, PinholeCamera, validate_transform


class PosedFrames(Protocol):
    """What should_remember reads of a memory (FrameMemory has it): poses and cameras by id, and a radius query."""

    def within_radius(self, position: np.ndarray, radius: float) -> list[int]: ...

    def pose(self, frame_id: int) -> np.ndarray: ...

    def camera(self, frame_id: int) -> PinholeCamera: ...


SAMPLES = 128            # Monte-Carlo points per target frustum
NEAR = 0.3               # nearest sampled depth (metres), clipped to depth_hint / 2
CANDIDATE_NEAR = 0.05    # points closer than this to a candidate camera are not "seen"
MIN_GAIN = 1e-9
CamerasLike = PinholeCamera | Sequence[PinholeCamera] | np.ndarray


class ContextError(ValueError):
    """Inputs that context selection cannot use."""


@functools.lru_cache(maxsize=8)
def sample_pattern(n: int = SAMPLES) -> np.ndarray:
    """Fixed (n, 3) pattern in [0, 1)^3: (u, v, depth) fractions from an unscrambled Halton sequence."""
    sampler = qmc.Halton(d=3, scramble=False)
    sampler.fast_forward(1)  # skip the all-zero first point
    out: np.ndarray = sampler.random(n)
    out.setflags(write=False)
    return out


def intrinsics_array(cameras: CamerasLike, n: int, rows: np.ndarray | None = None) -> np.ndarray:
    """(len(rows), 6) float64 (width, height, fx, fy, cx, cy) of the cameras of ``rows`` (default: all n).

    ``cameras`` is one PinholeCamera, a sequence of n of them, or an (n, 6) array.
    """
    rows = np.arange(n) if rows is None else rows
    if isinstance(cameras, PinholeCamera):
        row = np.array([cameras.width, cameras.height, cameras.fx, cameras.fy, cameras.cx, cameras.cy])
        return np.broadcast_to(row, (len(rows), 6))
    if isinstance(cameras, np.ndarray):
        arr = np.asarray(cameras, dtype=np.float64)
        if arr.shape != (n, 6):
            raise ContextError(f"intrinsics array must have shape ({n}, 6), got {arr.shape}")
        return arr[rows]
    if len(cameras) != n:
        raise ContextError(f"{len(cameras)} cameras given for {n} poses")
    out = np.empty((len(rows), 6))
    for j, r in enumerate(rows):
        c = cameras[int(r)]
        if not isinstance(c, PinholeCamera):
            raise ContextError(f"cameras[{int(r)}] is a {type(c).__name__}, not a PinholeCamera")
        out[j] = (c.width, c.height, c.fx, c.fy, c.cx, c.cy)
    return out


@functools.lru_cache(maxsize=32)
def _local_frustum_points(camera: PinholeCamera, depth_hint: float, n: int) -> np.ndarray:
    local = _local_points(camera, depth_hint, sample_pattern(n))
    local.setflags(write=False)
    return local


def _local_points(camera: PinholeCamera, depth_hint: float, pattern: np.ndarray) -> np.ndarray:
    near = min(NEAR, 0.5 * depth_hint)
    far = 2.0 * depth_hint
    u = pattern[:, 0] * camera.width
    v = pattern[:, 1] * camera.height
    z = near + pattern[:, 2] * (far - near)
    return np.stack([(u - camera.cx) / camera.fx * z, (v - camera.cy) / camera.fy * z, z], axis=1)


def frustum_points(T_world_camera: np.ndarray, camera: PinholeCamera, depth_hint: float,
                   n: int = SAMPLES, rng: np.random.Generator | None = None) -> np.ndarray:
    """(n, 3) world points spread through the target frustum, depths in [near, 2 * depth_hint]."""
    if rng is None:
        local = _local_frustum_points(camera, float(depth_hint), int(n))
    else:
        local = _local_points(camera, depth_hint, rng.random((n, 3)))
    world: np.ndarray = local @ T_world_camera[:3, :3].T + T_world_camera[:3, 3]
    return world


def nearest_candidates(positions: np.ndarray, T_world_camera: np.ndarray, depth_hint: float, k: int) -> np.ndarray:
    """Sorted indices of up to k positions: k/2 nearest the camera, k/2 nearest the frustum centre.

    Brute force over all positions: fine for training batches; FrameMemory uses its spatial
    index instead (see ``FrameMemory.context_candidates``).
    """
    n = positions.shape[0]
    if n <= k:
        return np.arange(n)
    half = max(1, k // 2)
    eye = T_world_camera[:3, 3]
    centre = eye + T_world_camera[:3, 2] * depth_hint
    picked = []
    for q in (eye, centre):
        d = np.einsum("ij,ij->i", positions - q, positions - q)
        picked.append(np.argpartition(d, half - 1)[:half])
    return np.unique(np.concatenate(picked))


def coverage_matrix(points: np.ndarray, eye: np.ndarray, poses: np.ndarray, intr: np.ndarray,
                    max_range: float) -> np.ndarray:
    """(C, P) quality in [0, 1] with which each candidate camera sees each target sample point.

    Zero when the point is behind the candidate, outside its image or beyond ``max_range``;
    otherwise the agreement of the two viewing rays times a distance-ratio term.
    """
    c = poses.shape[0]
    R = poses[:, :3, :3].astype(np.float32)
    t = poses[:, :3, 3].astype(np.float32)
    pts = points.astype(np.float32)
    fx, fy, cx, cy = (intr[:, k].astype(np.float32) for k in (2, 3, 4, 5))
    # One GEMM for all candidates, laid out (P, 3, C) so each axis slice is contiguous:
    # local = R^T (X - t) = X R - t R for row vectors.
    xr = (pts @ R.transpose(1, 2, 0).reshape(3, 3 * c)).reshape(-1, 3, c)
    tr = np.einsum("ci,cij->jc", t, R)                                           # 3 C
    x = xr[:, 0] - tr[0]
    y = xr[:, 1] - tr[1]
    z = xr[:, 2] - tr[2]                                                         # P C
    ok = (z > CANDIDATE_NEAR) & (z <= max_range)
    inv_z = 1.0 / np.maximum(z, np.float32(CANDIDATE_NEAR))
    u = x * inv_z
    v = y * inv_z
    # inside the image: 0 <= fx * u + cx < width, i.e. u in [-cx/fx, (width - cx)/fx)
    ok &= (u >= -cx / fx) & (u < (intr[:, 0].astype(np.float32) - cx) / fx)
    ok &= (v >= -cy / fy) & (v < (intr[:, 1].astype(np.float32) - cy) / fy)
    ray_t = (points - eye).astype(np.float32)
    dist_t = np.sqrt(np.einsum("pi,pi->p", ray_t, ray_t))[:, None]              # P 1
    dir_t = ray_t / dist_t
    dist_c = np.sqrt(x * x + y * y + z * z)                                      # rotation keeps length
    # (X - t_c) . d = X . d - t_c . d
    along = np.einsum("pi,pi->p", pts, dir_t)[:, None] - dir_t @ t.T
    agree = np.clip(along / np.maximum(dist_c, 1e-9), 0.0, 1.0)
    ratio = np.minimum(dist_c, dist_t) / np.maximum(dist_c, dist_t)
    quality = agree * (0.5 + 0.5 * ratio) * ok
    out: np.ndarray = np.ascontiguousarray(quality.T, dtype=np.float64)
    return out


def pose_similarity(T_target: np.ndarray, poses: np.ndarray, depth_hint: float) -> np.ndarray:
    """(C,) in (0, 1]: 1 only at the target pose; falls with distance and viewing-direction change."""
    dt = np.linalg.norm(poses[:, :3, 3] - T_target[:3, 3], axis=1)
    cos_fwd = poses[:, :3, 2] @ T_target[:3, 2]
    cos_rot = np.clip((np.einsum("cij,ij->c", poses[:, :3, :3], T_target[:3, :3]) - 1.0) / 2.0, -1.0, 1.0)
    sim: np.ndarray = (0.5 + 0.5 * cos_fwd) * (0.75 + 0.25 * cos_rot) / (1.0 + dt / depth_hint)
    return sim


def _det3(r: list[list[float]]) -> float:
    """A 3x3 determinant as a triple product (np.linalg.det costs ~10x more for one small matrix)."""
    return (r[0][0] * (r[1][1] * r[2][2] - r[1][2] * r[2][1]) - r[0][1] * (r[1][0] * r[2][2] - r[1][2] * r[2][0])
            + r[0][2] * (r[1][0] * r[2][1] - r[1][1] * r[2][0]))


def _checked_pose(T: np.ndarray) -> np.ndarray:
    """validate_transform with a cheap fast path (this runs once per rendered frame)."""
    T = np.asarray(T, dtype=np.float64)
    if T.shape == (4, 4) and np.isfinite(T).all():
        R = T[:3, :3]
        if (np.abs(R.T @ R - np.eye(3)).max() < 1e-6 and _det3(R.tolist()) > 0.0
                and T[3, 0] == 0.0 and T[3, 1] == 0.0 and T[3, 2] == 0.0 and T[3, 3] == 1.0):
            return T
    return validate_transform(T, "target pose")


def select_context(target_T: np.ndarray, target_camera: PinholeCamera, poses: np.ndarray,
                   cameras: CamerasLike, budget: int, *, stamps: np.ndarray | Sequence[float] | None = None,
                   depth_hint: float = 3.0, candidates: int = 64, rng: np.random.Generator | None = None,
                   candidate_indices: np.ndarray | Sequence[int] | None = None,
                   recency_weight: float = 0.25, samples: int = SAMPLES,
                   priors: np.ndarray | Sequence[float] | None = None) -> list[int]:
    """Indices into ``poses`` of up to ``budget`` context frames for rendering ``target_T``, best first.

    ``cameras``: one PinholeCamera for all, one per pose, or an (N, 6) array of
    (width, height, fx, fy, cx, cy). ``stamps`` (seconds) favour newer frames: the oldest
    candidate's pose penalty grows by ``recency_weight`` (a frame at the target pose still
    wins). Only ``candidates`` poses are scored, half nearest the camera and half nearest the
    centre of its frustum, unless ``candidate_indices`` are given (e.g. from a spatial index).
    ``priors`` (N values in (0, 1]) scale each frame's score, e.g. to trust generated views less
    than real ones; a frame exactly at the target pose is exempt, so revisits still find it.
    ``rng`` replaces the fixed sample pattern by random samples (training augmentation);
    without it the result is deterministic.

    Frames are chosen greedily by marginal coverage of the target view. When nothing new can be
    covered, the rest of the budget is filled by standalone overlap, then by pose similarity;
    frames that see nothing of the target view therefore only ever come after all that do.
    """
    T = _checked_pose(target_T)
    if not isinstance(target_camera, PinholeCamera):
        raise ContextError(f"target_camera must be a PinholeCamera, got {type(target_camera).__name__}")
    if int(budget) != budget or budget < 0:
        raise ContextError(f"budget must be a non-negative integer, got {budget}")
    if not (math.isfinite(depth_hint) and depth_hint > 0):
        raise ContextError(f"depth_hint must be a positive number of metres, got {depth_hint}")
    if candidates < 1 or samples < 1:
        raise ContextError(f"candidates and samples must be >= 1, got {candidates} and {samples}")
    poses = np.asarray(poses, dtype=np.float64)
    if poses.ndim != 3 or poses.shape[1:] != (4, 4):
        raise ContextError(f"poses must be an (N, 4, 4) array, got shape {poses.shape}")
    n = poses.shape[0]
    intrinsics_array(cameras, n, np.empty(0, dtype=np.int64))  # refuse a wrong count early
    if budget == 0 or n == 0:
        return []

    if candidate_indices is None:
        idx = nearest_candidates(poses[:, :3, 3], T, depth_hint, candidates)
    else:
        idx = np.unique(np.asarray(candidate_indices, dtype=np.int64))
        if idx.size and (idx[0] < 0 or idx[-1] >= n):
            raise ContextError(f"candidate indices must lie in 0..{n - 1}")
        if idx.size == 0:
            return []
    cand_poses = poses[idx]
    if not np.all(np.isfinite(cand_poses)):
        raise GeometryError("context poses contain non-finite values")
    intr = intrinsics_array(cameras, n, idx)

    points = frustum_points(T, target_camera, depth_hint, samples, rng)
    quality = coverage_matrix(points, T[:3, 3], cand_poses, intr, 2.0 * depth_hint)
    # Pose factor in (0.8, 1]: exactly 1 only at the target pose, so a frame there always
    # wins. Age (0 = newest candidate, 1 = oldest) scales the pose penalty up, so recency can
    # reorder frames at a distance but never outrank the exact view (a 1e-6 term still
    # prefers the newer of two frames at the very same pose).
    age = np.zeros(len(idx))
    if stamps is not None:
        st = np.asarray(stamps, dtype=np.float64).reshape(-1)
        if st.shape[0] != n:
            raise ContextError(f"{st.shape[0]} stamps given for {n} poses")
        st = st[idx]
        span = float(st.max() - st.min())
        age = (st.max() - st) / span if span > 0 else age
    similarity = pose_similarity(T, cand_poses, depth_hint)
    penalty = 0.2 * (1.0 - similarity)
    factor = 1.0 - penalty * (1.0 + recency_weight * age) - 1e-6 * age
    if priors is not None:
        pr = np.asarray(priors, dtype=np.float64).reshape(-1)
        if pr.shape[0] != n or not np.all((pr > 0) & (pr <= 1)):
            raise ContextError(f"priors must be {n} values in (0, 1]")
        factor = factor * np.where(similarity >= 1.0 - 1e-9, 1.0, pr[idx])

    chosen: list[int] = []
    available = np.ones(len(idx), dtype=bool)
    covered = np.zeros(points.shape[0])
    for _ in range(min(budget, len(idx))):
        gain = np.maximum(quality - covered, 0.0).sum(axis=1) * factor
        gain[~available] = -1.0
        best = int(np.argmax(gain))  # first maximum: ties go to the lower index
        if gain[best] <= MIN_GAIN:
            break
        chosen.append(best)
        available[best] = False
        covered = np.maximum(covered, quality[best])

    if len(chosen) < budget:
        rest = np.flatnonzero(available)
        standalone = quality[rest].sum(axis=1) * factor[rest]
        order = np.lexsort((rest, -factor[rest], -standalone))
        chosen.extend(int(rest[i]) for i in order[: budget - len(chosen)])
    return [int(idx[i]) for i in chosen]


def should_remember(T_world_camera: np.ndarray, camera: PinholeCamera, memory: PosedFrames, *,
                    min_translation: float = 0.05, min_rotation: float = 5.0) -> bool:
    """False when a stored frame already shows nearly this view, so memory grows with space, not time.

    A stored frame counts as the same view when it is within ``min_translation`` metres and
    ``min_rotation`` degrees of the pose and its camera sees at least as wide a field of view
    at no less than 90 % of the resolution (a sharper or wider new view is worth keeping).
    """
    T = validate_transform(T_world_camera, "pose")
    for i in memory.within_radius(T[:3, 3], min_translation):
        R = memory.pose(i)[:3, :3].T @ T[:3, :3]
        angle = math.degrees(math.acos(max(-1.0, min(1.0, (float(np.trace(R)) - 1.0) / 2.0))))
        if angle >= min_rotation:
            continue
        stored = memory.camera(i)
        fov_s, fov_n = stored.fov_deg, camera.fov_deg
        if (fov_s[0] >= 0.98 * fov_n[0] and fov_s[1] >= 0.98 * fov_n[1]
                and stored.width >= 0.9 * camera.width and stored.height >= 0.9 * camera.height):
            return False
    return True
