"""Target views around a trajectory: where a renderer is asked to look, by kind.

A trajectory's first ``n_context`` poses are the context (what a world was seeded with); the
targets, TARGETS_PER_KIND of each kind:

- ``interpolation``: between two context poses three frames apart (alpha 0.3-0.7), nudged by
  up to 0.1 m sideways and 8 degrees of yaw: inside the region the context saw.
- ``extrapolation``: free points 1-3 m away from every context position, random heading and
  pitch: views of places the context saw from elsewhere or not at all.
- ``revisit``: poses after the context (a loop coming back over its first pass), nudged by
  up to 0.05 m and 3 degrees: places seen long ago.

The held-out suite (rtfm_ros.evaluate.suite) and the learned renderer's training examples
(rtfm_ros.learn.renderer_data) both ask for views this way.
"""

from __future__ import annotations

import math

import numpy as np

from rtfm_ros.geometry import interpolate
from rtfm_ros.sim.trajectories import camera_poses
from rtfm_ros.sim.worlds import World

CONTEXT_FRAMES = 48   # a loop's context poses (the suite's and the training examples')
TAIL_FRAMES = 24      # poses after them, where revisits come from
TARGETS_PER_KIND = 4
TARGET_KINDS = ("interpolation", "extrapolation", "revisit")


def _yaw_about_z(T: np.ndarray, angle: float) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    R = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
    out = T.copy()
    out[:3, :3] = R @ T[:3, :3]
    return out


def view_targets(world: World, poses: np.ndarray, rng: np.random.Generator,
                 n_context: int) -> tuple[list[np.ndarray], list[str]]:
    """TARGETS_PER_KIND target poses of each kind around a trajectory whose first ``n_context``
    poses are the context (see the module docstring), and their kinds."""
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
        for attempt in range(400):
            p = world.sample_free_point(rng, 0.35)
            d = float(np.min(np.linalg.norm(positions - p, axis=1)))
            if 1.0 <= d <= 3.0 or (attempt > 200 and d >= 0.6):
                break
        top = min(1.5, world.ceiling - 0.3)
        T = camera_poses(p[None], np.array([rng.uniform(0.3, top)]), np.array([rng.uniform(-math.pi, math.pi)]),
                         np.array([math.radians(rng.uniform(-10, 10))]), np.zeros(1))[0]
        out.append(T)
        kinds.append("extrapolation")
    picks = rng.choice(len(tail), size=min(TARGETS_PER_KIND, len(tail)), replace=False)
    for j in sorted(int(v) for v in picks):  # revisit
        T = _yaw_about_z(tail[j], math.radians(rng.uniform(-3, 3)))
        nudged = T[:2, 3] + rng.uniform(-0.05, 0.05, 2)
        if world.is_free(nudged[0], nudged[1], 0.25):
            T[:2, 3] = nudged
        out.append(T)
        kinds.append("revisit")
    return out, kinds
