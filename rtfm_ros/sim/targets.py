"""Target views around a trajectory: where a renderer is asked to look, by kind.

A trajectory's first ``n_context`` poses are the context (what a world was seeded with); the
targets, TARGETS_PER_KIND of each kind:

- ``interpolation``: between two context poses three frames apart (alpha 0.3-0.7), nudged by
  up to 0.1 m sideways and 8 degrees of yaw: inside the region the context saw.
- ``extrapolation``: free points 1-3 m away from every context position, random heading and
  pitch: views of places the context saw from elsewhere or not at all.
- ``revisit``: poses after the context (a loop coming back over its first pass), nudged by
  up to 0.05 m and 3 degrees: places seen long ago.
- ``half_unseen`` (only when the caller can measure it, ``unseen_share``): extrapolation views
  chosen so that about half of each view was never seen (HALF_UNSEEN_RANGE, else the candidate
  closest to half): the regime where a renderer must imagine, not recall.

The held-out suite (rtfm_ros.evaluate.suite) and the learned renderer's training examples
(rtfm_ros.learn.renderer_data) both ask for views this way.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from rtfm_ros.geometry import interpolate
from rtfm_ros.sim.trajectories import camera_poses
from rtfm_ros.sim.worlds import World

CONTEXT_FRAMES = 48   # a loop's context poses (the suite's and the training examples')
TAIL_FRAMES = 24      # poses after them, where revisits come from
TARGETS_PER_KIND = 4
TARGET_KINDS = ("interpolation", "extrapolation", "revisit", "half_unseen")
UNSEEN_KINDS = ("extrapolation", "half_unseen")  # kinds whose never-seen pixels are scored
HALF_UNSEEN_RANGE = (0.4, 0.6)  # share of a half_unseen view no context saw
HALF_UNSEEN_TRIES = 24          # candidate poses measured per half_unseen target


def _yaw_about_z(T: np.ndarray, angle: float) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    R = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
    out = T.copy()
    out[:3, :3] = R @ T[:3, :3]
    return out


def _free_view(world: World, positions: np.ndarray, rng: np.random.Generator, near: float = 1.0) -> np.ndarray:
    """A pose at a free point ``near``-3 m from every context position, random heading and pitch."""
    for attempt in range(400):
        p = world.sample_free_point(rng, 0.35)
        d = float(np.min(np.linalg.norm(positions - p, axis=1)))
        if near <= d <= 3.0 or (attempt > 200 and d >= 0.6 * near):
            break
    top = min(1.5, world.ceiling - 0.3)
    T: np.ndarray = camera_poses(p[None], np.array([rng.uniform(0.3, top)]),
                                 np.array([rng.uniform(-math.pi, math.pi)]),
                                 np.array([math.radians(rng.uniform(-10, 10))]), np.zeros(1))[0]
    return T


def view_targets(world: World, poses: np.ndarray, rng: np.random.Generator, n_context: int,
                 unseen_share: Callable[[np.ndarray], float] | None = None) -> tuple[list[np.ndarray], list[str]]:
    """TARGETS_PER_KIND target poses of each kind around a trajectory whose first ``n_context``
    poses are the context (see the module docstring), and their kinds; ``half_unseen`` targets
    only with ``unseen_share`` (a pose -> the share of its view no context saw)."""
    ctx, tail = poses[:n_context], poses[n_context:]
    out: list[np.ndarray] = []
    kinds: list[str] = []
    for _ in range(TARGETS_PER_KIND):  # interpolation
        for _try in range(100):
            i = int(rng.integers(0, n_context - 3))
            T = interpolate(ctx[i], ctx[i + 3], float(rng.uniform(0.3, 0.7)))
            T = _yaw_about_z(T, math.radians(rng.uniform(-8, 8)))
            T[:2, 3] += rng.uniform(-0.1, 0.1, 2)
            if world.is_free(T[0, 3], T[1, 3], 0.25):
                break
        out.append(T)
        kinds.append("interpolation")
    positions = ctx[:, :2, 3]
    for _ in range(TARGETS_PER_KIND):  # extrapolation
        out.append(_free_view(world, positions, rng))
        kinds.append("extrapolation")
    picks = rng.choice(len(tail), size=min(TARGETS_PER_KIND, len(tail)), replace=False)
    for j in sorted(int(v) for v in picks):  # revisit
        T = _yaw_about_z(tail[j], math.radians(rng.uniform(-3, 3)))
        nudged = T[:2, 3] + rng.uniform(-0.05, 0.05, 2)
        if world.is_free(nudged[0], nudged[1], 0.25):
            T[:2, 3] = nudged
        out.append(T)
        kinds.append("revisit")
    if unseen_share is None:
        return out, kinds
    lo, hi = HALF_UNSEEN_RANGE
    for _ in range(TARGETS_PER_KIND):  # half_unseen
        best, best_gap = None, math.inf
        for _try in range(HALF_UNSEEN_TRIES):
            T = _free_view(world, positions, rng, near=0.5)
            share = unseen_share(T)
            if lo <= share <= hi:
                best = T
                break
            if abs(share - 0.5) < best_gap:
                best, best_gap = T, abs(share - 0.5)
        assert best is not None
        out.append(best)
        kinds.append("half_unseen")
    return out, kinds
