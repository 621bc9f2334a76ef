"""The camera's configuration: one table of parameter specs, checked the same way at start and at run time.

Values are checked here rather than trusted to a transport's static typing so that ``rate: 10``
(an integer) works and an absurd value gets a message naming the parameter. Each spec says what
happens to a bad value at start-up: ``"default"`` (log an error, keep running with the default)
for values with a harmless fallback (rate, resolution, intrinsics, QoS), ``"refuse"`` (the camera
does not start) where guessing would publish wrong data silently (frames, axis conventions,
seeds, model). At run time a bad value is always refused and the previous value stays.

The camera reads one frozen CameraNodeConfig built from checked values (CameraNodeConfig.from_values;
the ROS node declares them as parameters: rtfm_ros.ros.params); a run-time change builds a new one
(CameraNodeConfig.updated), so a render never sees half of a change.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields, replace
from typing import Any

from rtfm_ros.camera.sensor import DEPTH_NOISE_MODELS, DepthNoise
from rtfm_ros.camera.worker import DEPTH_SOURCES
from rtfm_ros.geometry import MAX_RESOLUTION

QOS_CHOICES = ("reliable", "sensor_data")
DEPTH_ENCODINGS = ("32FC1", "16UC1")
COMPRESSED_FORMATS = ("jpeg", "png")
MAX_RENDER_PIXELS = 1024 * 1024
CONVENTIONS = ("optical", "body")
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")


MIN_RATE_HZ = 1e-3  # one image per ~17 minutes: slower rates overflow a timer's period (1e-300 Hz)


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
    ParamSpec("stereo_of", "str", "", "name of the left camera (in cameras) this one is the right camera of: a "
              "rectified pair, same size and K, same stamps, P[0,3] = -fx * baseline from TF ('' = none)",
              lambda v: None if not v or _NAME.match(v) else "must be '' or the name of a camera", "refuse"),
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
    ParamSpec("world", "str", "", "world file (.rtfm) to load at start ('' = none; a working copy is used)",
              None, "refuse"),
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
    ParamSpec("rate", "float", 10.0, "images per second (per camera), 0.001 to 1000",
              _range(MIN_RATE_HZ, 1000.0, lo_open=False), read_only=False),
    ParamSpec("tf_timeout", "float", 0.1, "seconds the render thread waits for TF to reach the render time",
              _range(0.0, 10.0, lo_open=False), read_only=False),
    ParamSpec("tf_tolerance", "float", 0.25, "seconds TF may lag a tick: the newest pose within it is rendered "
              "and the image stamped with that pose's time (0 = always wait for TF at the tick's time)",
              _range(0.0, 10.0, lo_open=False), read_only=False),
    ParamSpec("lockstep", "bool", False, "with use_sim_time: a tick at every 1/rate of /clock, each rendered and "
              "published in order, none dropped while the backlog stays within lockstep_queue"),
    ParamSpec("lockstep_queue", "int", 32, "ticks lockstep holds while rendering (more are dropped and counted)",
              lambda v: None if 1 <= v <= 1000 else "must be in 1..1000"),
    ParamSpec("remember_generated", "bool", True, "store rendered views that show new places in the world",
              read_only=False),
    ParamSpec("publish_depth", "bool", False, "also publish depth", read_only=False),
    ParamSpec("depth_encoding", "str", "32FC1", "depth as 32FC1 (metres, NaN = unknown) or 16UC1 (millimetres, "
              "0 = unknown)", _choice(DEPTH_ENCODINGS), read_only=False),
    ParamSpec("depth_source", "str", "checked", "checked: rendered depth only where a real frame saw the same "
              "surface (NaN elsewhere); rendered: the depth as rendered", _choice(DEPTH_SOURCES), read_only=False),
    ParamSpec("depth_tolerance", "float", 0.1, "relative depth agreement for depth_source checked",
              _range(0.0, 1.0), read_only=False),
    ParamSpec("depth_noise", "str", "none", "depth noise model: none, or stereo (disparity noise and sub-pixel "
              "steps of a stereo depth camera)", _choice(DEPTH_NOISE_MODELS), read_only=False),
    ParamSpec("depth_noise_baseline", "float", 0.05, "baseline in metres of the simulated stereo depth camera",
              _range(0.0, 10.0), read_only=False),
    ParamSpec("depth_noise_disparity_stddev", "float", 0.08, "disparity noise (pixels, standard deviation) of "
              "depth_noise stereo", _range(0.0, 10.0, lo_open=False), read_only=False),
    ParamSpec("depth_noise_subpixel", "float", 0.125, "disparity step in pixels of depth_noise stereo (0 = none)",
              _range(0.0, 10.0, lo_open=False), read_only=False),
    ParamSpec("depth_edge_dropout", "float", 0.0, "drop depth beside edges whose depth jumps by more than this "
              "share, and in the stereo occlusion shadow (0 = off)", _range(0.0, 10.0, lo_open=False),
              read_only=False),
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


@dataclass(frozen=True)
class CameraParams:
    """One camera's parameters (CAMERA_PARAMS); name '' for the top-level (single-camera) set."""

    name: str
    camera_frame: str
    camera_frame_convention: str
    optical_frame: str
    width: int
    height: int
    fov: float
    fx: float
    fy: float
    cx: float
    cy: float
    camera_info_url: str
    stereo_of: str
    exposure: float
    gain_db: float
    noise_stddev: float

    def label(self, leaf: str) -> str:
        """The parameter name of one field ('front.width', or 'width' for the top-level set)."""
        return f"{self.name}.{leaf}" if self.name else leaf


@dataclass(frozen=True)
class CameraNodeConfig:
    """Every parameter of the node, checked; replaced as a whole when a parameter changes."""

    checkpoint: str
    device: str
    torch_threads: int
    world: str
    seed_images: tuple[str, ...]
    seed_poses: tuple[float, ...]
    seed_fov: float
    seed_pose_convention: str
    world_frame: str
    rate: float
    tf_timeout: float
    tf_tolerance: float
    lockstep: bool
    lockstep_queue: int
    remember_generated: bool
    publish_depth: bool
    depth_encoding: str
    depth_source: str
    depth_tolerance: float
    depth_noise: str
    depth_noise_baseline: float
    depth_noise_disparity_stddev: float
    depth_noise_subpixel: float
    depth_edge_dropout: float
    publish_points: bool
    publish_rect: bool
    compressed_format: str
    jpeg_quality: int
    lazy: bool
    qos: str
    max_render_pixels: int
    scratch_dir: str
    top: CameraParams                       # the top-level camera parameters (defaults of the others)
    named: tuple[CameraParams, ...] = ()    # one per name in `cameras`

    def __post_init__(self) -> None:
        if len(self.seed_poses) != 7 * len(self.seed_images):
            raise ConfigError(f"seed_poses must hold 7 numbers (x y z qx qy qz qw) per seed image: "
                              f"{len(self.seed_images)} images need {7 * len(self.seed_images)} numbers, "
                              f"got {len(self.seed_poses)}")

    @property
    def cameras(self) -> tuple[CameraParams, ...]:
        """The cameras rendered: the named ones, else the top-level one."""
        return self.named or (self.top,)

    @property
    def depth_noise_model(self) -> DepthNoise:
        """What the depth camera does to published depth (off by default)."""
        return DepthNoise(self.depth_noise, self.depth_noise_baseline, self.depth_noise_disparity_stddev,
                          self.depth_noise_subpixel, self.depth_edge_dropout)

    @property
    def seed_pose_rows(self) -> list[tuple[float, ...]]:
        """seed_poses split into one 7-number row per seed image."""
        return [self.seed_poses[7 * i: 7 * i + 7] for i in range(len(self.seed_images))]

    @property
    def frame(self) -> str:
        """world_frame as a TF frame id (no leading '/')."""
        return self.world_frame.lstrip("/")

    @classmethod
    def from_values(cls, values: Mapping[str, Any],
                    named: Mapping[str, Mapping[str, Any]] | None = None) -> CameraNodeConfig:
        """A config from checked values (node and top-level camera ones, and each named camera's)."""
        named = named or {}
        top = CameraParams("", **{k: values[k] for k in CAMERA_SPECS})
        own: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()
                               if k in _NODE_FIELDS}
        return cls(**own, top=top, named=tuple(CameraParams(n, **dict(v)) for n, v in named.items()))

    def updated(self, changes: Mapping[str, Any]) -> CameraNodeConfig:
        """A new config with changes (parameter name -> raw value) checked and applied; ConfigError."""
        own: dict[str, Any] = {}
        top: dict[str, Any] = {}
        named: dict[str, dict[str, Any]] = {c.name: {} for c in self.named}
        for name, raw in changes.items():
            spec = spec_for(name)
            if spec is None:
                continue  # not one of ours (use_sim_time, ...)
            value = spec.validate(raw)
            cam, _, leaf = name.rpartition(".")
            if cam:
                if cam not in named:
                    raise ConfigError(f"parameter {name!r}: no camera named {cam!r}")
                named[cam][leaf] = value
            elif leaf in CAMERA_SPECS:
                top[leaf] = value
            elif leaf in _NODE_FIELDS:
                own[leaf] = tuple(value) if isinstance(value, list) else value
            else:
                raise ConfigError(f"parameter {name!r} cannot change while the node runs")
        return replace(self, **own, top=replace(self.top, **top),
                       named=tuple(replace(c, **named[c.name]) for c in self.named))


_NODE_FIELDS = frozenset(f.name for f in fields(CameraNodeConfig)) - {"top", "named"}
assert _NODE_FIELDS | set(CAMERA_SPECS) | {"cameras"} == set(SPECS), "CameraNodeConfig must match NODE_PARAMS"
assert {f.name for f in fields(CameraParams)} - {"name"} == set(CAMERA_SPECS), "CameraParams must match CAMERA_PARAMS"
