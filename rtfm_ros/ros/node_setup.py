"""Setting the camera node up from its parameters: model, world copy, seeds, cameras and lenses.

Kept apart from the node's run-time code; every check raises ConfigError with the parameter's
name, so a node that cannot do its job refuses to start with the reason.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from rclpy.parameter import Parameter

from rtfm_ros.geometry import PinholeCamera, body_to_optical, transform_from_ros
from rtfm_ros.ros import params as P
from rtfm_ros.ros.lens import Calibration, CalibrationError, Lens, read_calibration
from rtfm_ros.ros.params import CameraSpec
from rtfm_ros.ros.worker import Sensor
from rtfm_ros.ros.world_files import ScratchWorld, user_path

if TYPE_CHECKING:  # pragma: no cover
    from rtfm_ros.ros.camera_node import CameraNode
    from rtfm_ros.world import WorldModel

SIZE_STEP = 1  # the renderer renders any size (views are not tiled into patches)


@functools.lru_cache(maxsize=32)

def make_lens(camera: PinholeCamera, model: str, d: tuple[float, ...], patch: int, max_pixels: int) -> Lens:
    """Lenses are costly to build (per-pixel rays): one per distinct camera."""
    return Lens(camera, model, d, patch=patch, max_pixels=max_pixels)


def load_model(node: "CameraNode") -> "WorldModel":
    """The checkpoint, and the world parameter's file as a working copy (the file is never written)."""
    from rtfm_ros.world import WorldModel

    ckpt, world = node.values["checkpoint"] or None, node.values["world"] or None
    try:
        wm = WorldModel.load(ckpt, device=node.values["device"])
    except Exception as e:  # checkpoint or device: the node cannot do its job
        raise P.ConfigError(f"cannot load checkpoint {ckpt or '(bundled default)'} on device "
                            f"{node.values['device']!r}: {e}") from None
    if world:
        try:
            node.world_source = user_path(world)
            node.scratch = ScratchWorld(node.world_source, node.values["scratch_dir"])
        except Exception as e:
            raise P.ConfigError(f"cannot load world {world}: {e}") from None
        wm.memory.close()
        wm.memory = node.scratch.memory
        try:
            wm.load_fit_beside(node.world_source)
        except Exception as e:
            raise P.ConfigError(f"cannot use the fit beside world {world}: {e}") from None
    return wm


def read_calibrations(cam_values: dict[str, dict[str, Any]]) -> dict[str, Calibration]:
    """camera_info_url of each camera, read now: a calibration that cannot be used refuses the start."""
    out = {}
    for name, v in cam_values.items():
        if v["camera_info_url"]:
            try:
                out[name] = read_calibration(v["camera_info_url"])
            except CalibrationError as e:
                label = f"{name}.camera_info_url" if name else "camera_info_url"
                raise P.ConfigError(f"parameter {label!r}: {e}") from None
    return out


def seed_from_parameters(node: "CameraNode") -> None:
    """seed_images at seed_poses, added as seed frames."""
    from PIL import Image as PILImage

    images = node.values["seed_images"]
    for path, row in zip(images, node._seed_rows):
        try:
            with PILImage.open(Path(path).expanduser()) as im:
                rgb = np.asarray(im.convert("RGB"))
            T = transform_from_ros(row[:3], row[3:])
            if node.values["seed_pose_convention"] == "body":
                T = body_to_optical(T)
            cam = PinholeCamera.from_fov(rgb.shape[1], rgb.shape[0], node.values["seed_fov"])
            node.world.add_frame(rgb, T, cam, source="seed")
        except (OSError, ValueError) as e:
            raise P.ConfigError(f"seed image {path!r}: {e}") from None
    if images:
        node.get_logger().info(f"seeded the world with {len(images)} images")


def declare_cameras(node: "CameraNode") -> dict[str, dict[str, Any]]:
    """Per-camera parameter values (the top-level ones for the single-camera set-up)."""
    top = {s.name: node.values[s.name] for s in P.CAMERA_PARAMS}
    if not node.values["cameras"]:
        return {"": top}
    out = {}
    for name in node.values["cameras"]:
        defaults = dict(top, camera_frame=f"{name}_camera_link", optical_frame="")
        out[name] = {s.name: P.declare(node, s, f"{name}.{s.name}", defaults[s.name]) for s in P.CAMERA_PARAMS}
    return out


def intrinsics(node: "CameraNode", name: str, v: dict[str, Any], values: dict[str, Any]) -> PinholeCamera:
    """The camera from its calibration or its parameters, within the pixel budget."""
    label = f"camera {name!r}" if name else "camera"
    cal = node._calibrations.get(name)
    camera = cal.camera if cal is not None else P.build_camera(v, SIZE_STEP, name)
    budget = values["max_render_pixels"]
    if camera.width * camera.height > budget:
        raise P.ConfigError(f"{label}: {camera.width}x{camera.height} is above max_render_pixels ({budget})")
    return camera


def build_camera(node: "CameraNode", name: str, v: dict[str, Any], values: dict[str, Any],
                 at_start: bool = False) -> CameraSpec:
    """A camera's spec; at start a bad size or intrinsics falls back to the default camera (logged)."""
    try:
        camera = intrinsics(node, name, v, values)
    except P.ConfigError as e:
        if not at_start or name in node._calibrations:
            raise
        keys = ("width", "height", "fov", "fx", "fy", "cx", "cy")
        defaults = {k: P.CAMERA_SPECS[k].default for k in keys}
        node.get_logger().error(f"{e}; using the default camera {defaults['width']}x{defaults['height']}, "
                                f"fov {defaults['fov']:g} instead")
        v.update(defaults)
        if not name:
            node.values.update(defaults)
        node.set_parameters([Parameter(f"{name}.{k}" if name else k, value=d) for k, d in defaults.items()])
        camera = intrinsics(node, name, v, values)
    cal = node._calibrations.get(name)
    try:
        lens = make_lens(camera, cal.distortion_model if cal else "plumb_bob", cal.d if cal else (),
                         SIZE_STEP, values["max_render_pixels"])
    except CalibrationError as e:
        raise P.ConfigError(f"camera {name!r}: {e}") from None
    rect = cal.rect_camera if cal is not None else None
    sensor = Sensor(lens, rect, v["exposure"], v["gain_db"], v["noise_stddev"])
    frame = v["camera_frame"].lstrip("/")
    body = v["camera_frame_convention"] == "body"
    optical = (v["optical_frame"] or f"{frame}_optical") if body else frame
    return CameraSpec(name, frame, optical.lstrip("/"), body, camera, sensor, cal)
