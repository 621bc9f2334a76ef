"""rtfm/CameraNav-v0: a ground robot whose camera images are rendered by the world model.

Each episode builds a procedural world (rtfm_ros.sim), renders a handful of ground-truth seed
frames with MuJoCo (a turn on the spot at the start and a few views along the straight line to
the goal) into the WorldModel's memory, and from then on every observation is the MODEL's
render of the robot's camera pose. With ``remember`` the rendered views are stored back, so the
world grows as the agent explores. MuJoCo only supplies the seed frames; the world's 2-D layout
supplies collisions. With ``observation_source="mujoco"`` MuJoCo renders every observation
instead (ground-truth eyes, no seed frames, nothing remembered) and nothing else changes: the
same seed and actions give the same worlds, starts, goals, poses, rewards and terminations.

Stored frames are stamped by a per-world counter rather than the wall clock, so context
selection (which favours recent frames), and therefore every observation, is reproducible.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from rtfm_ros.envs.batching import resolve_world_model
from rtfm_ros.envs.slot import OBSERVATION_SOURCES, WorldSlot, render_slots
from rtfm_ros.geometry import PinholeCamera, camera_from_heading
from rtfm_ros.sim.worlds import HELDOUT_SEED_BASE, KINDS, World
from rtfm_ros.world import WorldModel

OBSERVATIONS = ("image", "dict")
COLLISIONS = ("terminate", "block")
POSITION_LIMIT = 1000.0  # metres: far beyond any generated world, bounds the pose/goal spaces


class EnvConfigError(ValueError):
    """An environment setting, reset option or action that cannot be used."""


@dataclass(frozen=True)
class NavConfig:
    """Everything that defines the task; one config is shared by all sub-envs of a vector env."""

    world_kind: str = "room"             # "room" or "multiroom"
    world_seed: int | None = None        # fixed world, or None: drawn per episode from world_seeds
    world_seeds: tuple[int, int] = (0, 100_000)  # [lo, hi) training worlds, below the held-out seeds
    observation: str = "image"           # "image" (HxWx3 uint8) or "dict" (image, depth, pose, goal)
    observation_source: str = "model"    # who renders the views: "model" or "mujoco" (ground truth)
    width: int = 64
    height: int = 64
    fov_deg: float = 90.0                # horizontal field of view
    camera_height: float = 0.5           # metres above the floor
    remember: bool = True                # store rendered views back into the memory
    collision: str = "terminate"         # "terminate" (episode ends) or "block" (motion refused)
    max_episode_steps: int = 200
    dt: float = 0.25                     # seconds per step
    max_linear: float = 0.5              # |v| limit, m/s
    max_angular: float = 1.5             # |omega| limit, rad/s
    goal_distance: tuple[float, float] = (1.0, 4.0)  # start-goal distance range, metres
    goal_radius: float = 0.4             # success when the robot centre is this close
    start_heading_spread_deg: float = 180.0  # start yaw within +-this of the goal's bearing (180: any)
    robot_radius: float = 0.2
    goal_marker: bool = True             # a red post at the goal (per-env worlds only)
    seed_turn_views: int = 8             # seed views turning on the spot at the start
    seed_path_views: int = 3             # seed views on the line start -> goal (goal included)
    shaping: float = 1.0                 # reward per metre of progress toward the goal
    step_reward: float = -0.01
    success_reward: float = 10.0
    collision_reward: float = -5.0

    def __post_init__(self) -> None:
        def bad(msg: str) -> None:
            raise EnvConfigError(msg)
        if self.world_kind not in KINDS:
            bad(f"world_kind must be one of {KINDS}, got {self.world_kind!r}")
        if self.observation not in OBSERVATIONS:
            bad(f"observation must be one of {OBSERVATIONS}, got {self.observation!r}")
        if self.observation_source not in OBSERVATION_SOURCES:
            bad(f"observation_source must be one of {OBSERVATION_SOURCES}, got {self.observation_source!r}")
        if self.collision not in COLLISIONS:
            bad(f"collision must be one of {COLLISIONS}, got {self.collision!r}")
        for name in ("width", "height", "max_episode_steps", "seed_turn_views"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                bad(f"{name} must be a positive integer, got {v!r}")
        for name in ("dt", "max_linear", "max_angular", "goal_radius", "robot_radius", "camera_height"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
                bad(f"{name} must be a positive number, got {v!r}")
        if not 0 <= self.start_heading_spread_deg <= 180:
            bad(f"start_heading_spread_deg must be in [0, 180], got {self.start_heading_spread_deg}")
        if not 0 < self.fov_deg < 180:
            bad(f"fov_deg must be in (0, 180), got {self.fov_deg}")
        if len(self.goal_distance) != 2 or not 0 <= self.goal_distance[0] <= self.goal_distance[1]:
            bad(f"goal_distance must be (lo, hi) with 0 <= lo <= hi, got {self.goal_distance}")
        if self.seed_path_views < 0:
            bad(f"seed_path_views must be >= 0, got {self.seed_path_views}")
        lo, hi = self.world_seeds
        if not 0 <= lo < hi:
            bad(f"world_seeds must be [lo, hi) with 0 <= lo < hi, got {self.world_seeds}")
        if hi > HELDOUT_SEED_BASE:
            bad(f"world_seeds {self.world_seeds} overlap the held-out evaluation worlds "
                f"(seeds >= {HELDOUT_SEED_BASE}); pass a fixed world_seed to run on one of those")
        if self.world_seed is not None and (isinstance(self.world_seed, bool) or int(self.world_seed) < 0):
            bad(f"world_seed must be a non-negative integer or None, got {self.world_seed!r}")

    @property
    def camera(self) -> PinholeCamera:
        return PinholeCamera.from_fov(self.width, self.height, self.fov_deg)


def _wrap(angle: float) -> float:
    return (angle + math.pi) % (2 * math.pi) - math.pi


def camera_pose(x: float, y: float, yaw: float, height: float) -> np.ndarray:
    """T_world_camera (optical axes) of a forward-looking camera on a robot at (x, y, yaw)."""
    return camera_from_heading((x, y, height), yaw)


class CameraNavEnv(gym.Env):
    """Drive a unicycle robot to a goal, seeing only what the world model renders.

    Actions: Box([-max_linear, -max_angular], [max_linear, max_angular]) = (v, omega), clipped.
    Observations: HxWx3 uint8 image, or with ``observation="dict"``: image, depth (HxW float32,
    metres, as rendered; 0 where no frame saw the place), pose (x, y, yaw) and goal
    (goal position in the robot frame: x forward, y left). Reward: ``shaping`` x progress toward
    the goal + ``step_reward``, plus ``success_reward`` on arrival and ``collision_reward`` on
    hitting the layout.
    Keyword arguments: the NavConfig fields, plus ``model`` (WorldModel, DepthPrior or a
    checkpoint directory; default: the bundled model), ``device`` and ``render_mode``.
    Reset options: ``world_seed``, ``start`` (x, y, yaw), ``goal`` (x, y).
    """

    metadata: dict[str, Any] = {"render_modes": ["rgb_array"], "render_fps": 4}

    def __init__(self, *, model: Any = None, device: str = "auto", render_mode: str | None = None,
                 config: NavConfig | None = None, slot: WorldSlot | None = None, **kwargs: Any) -> None:
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise EnvConfigError(f"render_mode must be None or 'rgb_array', got {render_mode!r}")
        if config is not None and kwargs:
            raise EnvConfigError("pass either config or keyword settings, not both")
        self.config = cfg = config if config is not None else NavConfig(**kwargs)
        self.render_mode = render_mode
        self.camera = cfg.camera
        self._slot = slot if slot is not None else WorldSlot(resolve_world_model(model, device))
        self._slot.world_model.check_camera(self.camera)
        self.action_space = spaces.Box(np.array([-cfg.max_linear, -cfg.max_angular], np.float32),
                                       np.array([cfg.max_linear, cfg.max_angular], np.float32), dtype=np.float32)
        image = spaces.Box(0, 255, (cfg.height, cfg.width, 3), np.uint8)
        self.observation_space: spaces.Space[Any] = image if cfg.observation == "image" else spaces.Dict({
            "image": image,
            "depth": spaces.Box(0.0, float(self._slot.world_model.config.max_depth), (cfg.height, cfg.width),
                                np.float32),
            "pose": spaces.Box(np.array([-POSITION_LIMIT, -POSITION_LIMIT, -math.pi], np.float32),
                               np.array([POSITION_LIMIT, POSITION_LIMIT, math.pi], np.float32), dtype=np.float32),
            "goal": spaces.Box(-2 * POSITION_LIMIT, 2 * POSITION_LIMIT, (2,), np.float32),
        })
        self.pose = np.zeros(3)   # x, y, yaw
        self.goal = np.zeros(2)
        self.steps = 0
        self._last_image: np.ndarray | None = None

    @property
    def world_model(self) -> WorldModel:
        return self._slot.world_model

    @property
    def world(self) -> World | None:
        return self._slot.world

    # -- episode steps, public so a vector env can batch the rendering between them ------------
    # One episode step is advance() (or begin_episode() on reset), a render at camera_T(), then
    # observe(); reset() and step() below are exactly that with a render of one view.

    def seed_rng(self, seed: int | None) -> None:
        """Seed np_random exactly as reset(seed=...) does."""
        gym.Env.reset(self, seed=seed)

    def _episode_world(self) -> World:
        """The world of the episode under way (begin_episode opened it)."""
        world = self._slot.world
        assert world is not None, "no episode under way: reset() first"
        return world

    def _sample_start_goal(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        cfg, world = self.config, self._episode_world()
        start = world.sample_free_point(rng, cfg.robot_radius)
        lo, hi = cfg.goal_distance
        for _ in range(200):
            a, d = rng.uniform(-math.pi, math.pi), rng.uniform(lo, hi)
            p = start + d * np.array([math.cos(a), math.sin(a)])
            if world.is_free(p[0], p[1], cfg.robot_radius):
                return start, p
        best, best_err = start, math.inf  # a cramped spot: the free point nearest the distance range
        for _ in range(50):
            p = world.sample_free_point(rng, cfg.robot_radius)
            d = float(np.linalg.norm(p - start))
            err = max(lo - d, d - hi, 0.0)
            if err < best_err:
                best, best_err = p, err
        return start, best

    def _seed_poses(self) -> list[np.ndarray]:
        cfg, world = self.config, self._episode_world()
        x, y, yaw = self.pose
        poses = [camera_pose(x, y, yaw + 2 * math.pi * k / cfg.seed_turn_views, cfg.camera_height)
                 for k in range(cfg.seed_turn_views)]
        heading = math.atan2(self.goal[1] - y, self.goal[0] - x)
        for f in np.linspace(0.0, 1.0, cfg.seed_path_views + 1)[1:]:
            p = (1 - f) * self.pose[:2] + f * self.goal
            if world.is_free(p[0], p[1], cfg.robot_radius):
                poses.append(camera_pose(p[0], p[1], heading, cfg.camera_height))
        return poses

    def begin_episode(self, options: dict[str, Any] | None) -> np.ndarray:
        """Start an episode (world, start, goal, seed views) without rendering; the first camera pose.

        Uses np_random as it is: seed it first (seed_rng) for a reproducible episode.
        """
        cfg, slot, rng = self.config, self._slot, self.np_random
        opts = dict(options or {})
        unknown = set(opts) - {"world_seed", "start", "goal"}
        if unknown:
            raise EnvConfigError(f"unknown reset options: {sorted(unknown)}")
        if not (slot.shared and slot.world is not None):
            seed = opts.get("world_seed", cfg.world_seed)
            seed = int(rng.integers(*cfg.world_seeds)) if seed is None else int(seed)
            slot.open(seed, cfg.world_kind, marker=cfg.goal_marker and not slot.shared, camera=self.camera)
        start, goal = self._sample_start_goal(rng)
        yaw = float(rng.uniform(-math.pi, math.pi))
        if cfg.start_heading_spread_deg < 180:  # the same draw, scaled around the goal's bearing
            yaw = math.atan2(goal[1] - start[1], goal[0] - start[0]) + yaw * cfg.start_heading_spread_deg / 180
        if "start" in opts:
            start, yaw = np.asarray(opts["start"], dtype=np.float64)[:2], float(opts["start"][2])
            world = self._episode_world()
            if not world.is_free(start[0], start[1], cfg.robot_radius):
                raise EnvConfigError(f"start {tuple(opts['start'])} is not free in world {world.seed}")
        if "goal" in opts:
            goal = np.asarray(opts["goal"], dtype=np.float64).reshape(2)
        self.pose = np.array([start[0], start[1], _wrap(yaw)])
        self.goal = np.asarray(goal, dtype=np.float64)
        self.steps = 0
        if not slot.shared:
            slot.place_marker(self.goal)
        if cfg.observation_source == "model":
            slot.add_seed_views(self._seed_poses())
        return self.camera_T()

    def render_views(self, envs: list[CameraNavEnv], poses: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """View i of envs[i] (which share this env's config) at poses[i], from the config's
        observation source, in one batched call where the source allows."""
        return render_slots([e._slot for e in envs], poses, self.camera, self.config.observation_source)

    def camera_T(self) -> np.ndarray:
        """T_world_camera of the robot's camera now (what the next observation is rendered at)."""
        x, y, yaw = self.pose
        return camera_pose(x, y, yaw, self.config.camera_height)

    def distance(self) -> float:
        return float(np.linalg.norm(self.goal - self.pose[:2]))

    def advance(self, action: Any) -> tuple[float, bool, bool, dict[str, Any]]:
        """Move the robot by one action without rendering: (reward, terminated, truncated, info extras)."""
        cfg = self.config
        a = np.asarray(action, dtype=np.float64).reshape(-1)
        if a.shape != (2,) or not np.all(np.isfinite(a)):
            raise EnvConfigError(f"action must be 2 finite numbers (v, omega), got {action!r}")
        v = float(np.clip(a[0], -cfg.max_linear, cfg.max_linear))
        w = float(np.clip(a[1], -cfg.max_angular, cfg.max_angular))
        x, y, yaw = self.pose
        before = self.distance()
        mid = yaw + 0.5 * w * cfg.dt
        nx, ny = x + v * cfg.dt * math.cos(mid), y + v * cfg.dt * math.sin(mid)
        collided = not self._episode_world().segment_is_free(np.array([x, y]), np.array([nx, ny]), cfg.robot_radius)
        if collided:
            nx, ny = x, y
        self.pose = np.array([nx, ny, _wrap(yaw + w * cfg.dt)])
        self.steps += 1
        after = self.distance()
        success = after < cfg.goal_radius
        reward = cfg.shaping * (before - after) + cfg.step_reward
        reward += (cfg.success_reward if success else 0.0) + (cfg.collision_reward if collided else 0.0)
        terminated = success or (collided and cfg.collision == "terminate")
        truncated = not terminated and self.steps >= cfg.max_episode_steps
        return float(reward), bool(terminated), bool(truncated), {"collision": collided}

    def observe(self, image: np.ndarray, depth: np.ndarray, T: np.ndarray,
                extra: dict[str, Any] | None = None) -> tuple[Any, dict[str, Any]]:
        """(observation, info) from the view rendered at T; remembers it first when ``remember`` is set."""
        cfg = self.config
        if cfg.remember and cfg.observation_source == "model":
            self._slot.remember(image, depth, T, self.camera)
        self._last_image = image
        info = {"distance": self.distance(), "success": self.distance() < cfg.goal_radius, "collision": False,
                "world_seed": self._episode_world().seed, "memory_frames": len(self.world_model.memory)}
        info.update(extra or {})
        if cfg.observation == "image":
            return image, info
        x, y, yaw = self.pose
        d = self.goal - self.pose[:2]
        c, s = math.cos(yaw), math.sin(yaw)
        space = self.observation_space
        assert isinstance(space, spaces.Dict)  # observation "dict" (an image alone was returned above)
        depth_space = space["depth"]
        assert isinstance(depth_space, spaces.Box)
        far = depth_space.high[0, 0]
        depth = np.clip(np.nan_to_num(depth, nan=0.0), 0.0, far).astype(np.float32)
        return {"image": image, "depth": depth,
                "pose": np.array([x, y, yaw], np.float32),
                "goal": np.array([c * d[0] + s * d[1], -s * d[0] + c * d[1]], np.float32)}, info

    # -- gymnasium API ----------------------------------------------------------------------------

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Any, dict[str, Any]]:
        super().reset(seed=seed)
        T = self.begin_episode(options)
        images, depths = self.render_views([self], T[None])
        return self.observe(images[0], depths[0], T)

    def step(self, action: np.ndarray) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        reward, terminated, truncated, extra = self.advance(action)
        T = self.camera_T()
        images, depths = self.render_views([self], T[None])
        obs, info = self.observe(images[0], depths[0], T, extra)
        return obs, reward, terminated, truncated, info

    def render(self) -> np.ndarray | None:
        if self.render_mode == "rgb_array" and self._last_image is not None:
            return self._last_image.copy()
        return None

    def close(self) -> None:
        self._slot.close()
