"""Procedural MuJoCo worlds, camera trajectories and offscreen rendering (ground truth data).

worlds and trajectories are pure numpy; only rtfm_ros.sim.renderer imports MuJoCo.
"""

from rtfm_ros.sim.worlds import KINDS, Box2D, Circle2D, World, WorldError, make_world

__all__ = ["KINDS", "Box2D", "Circle2D", "World", "WorldError", "make_world"]
