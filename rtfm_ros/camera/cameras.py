"""The node's simulated cameras: intrinsics, lens and sensor from a camera's parameters.

A camera's size and intrinsics come from its calibration (camera_info_url) or its parameters,
within the pixel budget; the renderer renders any size. A bad size or intrinsics at start-up
falls back to the default camera (logged, and the parameters set back); at run time it refuses
the change. Lenses are built once per distinct camera (per-pixel rays are costly).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from rtfm_ros.camera.config import CAMERA_SPECS, CameraNodeConfig, CameraParams, ConfigError
from rtfm_ros.camera.lens import Calibration, CalibrationError, Lens
from rtfm_ros.camera.worker import Sensor
from rtfm_ros.geometry import GeometryError, PinholeCamera, camera_from_opencv

FALLBACK = ("width", "height", "fov", "fx", "fy", "cx", "cy")  # what a bad camera at start-up falls back on


@dataclass(frozen=True)
class CameraSpec:
    """One simulated camera: where it is in TF, what it publishes, its intrinsics and lens."""

    name: str            # '' for the single-camera set-up
    camera_frame: str    # looked up in TF
    optical_frame: str   # header.frame_id of what it publishes
    body: bool           # camera_frame uses body axes (x forward): rotate to optical
    camera: PinholeCamera  # the published K (project convention inside)
    sensor: Sensor         # lens, rectified view, exposure and noise
    calibration: Calibration | None = None  # from camera_info_url
    stereo_of: str = ""  # the left camera's name when this is the right camera of a rectified pair

    @property
    def prefix(self) -> str:
        return f"{self.name}/" if self.name else ""


@functools.lru_cache(maxsize=32)
def make_lens(camera: PinholeCamera, model: str, d: tuple[float, ...], max_pixels: int) -> Lens:
    """One lens per distinct camera."""
    return Lens(camera, model, d, max_pixels=max_pixels)


def pinhole(p: CameraParams) -> PinholeCamera:
    """PinholeCamera from width/height/fx/fy/cx/cy/fov (cx, cy in ROS/OpenCV convention; 0 = centre)."""
    w, h = p.width, p.height
    cx = p.cx or (w - 1) / 2.0
    cy = p.cy or (h - 1) / 2.0
    try:
        if p.fx > 0:
            return camera_from_opencv(w, h, p.fx, p.fy or p.fx, cx, cy)
        cam = PinholeCamera.from_fov(w, h, p.fov)
        return camera_from_opencv(w, h, cam.fx, cam.fy, cx, cy)
    except GeometryError as e:
        raise ConfigError(f"camera {p.name!r}: {e}" if p.name else f"camera: {e}") from None


def intrinsics(p: CameraParams, cal: Calibration | None, budget: int) -> PinholeCamera:
    """The camera from its calibration or its parameters, within the pixel budget."""
    camera = cal.camera if cal is not None else pinhole(p)
    if camera.width * camera.height > budget:
        label = f"camera {p.name!r}" if p.name else "camera"
        raise ConfigError(f"{label}: {camera.width}x{camera.height} is above max_render_pixels ({budget})")
    return camera


def camera_spec(p: CameraParams, cal: Calibration | None, budget: int) -> CameraSpec:
    """A camera's spec from its parameters; ConfigError when it cannot be rendered."""
    camera = intrinsics(p, cal, budget)
    try:
        lens = make_lens(camera, cal.distortion_model if cal else "plumb_bob", cal.d if cal else (), budget)
    except CalibrationError as e:
        raise ConfigError(f"camera {p.name!r}: {e}") from None
    sensor = Sensor(lens, cal.rect_camera if cal is not None else None, p.exposure, p.gain_db, p.noise_stddev)
    frame = p.camera_frame.lstrip("/")
    body = p.camera_frame_convention == "body"
    optical = (p.optical_frame or f"{frame}_optical") if body else frame
    return CameraSpec(p.name, frame, optical.lstrip("/"), body, camera, sensor, cal, p.stereo_of)


def pair_stereo(specs: tuple[CameraSpec, ...]) -> tuple[CameraSpec, ...]:
    """Right cameras of stereo pairs take their left camera's size, K and lens: a rectified pair.

    The left camera must be ideal (no distortion): a rectified pair is what stereo_image_proc,
    VSLAM and RTAB-Map take, and the right image is rendered on the left's row grid.
    """
    by_name = {s.name: s for s in specs}
    out = []
    for s in specs:
        if not s.stereo_of:
            out.append(s)
            continue
        left = by_name.get(s.stereo_of)
        label = f"parameter {s.name + '.' if s.name else ''}stereo_of"
        if not s.name or left is None or left is s:
            raise ConfigError(f"{label!r}: {s.stereo_of!r} is not another camera in 'cameras'")
        if left.stereo_of:
            raise ConfigError(f"{label!r}: camera {left.name!r} is itself the right camera of a pair")
        if left.sensor.lens.distorted:
            raise ConfigError(f"{label!r}: a stereo pair is rectified, so camera {left.name!r} must have no "
                              "distortion")
        out.append(replace(s, camera=left.camera, calibration=None,
                           sensor=replace(s.sensor, lens=left.sensor.lens, rect_camera=None)))
    return tuple(out)


def build_cameras(config: CameraNodeConfig, calibrations: dict[str, Calibration]) -> tuple[CameraSpec, ...]:
    """Every camera of config, stereo pairs joined (ConfigError for the first that cannot be rendered)."""
    return pair_stereo(tuple(camera_spec(p, calibrations.get(p.name), config.max_render_pixels)
                             for p in config.cameras))


def start_cameras(config: CameraNodeConfig, calibrations: dict[str, Calibration],
                  fall_back: Callable[[str, dict[str, Any]], None]) -> tuple[CameraNodeConfig, tuple[CameraSpec, ...]]:
    """Cameras at start-up: an uncalibrated camera with a bad size or intrinsics gets the defaults.

    fall_back(message, {parameter name: default}) is told each fallback (to log it and set the
    parameters back); the config returned holds the defaults.
    """
    defaults = {k: CAMERA_SPECS[k].default for k in FALLBACK}
    for p in config.cameras:
        cal = calibrations.get(p.name)
        try:
            intrinsics(p, cal, config.max_render_pixels)
        except ConfigError as e:
            if cal is not None:
                raise
            fall_back(f"{e}; using the default camera {defaults['width']}x{defaults['height']}, "
                      f"fov {defaults['fov']:g} instead", {p.label(k): v for k, v in defaults.items()})
            if p.name:
                config = replace(config, named=tuple(replace(c, **defaults) if c.name == p.name else c
                                                     for c in config.named))
            else:
                config = replace(config, top=replace(config.top, **defaults))
    return config, build_cameras(config, calibrations)
