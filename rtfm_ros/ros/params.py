"""Parameters of the camera node: one table of specs, checked the same way at start and at run time.

Every parameter is declared with a descriptor (description, read-only flag). Values are checked
here rather than trusted to rclpy's static typing so that ``-p rate:=10`` (an integer) works
and an absurd value gets a message naming the parameter. Each spec says what happens to a bad
value at start-up: ``"default"`` (log an error, keep running with the default) for values with a
harmless fallback (rate, resolution, intrinsics, QoS), ``"refuse"`` (the node does not start)
where guessing would publish wrong data silently (frames, axis conventions, seeds, model).
At run time a bad value is always refused and the previous value stays.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Callable

from rcl_interfaces.msg import ParameterDescriptor
from rclpy.exceptions import ParameterUninitializedException
from rclpy.node import Node
from rclpy.parameter import Parameter

from rtfm_ros.geometry import MAX_RESOLUTION, GeometryError, PinholeCamera
from rtfm_ros.ros.lens import Calibration
from rtfm_ros.geometry import camera_from_opencv
from rtfm_ros.ros.worker import DEPTH_SOURCES, Sensor


@dataclass(frozen=True)
class CameraSpec:
    """One simulated camera: where it is in TF, what it publishes, its intrinsics and lens."""

    name: str            # '' for the single-camera set-up
    camera_frame: str    # looked up in TF
    optical_frame: str   # header.frame_id of what it publishes
    body: bool           # camera_frame uses body axes (x forward): rotate to optical
    camera: PinholeCamera  # the published K (project convention inside)
    sensor: Sensor | None = None
    calibration: Calibration | None = None  # from camera_info_url

    @property
    def prefix(self) -> str:
        return f"{self.name}/" if self.name else ""


QOS_CHOICES = ("reliable", "sensor_data")
DEPTH_ENCODINGS = ("32FC1", "16UC1")
COMPRESSED_FORMATS = ("jpeg", "png")
MAX_RENDER_PIXELS = 1024 * 1024
CONVENTIONS = ("optical", "body")
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")


class ConfigError(ValueError):
    """A parameter value the node cannot run with."""


def _number(v: Any) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise ConfigError(f"expected a number, got {v!r}")
    return float(v)


def _kind_value(kind: str, v: Any) -> Any:
    """v coerced to kind ('float', 'int', 'bool', 'str', 'str_list', 'float_list'), or ConfigError."""
    if kind == "float":
        return _number(v)
    if kind == "int":
        f = _number(v)
        if not math.isfinite(f) or f != int(f):
            raise ConfigError(f"expected an integer, got {v!r}")
        return int(f)
    if kind == "bool":
        if not isinstance(v, bool):
            raise ConfigError(f"expected true or false, got {v!r}")
        return v
    if kind == "str":
        if not isinstance(v, str):
            raise ConfigError(f"expected a string, got {v!r}")
        return v
    if v is None:
        return []
    if kind == "str_list":
        if not isinstance(v, (list, tuple)) or not all(isinstance(x, str) for x in v):
            raise ConfigError(f"expected a list of strings, got {v!r}")
        return list(v)
    if kind == "float_list":
        if not isinstance(v, (list, tuple)):
            raise ConfigError(f"expected a list of numbers, got {v!r}")
        return [_number(x) for x in v]
    raise AssertionError(kind)


def _range(lo: float, hi: float, lo_open: bool = True, hi_open: bool = False) -> Callable[[Any], str | None]:
    def check(v: float) -> str | None:
        ok = math.isfinite(v) and (v > lo if lo_open else v >= lo) and (v < hi if hi_open else v <= hi)
        return None if ok else f"must be in {'(' if lo_open else '['}{lo:g}, {hi:g}{')' if hi_open else ']'}"
    return check


def _choice(choices: tuple[str, ...]) -> Callable[[Any], str | None]:
    return lambda v: None if v in choices else f"must be one of {', '.join(choices)}"


def _nonempty(v: str) -> str | None:
    return None if v.strip() else "must not be empty"


def _size(v: int) -> str | None:
    return None if 0 < v <= MAX_RESOLUTION else f"must be in 1..{MAX_RESOLUTION} pixels"


def _intrinsic(v: float) -> str | None:
    return None if math.isfinite(v) and v >= 0 else "must be >= 0 (0 = derive from fov)"


def _camera_names(v: list[str]) -> str | None:
    bad = [n for n in v if not _NAME.match(n)]
    if bad:
        return f"names must start with a letter and hold only letters, digits and '_': {bad}"
    if len(set(v)) != len(v):
        return f"names must be unique, got {v}"
    return None


@dataclass(frozen=True)
class ParamSpec:
    """One parameter: type, default, meaning, check, and what a bad value does at start-up."""

    name: str
    kind: str
    default: Any
    description: str
    check: Callable[[Any], str | None] | None = None
    on_bad_start: str = "default"  # or "refuse"
    read_only: bool = True

    def validate(self, value: Any) -> Any:
        """The coerced value, or ConfigError naming the parameter."""
        try:
            v = _kind_value(self.kind, value)
        except ConfigError as e:
            raise ConfigError(f"parameter {self.name!r}: {e}") from None
        problem = self.check(v) if self.check is not None else None
        if problem:
            raise ConfigError(f"parameter {self.name!r} {problem}, got {value!r}")
        return v


# Per-camera parameters: at the top level for the single-camera set-up, and under
# `<camera>.` for each name in `cameras` (their defaults are the top-level values).
CAMERA_PARAMS: tuple[ParamSpec, ...] = (
    ParamSpec("camera_frame", "str", "camera_link", "TF frame of the simulated camera", _nonempty, "refuse"),
    ParamSpec("camera_frame_convention", "str", "body",
              "axes of camera_frame: 'body' (x forward, z up: the optical frame is published on /tf_static) "
              "or 'optical' (x right, y down, z forward)", _choice(CONVENTIONS), "refuse"),
    ParamSpec("optical_frame", "str", "", "optical frame name for a body camera_frame ('' = <camera_frame>_optical)",
              None, "refuse"),
    ParamSpec("width", "int", 64, "image width in pixels", _size, read_only=False),
    ParamSpec("height", "int", 64, "image height in pixels", _size, read_only=False),
    ParamSpec("fov", "float", 90.0, "horizontal field of view in degrees, used when fx is 0",
              _range(0.0, 180.0, hi_open=True), read_only=False),
    ParamSpec("fx", "float", 0.0, "focal length x in pixels (0 = from fov)", _intrinsic, read_only=False),
    ParamSpec("fy", "float", 0.0, "focal length y in pixels (0 = fx)", _intrinsic, read_only=False),
    ParamSpec("cx", "float", 0.0, "principal point x in pixels, ROS/OpenCV convention: pixel centres at integers "
              "(0 = image centre, (width - 1) / 2)", _intrinsic, read_only=False),
    ParamSpec("cy", "float", 0.0, "principal point y in pixels, ROS/OpenCV convention (0 = image centre)",
              _intrinsic, read_only=False),
    ParamSpec("camera_info_url", "str", "", "calibration file (camera_calibration YAML: file:///path, package://pkg/"
              "path or a path): its size, K, D, R, P replace width/height/fov/fx/fy/cx/cy ('' = none)", None,
              "refuse"),
    ParamSpec("exposure", "float", 1.0, "exposure relative to the render (linear light)", _range(0.0, 100.0),
              read_only=False),
    ParamSpec("gain_db", "float", 0.0, "sensor gain in dB (amplifies noise too)", _range(-40.0, 40.0, lo_open=False),
              read_only=False),
    ParamSpec("noise_stddev", "float", 0.0, "Gaussian read noise, standard deviation as a fraction of full scale",
              _range(0.0, 1.0, lo_open=False), read_only=False),
)

NODE_PARAMS: tuple[ParamSpec, ...] = (
    ParamSpec("checkpoint", "str", "", "model checkpoint directory ('' = the bundled default model)", None, "refuse"),
    ParamSpec("device", "str", "auto", "torch device: auto, cpu, cuda, cuda:1 ...", _nonempty, "refuse"),
    ParamSpec("torch_threads", "int", 0, "CPU threads for the model (0 = auto: all cores but one, "
              "which is left to DDS, TF and the executor)", lambda v: None if 0 <= v <= 1024 else "must be in 0..1024"),
    ParamSpec("world", "str", "", "world directory to load at start ('' = none)", None, "refuse"),
    ParamSpec("seed_images", "str_list", [], "image files that seed the world", None, "refuse"),
    ParamSpec("seed_poses", "float_list", [],
              "7 numbers per seed image: x y z qx qy qz qw of its camera in world_frame", None, "refuse"),
    ParamSpec("seed_fov", "float", 90.0, "horizontal field of view of the seed images in degrees",
              _range(0.0, 180.0, hi_open=True), "refuse"),
    ParamSpec("seed_pose_convention", "str", "optical", "axes of seed_poses: 'optical' (z forward) or 'body' "
              "(x forward)", _choice(CONVENTIONS), "refuse"),
    ParamSpec("world_frame", "str", "map", "fixed frame the world's poses live in", _nonempty, "refuse"),
    *CAMERA_PARAMS,
    ParamSpec("cameras", "str_list", [], "names of several cameras rendered in one batch ([] = one camera "
              "configured by the top-level parameters)", _camera_names, "refuse"),
    ParamSpec("rate", "float", 10.0, "images per second (per camera)", _range(0.0, 1000.0), read_only=False),
    ParamSpec("tf_timeout", "float", 0.1, "seconds the render thread waits for TF to reach the render time",
              _range(0.0, 10.0, lo_open=False), read_only=False),
    ParamSpec("remember_generated", "bool", True, "store rendered views that show new places in the world",
              read_only=False),
    ParamSpec("publish_depth", "bool", False, "also publish depth", read_only=False),
    ParamSpec("depth_encoding", "str", "32FC1", "depth as 32FC1 (metres, NaN = unknown) or 16UC1 (millimetres, "
              "0 = unknown)", _choice(DEPTH_ENCODINGS), read_only=False),
    ParamSpec("depth_source", "str", "checked", "checked: model depth only where a real frame saw the same surface "
              "(NaN elsewhere); model: the model's depth as rendered", _choice(DEPTH_SOURCES), read_only=False),
    ParamSpec("depth_tolerance", "float", 0.1, "relative depth agreement for depth_source checked",
              _range(0.0, 1.0), read_only=False),
    ParamSpec("publish_points", "bool", False, "also publish points (PointCloud2 XYZRGB from the published depth)",
              read_only=False),
    ParamSpec("publish_rect", "bool", False, "also publish image_rect (rendered with P) for a distorted camera",
              read_only=False),
    ParamSpec("compressed_format", "str", "jpeg", "format of image_raw/compressed: jpeg or png",
              _choice(COMPRESSED_FORMATS), read_only=False),
    ParamSpec("jpeg_quality", "int", 90, "JPEG quality of image_raw/compressed",
              lambda v: None if 1 <= v <= 100 else "must be in 1..100", read_only=False),
    ParamSpec("lazy", "bool", True, "render only while a topic of the camera has subscribers", read_only=False),
    ParamSpec("qos", "str", "reliable", "image QoS: reliable (default; large images arrive) or sensor_data "
              "(best effort: Fast DDS drops large images)", _choice(QOS_CHOICES)),
    ParamSpec("max_render_pixels", "int", MAX_RENDER_PIXELS, "largest image (width x height) rendered; larger "
              "cameras and ~/render_view requests are refused",
              lambda v: None if 64 <= v <= MAX_RESOLUTION ** 2 else f"must be in 64..{MAX_RESOLUTION ** 2}",
              read_only=False),
    ParamSpec("scratch_dir", "str", "", "directory for the working copy of a world file ('' = the system's "
              "temporary directory)", None, "refuse"),
)

SPECS: dict[str, ParamSpec] = {s.name: s for s in NODE_PARAMS}
CAMERA_SPECS: dict[str, ParamSpec] = {s.name: s for s in CAMERA_PARAMS}


def spec_for(name: str) -> ParamSpec | None:
    """The spec of a node parameter or of a per-camera one ('front.width' -> width's spec)."""
    if name in SPECS:
        return SPECS[name]
    _, _, leaf = name.rpartition(".")
    return CAMERA_SPECS.get(leaf) if "." in name else None


def declare(node: Node, spec: ParamSpec, name: str | None = None, default: Any = None) -> Any:
    """Declare one parameter and return its checked value (logs and falls back, or raises ConfigError)."""
    name = name or spec.name
    default = spec.default if default is None else default
    # Declared writable first so a bad override can be replaced by the default, then locked.
    # Empty lists carry no type: declared with a type instead (rclpy forbids dynamic typing then).
    typed = isinstance(default, list) and not default
    if typed:
        initial: Any = Parameter.Type.STRING_ARRAY if spec.kind == "str_list" else Parameter.Type.DOUBLE_ARRAY
    else:
        initial = default
    # Lists have no fallback (refused when bad), so they are declared read-only at once: an
    # uninitialised parameter cannot be given a new descriptor later.
    writable = ParameterDescriptor(description=spec.description, dynamic_typing=not typed,
                                   read_only=typed and spec.read_only)
    node.declare_parameter(name, initial, writable)
    try:
        raw = node.get_parameter(name).value
    except ParameterUninitializedException:
        raw = None
    try:
        value = ParamSpec(name, spec.kind, default, spec.description, spec.check).validate(raw)
    except ConfigError as e:
        if spec.on_bad_start == "refuse":
            raise
        node.get_logger().error(f"{e}; using the default {default!r} instead")
        if not isinstance(default, list):
            node.set_parameters([Parameter(name, value=default)])
        value = default
    if spec.read_only and not typed:
        node.set_descriptor(name, ParameterDescriptor(description=spec.description, read_only=True,
                                                      dynamic_typing=not typed))
    return value


def build_camera(values: dict[str, Any], patch: int, name: str = "") -> PinholeCamera:
    """PinholeCamera from width/height/fx/fy/cx/cy/fov values; ConfigError if the model cannot render it."""
    label = f"camera {name!r}" if name else "camera"
    w, h = values["width"], values["height"]
    if w % patch or h % patch:
        raise ConfigError(f"{label}: width and height must be multiples of {patch}, "
                          f"got {w}x{h}")
    # cx, cy are ROS/OpenCV values (pixel centres at integers); 0 = the image centre.
    cx = values["cx"] or (w - 1) / 2.0
    cy = values["cy"] or (h - 1) / 2.0
    try:
        if values["fx"] > 0:
            return camera_from_opencv(w, h, values["fx"], values["fy"] or values["fx"], cx, cy)
        cam = PinholeCamera.from_fov(w, h, values["fov"])
        return camera_from_opencv(w, h, cam.fx, cam.fy, cx, cy)
    except GeometryError as e:
        raise ConfigError(f"{label}: {e}") from None


def seed_pose_rows(seed_images: list[str], seed_poses: list[float]) -> list[list[float]]:
    """seed_poses split into one 7-number row per image; ConfigError when the counts do not match."""
    if len(seed_poses) != 7 * len(seed_images):
        raise ConfigError(f"seed_poses must hold 7 numbers (x y z qx qy qz qw) per seed image: "
                          f"{len(seed_images)} images need {7 * len(seed_images)} numbers, got {len(seed_poses)}")
    return [seed_poses[7 * i: 7 * i + 7] for i in range(len(seed_images))]
