"""Offscreen RGB + depth rendering of a procedural world from an optical-frame camera pose.

The only module that imports MuJoCo. MUJOCO_GL defaults to EGL (must be set before the import;
unset, offscreen rendering fails). The GL context is created lazily on the first render, so a
WorldRenderer can be built before a fork (Gymnasium AsyncVectorEnv) without hanging.

Intrinsics: MuJoCo cameras are ideal pinholes with square pixels and a centred principal point
(fx = fy = 0.5 * H / tan(fovy / 2), cx = W / 2, cy = H / 2). A PinholeCamera that differs is
refused with a RenderError rather than silently rendered with other intrinsics; scale or crop
the camera first (PinholeCamera.from_fov / scaled give renderable ones).
"""

from __future__ import annotations

import math
import os

os.environ.setdefault("MUJOCO_GL", "egl")

import mujoco
import numpy as np

from rtfm_ros.geometry import MAX_RESOLUTION, PinholeCamera, optical_to_opengl, validate_transform
from rtfm_ros.sim.worlds import World

CAMERA_NAME = "view"
MUJOCO_VERSION: str = mujoco.__version__


class RenderError(ValueError):
    """A camera or world the renderer cannot use."""


def compile_world(world: World) -> mujoco.MjModel:
    """MjModel for a world (its MJCF plus in-memory PNG textures)."""
    try:
        return mujoco.MjModel.from_xml_string(world.xml, assets=world.assets)
    except ValueError as exc:
        raise RenderError(f"world {world.kind}/{world.seed} does not compile: {exc}") from exc


def fovy_deg(camera: PinholeCamera) -> float:
    """MuJoCo's vertical field of view for a camera; RenderError for non-renderable intrinsics."""
    W, H = camera.width, camera.height
    if abs(camera.fx - camera.fy) > 1e-6 * camera.fy:
        raise RenderError(f"MuJoCo renders square pixels only: fx={camera.fx} != fy={camera.fy}")
    if abs(camera.cx - W / 2) > 1e-6 * W or abs(camera.cy - H / 2) > 1e-6 * H:
        raise RenderError(f"MuJoCo renders a centred principal point only: cx={camera.cx}, cy={camera.cy} "
                          f"for a {W}x{H} image (expected {W / 2}, {H / 2})")
    return math.degrees(2.0 * math.atan(0.5 * H / camera.fy))


def check_resolution(width: int, height: int) -> None:
    for name, v in (("width", width), ("height", height)):
        if isinstance(v, bool) or int(v) != v or not 0 < v <= MAX_RESOLUTION:
            raise RenderError(f"render {name} must be an integer in 1..{MAX_RESOLUTION}, got {v}")


def auto_shadow_size(camera: PinholeCamera) -> int:
    """Shadow map edge in pixels: 8 per image pixel, 512..2048 (the map, not the image, sets the cost)."""
    return int(min(2048, max(512, 8 * max(camera.width, camera.height))))


class WorldRenderer:
    """Renders one world through one pinhole camera; poses are T_world_camera (optical axes).

    ``shadow_size`` (shadow map edge, pixels) defaults to auto_shadow_size(camera): shadow
    passes dominate software-rendering time, and at 64 px a 512 map is as good as a bigger one.
    """

    def __init__(self, world: World, camera: PinholeCamera, shadow_size: int | None = None) -> None:
        if not isinstance(camera, PinholeCamera):
            raise RenderError(f"camera must be a PinholeCamera, got {type(camera).__name__}")
        check_resolution(camera.width, camera.height)
        self.world, self.camera = world, camera
        self._model = compile_world(world)
        self._model.vis.global_.offwidth = max(int(self._model.vis.global_.offwidth), camera.width)
        self._model.vis.global_.offheight = max(int(self._model.vis.global_.offheight), camera.height)
        if shadow_size is None:
            shadow_size = auto_shadow_size(camera)
        if not 0 < int(shadow_size) <= 8192:
            raise RenderError(f"shadow_size must be in 1..8192, got {shadow_size}")
        self._model.vis.quality.shadowsize = int(shadow_size)
        self._cam = mujoco.mj_name2id(self._model, mujoco.mjtObj.mjOBJ_CAMERA, CAMERA_NAME)
        if self._cam < 0:
            raise RenderError(f"world {world.kind}/{world.seed} has no camera named {CAMERA_NAME!r}")
        self._model.cam_fovy[self._cam] = fovy_deg(camera)
        self._data = mujoco.MjData(self._model)
        self._renderer: mujoco.Renderer | None = None
        self._quat = np.zeros(4)

    @property
    def model(self) -> mujoco.MjModel:
        return self._model

    def _gl(self) -> mujoco.Renderer:
        if self._renderer is None:  # lazily: GL contexts do not survive fork
            self._renderer = mujoco.Renderer(self._model, self.camera.height, self.camera.width)
        return self._renderer

    def _place(self, T_world_camera: np.ndarray) -> mujoco.Renderer:
        T = optical_to_opengl(validate_transform(T_world_camera, "T_world_camera"))
        mujoco.mju_mat2Quat(self._quat, np.ascontiguousarray(T[:3, :3]).reshape(-1))
        self._model.cam_pos[self._cam] = T[:3, 3]
        self._model.cam_quat[self._cam] = self._quat
        mujoco.mj_kinematics(self._model, self._data)
        mujoco.mj_camlight(self._model, self._data)
        r = self._gl()
        r.update_scene(self._data, camera=self._cam)
        return r

    def render_rgb(self, T_world_camera: np.ndarray) -> np.ndarray:
        """HxWx3 uint8 colour image."""
        return np.array(self._place(T_world_camera).render(), dtype=np.uint8, copy=True)

    def render_depth(self, T_world_camera: np.ndarray) -> np.ndarray:
        """HxW float32 planar z-depth in metres."""
        r = self._place(T_world_camera)
        r.enable_depth_rendering()
        try:
            return np.array(r.render(), dtype=np.float32, copy=True)
        finally:
            r.disable_depth_rendering()

    def render(self, T_world_camera: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(rgb HxWx3 uint8, depth HxW float32 metres) from one pose."""
        r = self._place(T_world_camera)
        rgb = np.array(r.render(), dtype=np.uint8, copy=True)
        r.enable_depth_rendering()
        try:
            depth = np.array(r.render(), dtype=np.float32, copy=True)
        finally:
            r.disable_depth_rendering()
        return rgb, depth

    def close(self) -> None:
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None

    def __enter__(self) -> WorldRenderer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001 - interpreter shutdown: GL may already be gone
            pass
