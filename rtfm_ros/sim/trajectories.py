"""Seeded camera trajectories through a procedural world (T_world_camera, optical axes).

Three kinds, each a plausible way a camera moves through a room:

- ``ground_robot``: a wheeled robot at a fixed camera height (0.2-1.5 m) and pitch, driving
  forward with a smoothly varying turn rate and turning in place when something is ahead.
- ``handheld``: the same collision-free path walked by a person, with smooth 6-DoF wobble
  (height, pitch, roll, looking sideways while walking).
- ``loop``: drive out, turn around, drive back along the same path, turn around, and set out
  again: every place is revisited, seen both backwards and exactly as before.

Between consecutive frames the camera moves at most ``step`` metres and turns at most
``max_turn_deg`` (both parameters), so a model can relate neighbouring frames. Paths are
checked against the world's 2-D footprints with a safety radius, never through walls or
furniture.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from rtfm_ros.geometry import camera_from_heading
from rtfm_ros.sim.worlds import World

TRAJECTORY_KINDS = ("ground_robot", "handheld", "loop")
DEFAULT_STEP = 0.2
DEFAULT_MAX_TURN_DEG = 15.0
DEFAULT_FRAME_DT = 0.1
CLEARANCE = 0.4  # metres kept between the camera and any obstacle (doorways are >= 0.9 m)
LOOKAHEAD = 0.8  # metres of free space wanted ahead before moving on


class TrajectoryError(ValueError):
    """Bad trajectory parameters (kind, length, step)."""


@dataclass(frozen=True)
class Trajectory:
    """Camera poses and stamps of one trajectory."""

    kind: str
    T_world_camera: np.ndarray  # N x 4 x 4 float64, optical axes
    stamps: np.ndarray  # N float64 seconds

    def __len__(self) -> int:
        return len(self.stamps)


def camera_poses(xy: np.ndarray, z: np.ndarray, yaw: np.ndarray, pitch: np.ndarray, roll: np.ndarray) -> np.ndarray:
    """Nx4x4 optical T_world_camera from positions and body-frame yaw/pitch/roll (radians).

    Body frame: x forward, z up; positive pitch looks up, positive roll tilts the image clockwise.
    """
    return camera_from_heading(np.column_stack([xy, z]), yaw, pitch, roll)


def _smooth_walk(rng: np.random.Generator, n: int, lo: float, hi: float, max_rate: float, start: float) -> np.ndarray:
    """A bounded random walk with inertia; |x[k+1] - x[k]| <= max_rate."""
    out = np.empty(n)
    x, v = float(np.clip(start, lo, hi)), 0.0
    for k in range(n):
        out[k] = x
        v = float(np.clip(0.85 * v + rng.normal(0.0, 0.4 * max_rate), -max_rate, max_rate))
        if not lo <= x + v <= hi:
            v = -v
        x = float(np.clip(x + v, lo, hi))
    return out


def _free_ahead(world: World, p: np.ndarray, h: float, dist: float, radius: float) -> bool:
    d = np.array([math.cos(h), math.sin(h)])
    return world.segment_is_free(p, p + dist * d, radius)


def drive(world: World, rng: np.random.Generator, n: int, step: float, max_turn: float,
          radius: float = CLEARANCE) -> tuple[np.ndarray, np.ndarray]:
    """(xy Nx2, heading N) of a collision-free drive: forward with smooth turns, turning in place when blocked."""
    p = world.sample_free_point(rng, radius + 0.2)
    h = float(rng.uniform(-math.pi, math.pi))
    xy, heading = [p.copy()], [h]
    w, turning, turned, speed = 0.0, 0, 0, float(rng.uniform(0.6, 1.0))
    while len(xy) < n:
        if turning == 0:
            w = float(np.clip(0.8 * w + rng.normal(0.0, 0.3 * max_turn), -0.7 * max_turn, 0.7 * max_turn))
            speed = float(np.clip(speed + rng.normal(0.0, 0.05), 0.5, 1.0))
            h2 = h + w
            p2 = p + speed * step * np.array([math.cos(h2), math.sin(h2)])
            if world.is_free(p2[0], p2[1], radius) and _free_ahead(world, p2, h2, LOOKAHEAD, radius):
                p, h = p2, h2
                xy.append(p.copy())
                heading.append(h)
                continue
            left = world.clearance(*(p + LOOKAHEAD * np.array([math.cos(h + 0.8), math.sin(h + 0.8)])))
            right = world.clearance(*(p + LOOKAHEAD * np.array([math.cos(h - 0.8), math.sin(h - 0.8)])))
            side = 1 if left >= right else -1
            h2 = h + side * max_turn  # steer away while moving, if that clears the way
            p2 = p + 0.5 * speed * step * np.array([math.cos(h2), math.sin(h2)])
            if world.is_free(p2[0], p2[1], radius) and _free_ahead(world, p2, h2, 0.6 * LOOKAHEAD, radius):
                p, h, w = p2, h2, side * 0.7 * max_turn
                xy.append(p.copy())
                heading.append(h)
                continue
            turning, turned, w = side, 0, 0.0
        h += turning * max_turn  # turn in place
        turned += 1
        xy.append(p.copy())
        heading.append(h)
        ahead = LOOKAHEAD if turned * max_turn < 2 * math.pi else step  # boxed in: settle for less
        if _free_ahead(world, p, h, ahead, radius):
            turning = 0
    return np.array(xy), np.array(heading)


def check_parameters(kind: str, n: int, step: float, max_turn_deg: float) -> None:
    """Raise TrajectoryError for an unknown kind, a bad length, step or turn limit."""
    if kind not in TRAJECTORY_KINDS:
        raise TrajectoryError(f"unknown trajectory kind {kind!r}; expected one of {', '.join(TRAJECTORY_KINDS)}")
    if isinstance(n, bool) or int(n) != n or n < 1:
        raise TrajectoryError(f"a trajectory needs at least 1 frame, got {n!r}")
    if not 0.01 <= step <= 1.0:
        raise TrajectoryError(f"step must be in [0.01, 1.0] metres, got {step}")
    if not 1.0 <= max_turn_deg <= 45.0:
        raise TrajectoryError(f"max_turn_deg must be in [1, 45] degrees, got {max_turn_deg}")


def make_trajectory(world: World, kind: str, n_frames: int, seed: int, *, step: float = DEFAULT_STEP,
                    max_turn_deg: float = DEFAULT_MAX_TURN_DEG, frame_dt: float = DEFAULT_FRAME_DT) -> Trajectory:
    """A seeded trajectory of ``n_frames`` poses; same arguments -> same poses."""
    check_parameters(kind, n_frames, step, max_turn_deg)
    n = int(n_frames)
    rng = np.random.default_rng([int(seed), TRAJECTORY_KINDS.index(kind), world.seed])
    max_turn = math.radians(max_turn_deg)
    top = world.ceiling - 0.3
    if kind == "ground_robot":
        xy, yaw = drive(world, rng, n, step, max_turn)
        z = np.full(n, rng.uniform(0.2, min(1.5, top)))
        pitch = np.full(n, math.radians(rng.uniform(-10.0, 10.0)))
        roll = np.zeros(n)
    elif kind == "handheld":
        # Turn budget split so that the composed rotation per frame stays <= max_turn.
        xy, heading = drive(world, rng, n, 0.95 * step, 0.6 * max_turn)
        yaw = heading + _smooth_walk(rng, n, -math.radians(35), math.radians(35), 0.15 * max_turn, 0.0)
        z = _smooth_walk(rng, n, 0.6, min(1.9, top), 0.3 * step, rng.uniform(0.9, min(1.7, top)))
        pitch = _smooth_walk(rng, n, -math.radians(20), math.radians(20), 0.15 * max_turn, 0.0)
        roll = _smooth_walk(rng, n, -math.radians(8), math.radians(8), 0.08 * max_turn, 0.0)
    else:
        xy, yaw = _loop(world, rng, n, step, max_turn)
        z = np.full(n, rng.uniform(0.3, min(1.5, top)))
        pitch = np.full(n, math.radians(rng.uniform(-8.0, 8.0)))
        roll = np.zeros(n)
    stamps = np.arange(n, dtype=np.float64) * float(frame_dt)
    return Trajectory(kind, camera_poses(xy, z, yaw, pitch, roll), stamps)


def _loop(world: World, rng: np.random.Generator, n: int, step: float,
          max_turn: float) -> tuple[np.ndarray, np.ndarray]:
    """Out, turn around, back along the same path, turn around, out again (first path repeated)."""
    k = math.ceil(math.pi / max_turn)  # frames for a half turn
    if n < 2 * k + 6:  # too short to turn around: out then straight back, reversing
        m = n // 2 + 1
        xy, h = drive(world, rng, m, step, max_turn)
        return np.concatenate([xy, xy[::-1][1: n - m + 1]]), np.concatenate([h, h[::-1][1: n - m + 1]])
    m = math.ceil((n - 2 * k + 2) / 3)  # out + back + out again fills n frames
    xy, h = drive(world, rng, m, step, max_turn)
    half_turn = np.pi * np.arange(1, k + 1) / k
    parts_xy = [xy, np.repeat(xy[-1:], k, axis=0), xy[::-1][1:], np.repeat(xy[:1], k, axis=0), xy[1:]]
    parts_h = [h, h[-1] + half_turn, h[::-1][1:] + np.pi, h[0] + np.pi + half_turn, h[1:] + 2 * np.pi]
    return np.concatenate(parts_xy)[:n], np.concatenate(parts_h)[:n]
