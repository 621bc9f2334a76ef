"""One CameraNav world (layout, MuJoCo renderer, WorldModel memory) and how its views are rendered.

Observations come from one of two sources (``OBSERVATION_SOURCES``): the world model's render
of the camera pose ("model", the point of the env), or MuJoCo's ground-truth render of the same
pose ("mujoco"), so a policy trained in one can be evaluated in the other with identical
dynamics, seeds, goals and rewards. render_slots is the one place that picks between them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np

from rtfm_ros.envs.batching import render_many
from rtfm_ros.geometry import PinholeCamera
from rtfm_ros.sim.renderer import WorldRenderer
from rtfm_ros.sim.worlds import World, make_world
from rtfm_ros.world import WorldModel

MARKER = "goal_marker"
OBSERVATION_SOURCES = ("model", "mujoco")


def with_goal_marker(world: World) -> World:
    """The same world with a red post (not an obstacle) that place_marker moves to the goal."""
    post = (f'    <geom name="{MARKER}" type="cylinder" pos="0 0 -5" size="0.1 0.6" rgba="0.95 0.08 0.05 1" '
            f'contype="0" conaffinity="0"/>\n')
    cut = world.xml.rfind("</worldbody>")
    return dataclasses.replace(world, xml=world.xml[:cut] + post + world.xml[cut:])


class WorldSlot:
    """One world: its layout, a MuJoCo renderer (seed frames, or every view with ground-truth
    observations), and a WorldModel memory.

    A single env owns one slot; a vector env gives each sub-env its own slot (sharing the
    network) or one shared slot for all (``shared``: the world persists across episodes).
    """

    def __init__(self, world_model: WorldModel, shared: bool = False) -> None:
        self.world_model = world_model
        self.shared = shared
        self.world: World | None = None
        self._sim: WorldRenderer | None = None
        self._key: tuple[Any, ...] | None = None
        self._marker = -1
        self._clock = 0

    def open(self, seed: int, kind: str, marker: bool, camera: PinholeCamera) -> None:
        """Build (or reuse) the world and empty the memory."""
        key = (seed, kind, marker, camera)
        if key != self._key:
            self.close()
            world = make_world(seed, kind)
            self._sim = WorldRenderer(with_goal_marker(world) if marker else world, camera)
            self._marker = self._sim.model.geom(MARKER).id if marker else -1
            self.world, self._key = world, key
        self.world_model.reset()
        self._clock = 0

    def invalidate(self) -> None:
        """Forget the world so the next episode builds it afresh (shared slots on a seeded reset)."""
        self.world = None
        self._key = None

    def place_marker(self, goal: np.ndarray) -> None:
        if self._marker >= 0 and self._sim is not None:
            self._sim.model.geom_pos[self._marker] = (goal[0], goal[1], 0.6)

    def _stamp(self) -> float:
        self._clock += 1
        return float(self._clock)

    def render_truth(self, T: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """MuJoCo's (rgb HxWx3 uint8, planar depth HxW metres) at T, goal marker included."""
        assert self._sim is not None, "open a world first"
        return self._sim.render(T)

    def add_seed_views(self, poses: list[np.ndarray]) -> None:
        """Ground-truth RGB + depth from MuJoCo at each pose whose view the memory lacks."""
        assert self._sim is not None, "open a world first"
        cam, mem = self._sim.camera, self.world_model.memory
        for T in poses:
            if mem.should_remember(T, cam):
                rgb, depth = self._sim.render(T)
                self.world_model.add_frame(rgb, T, cam, depth=depth, stamp=self._stamp(), source="seed")

    def remember(self, image: np.ndarray, depth: np.ndarray, T: np.ndarray, camera: PinholeCamera) -> None:
        """Store the view as the world's policy says (WorldModel.remember_view), stamped with this slot's clock."""
        if self.world_model.remember_view(image, T, camera, depth, stamp=float(self._clock + 1)):
            self._clock += 1

    def close(self) -> None:
        if self._sim is not None:
            self._sim.close()
            self._sim = None


def render_slots(slots: Sequence[WorldSlot], poses: np.ndarray, camera: PinholeCamera,
                 source: str) -> tuple[np.ndarray, np.ndarray]:
    """View i of slots[i] at poses[i] from ``source``: (NxHxWx3 uint8, NxHxW depth in metres).

    "model": one batched world-model call (render_many; depth NaN where no frame saw the place);
    "mujoco": MuJoCo's render of each slot's world, one view at a time (one GL context each).
    """
    if source == "model":
        return render_many([s.world_model for s in slots], poses, camera, return_depth=True)
    if source != "mujoco":
        raise ValueError(f"observation source must be one of {OBSERVATION_SOURCES}, got {source!r}")
    views = [s.render_truth(T) for s, T in zip(slots, poses)]
    return np.stack([v[0] for v in views]), np.stack([v[1] for v in views])
