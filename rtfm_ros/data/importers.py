"""Real posed images -> clips: ROS 2 bags (rosbags) and nerfstudio / instant-ngp transforms.json.

Bags (data.bag_import): images (sensor_msgs Image rgb8/bgr8/mono8/rgba8/bgra8, or
CompressedImage jpeg/png), intrinsics from CameraInfo (k, width, height; the message closest in
time to each image), and the pose of the camera frame in a world frame from /tf + /tf_static,
looked up at each image's stamp with rtfm_ros.tf_buffer (tf2 semantics, interpolating). The camera frame defaults to the
images' header.frame_id and must carry REP-103 optical axes (``*_optical_frame``); the world
frame defaults to the root of the camera's TF tree.

transforms.json: camera-to-world matrices in the OpenGL/NeRF convention (converted with
geometry.opengl_to_optical), fl_x/fl_y/cx/cy or camera_angle_x[/y], w/h, any of them
overridable per frame.

Depth that comes with the images (a transforms.json's ``depth_file_path``, a bag's depth topic
registered to the colour camera) is read into the clip: rtfm_ros.data.depth_maps.

Lens distortion (CameraInfo d, k1/k2/p1/p2) is not undone: it is recorded in the clip's meta.
``res`` makes every frame a res x res square: centre-crop to a square (shifting cx/cy), then
resize (intrinsics scaled with PinholeCamera.scaled), so pixels stay square.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rtfm_ros.data import data_subparsers
from rtfm_ros.data.bag_import import import_bag
from rtfm_ros.data.clips import Clip
from rtfm_ros.data.depth_maps import DEFAULT_DEPTH_SCALE, DepthMapError, crop_square, load_depth_file, match_image
from rtfm_ros.data.import_common import ImportDataError, assemble, fit_image
from rtfm_ros.geometry import POSE_REPAIR_TOL, PinholeCamera, opengl_to_optical, repair_rotation
from rtfm_ros.options import add_options, from_options, setting
from rtfm_ros.photo import PhotoError, load_photo, read_photo

__all__ = ["ImportDataError", "ImportOptions", "fit_image", "import_any", "import_bag", "import_transforms_json",
           "parse_transforms", "transforms_frames"]

_log = logging.getLogger(__name__)

MAX_TRANSFORMS_BYTES = 16 << 20  # a transforms.json of 100k frames is ~50 MB; 16 MiB holds ~30k


def _number(spec: dict[str, Any], key: str, where: str) -> float:
    """A finite number from a transforms.json field (a bool, string or list is refused, not coerced)."""
    v = spec[key]
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise ImportDataError(f"{where}: {key} must be a number, got {json.dumps(v)[:40]}")
    try:
        f = float(v)
    except OverflowError:
        f = float("inf")
    if not np.isfinite(f):
        raise ImportDataError(f"{where}: {key} must be finite, got {json.dumps(v)[:40]}")
    return f


def _side(spec: dict[str, Any], key: str, default: int, where: str) -> int:
    if key not in spec:
        return default
    v = _number(spec, key, where)
    if v != int(v):
        raise ImportDataError(f"{where}: {key} must be a whole number of pixels, got {v:g}")
    return int(v)


def _focal(spec: dict[str, Any], angle: str, size: int, where: str) -> float:
    """A focal length in pixels from a field-of-view angle in radians, which must be in (0, pi)."""
    a = _number(spec, angle, where)
    if not 0.0 < a < np.pi:
        raise ImportDataError(f"{where}: {angle} must be an angle in (0, pi) radians, got {a:g}")
    return float(0.5 * size / np.tan(0.5 * a))


def _intrinsics(spec: dict[str, Any], image_size: tuple[int, int], where: str) -> PinholeCamera:
    w = _side(spec, "w", image_size[0], where)
    h = _side(spec, "h", image_size[1], where)
    if "fl_x" in spec:
        fx = _number(spec, "fl_x", where)
    elif "camera_angle_x" in spec:
        fx = _focal(spec, "camera_angle_x", w, where)
    else:
        raise ImportDataError(f"{where}: no focal length (fl_x or camera_angle_x)")
    if "fl_y" in spec:
        fy = _number(spec, "fl_y", where)
    elif "camera_angle_y" in spec and "fl_x" not in spec:
        fy = _focal(spec, "camera_angle_y", h, where)
    else:
        fy = fx
    cx = _number(spec, "cx", where) if "cx" in spec else w / 2
    cy = _number(spec, "cy", where) if "cy" in spec else h / 2
    return PinholeCamera(w, h, fx, fy, cx, cy)


def parse_transforms(data: bytes, where: str) -> Any:
    """A transforms.json's bytes parsed; anything that is not JSON (deeply nested, a 5000-digit
    number, not UTF-8) is an ImportDataError naming ``where``."""
    try:
        return json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:  # JSONDecodeError is a ValueError
        raise ImportDataError(f"{where} is not valid JSON: {str(exc)[:200]}") from None


def transforms_frames(spec: Any, load_image: Callable[[str], np.ndarray], where: str, *, res: int | None = None,
                      max_frames: int | None = None) -> list[tuple[float, np.ndarray, np.ndarray, PinholeCamera]]:
    """(time, rgb, optical T_world_camera, camera) per frame of parsed transforms.json ``spec``.

    Images come from ``load_image(file_path)`` (HxWx3 uint8), so a folder on disk and photos
    uploaded to ``rtfm serve`` share this one parser.
    """
    if not isinstance(spec, dict) or not isinstance(spec.get("frames"), list) or not spec["frames"]:
        raise ImportDataError(f"{where} has no 'frames' list")
    frames = []
    repaired = 0
    for i, fr in enumerate(spec["frames"][: max_frames or None]):
        at = f"{where} frame {i}"
        if not isinstance(fr, dict) or "file_path" not in fr or "transform_matrix" not in fr:
            raise ImportDataError(f"{at}: needs file_path and transform_matrix")
        try:
            rgb = load_image(str(fr["file_path"]))
        except PhotoError as exc:
            raise ImportDataError(f"{at}: {exc}") from None
        try:
            camera = _intrinsics({**spec, **fr}, (rgb.shape[1], rgb.shape[0]), at)
        except ImportDataError:
            raise
        except ValueError as exc:
            raise ImportDataError(f"{at}: bad intrinsics: {exc}") from None
        if (camera.width, camera.height) != (rgb.shape[1], rgb.shape[0]):
            raise ImportDataError(f"{at}: image is {rgb.shape[1]}x{rgb.shape[0]}, "
                                  f"w/h say {camera.width}x{camera.height}")
        try:
            pose, fixed = repair_rotation(np.asarray(fr["transform_matrix"], dtype=np.float64), at)
            T = opengl_to_optical(pose)
            repaired += fixed
        except (TypeError, ValueError, OverflowError) as exc:  # a dict, strings, ragged rows, 1e400
            raise ImportDataError(f"{at}: bad transform_matrix: {str(exc)[:200]}") from None
        rgb, camera = fit_image(rgb, camera, res)
        frames.append((float(fr.get("time", i)), rgb, T, camera))
    if repaired:
        _log.warning("%s: %d of %d rotations were re-orthonormalised (within %g of a rotation, as files "
                     "rounded to a few decimals are)", where, repaired, len(frames), POSE_REPAIR_TOL)
    return frames


def import_transforms_json(path: str | Path, *, res: int | None = None, max_frames: int | None = None,
                           no_depth: bool = False) -> Clip:
    """One clip from a transforms.json (or the folder holding it), frames in file order, with the
    depth maps its frames name (``depth_file_path``; none with ``no_depth``)."""
    path = Path(path)
    file = path / "transforms.json" if path.is_dir() else path
    try:
        spec = parse_transforms(read_photo(file, MAX_TRANSFORMS_BYTES), str(file))
    except PhotoError as exc:
        raise ImportDataError(str(exc)) from None
    sizes: list[tuple[int, int]] = []  # each image's size before fit_image

    def load_image(file_path: str) -> np.ndarray:
        rgb = load_photo(image_path(file, file_path))
        sizes.append((rgb.shape[1], rgb.shape[0]))
        return rgb

    frames = transforms_frames(spec, load_image, str(file), res=res, max_frames=max_frames)
    def load_depth(depth_path: str, scale: float) -> np.ndarray:
        return load_depth_file(file.parent / depth_path, scale)

    depths = [None if no_depth else frame_depth(spec, fr, size, load_depth, f"{file} frame {i}", res=res)
              for i, (fr, size) in enumerate(zip(spec["frames"], sizes))]
    dist = {k: spec[k] for k in ("k1", "k2", "k3", "k4", "p1", "p2") if k in spec}
    meta = {"source": "transforms.json", "path": str(file), "distortion_ignored": dist or None,
            "files": [fr["file_path"] for fr in spec["frames"][: len(frames)]],
            "depth_files": sum(d is not None for d in depths)}
    return assemble(frames, meta, depths)


def frame_depth(spec: dict[str, Any], frame: dict[str, Any], size: tuple[int, int],
                load_depth: Callable[[str, float], np.ndarray], where: str, *, res: int | None = None
                ) -> np.ndarray | None:
    """A transforms.json frame's depth map (its ``depth_file_path``, scaled by
    ``depth_unit_scale_factor``) at its image's ``size`` (before fit_image) after fit_image, or
    None when it names none. ``load_depth(depth_file_path, scale)`` reads it (load_depth_file
    for a folder on disk, depth_maps.decode_depth for an upload): one parser for both."""
    if "depth_file_path" not in frame:
        return None
    both = {**spec, **frame}
    key = "depth_unit_scale_factor"
    scale = _number(both, key, where) if key in both else DEFAULT_DEPTH_SCALE
    try:
        depth = load_depth(str(frame["depth_file_path"]), scale)
        return crop_square(match_image(depth, size[0], size[1], where), res)
    except DepthMapError as exc:
        raise ImportDataError(f"{where}: {exc}") from None


def image_path(transforms_file: Path, file_path: str) -> Path:
    """Where a transforms.json's ``file_path`` points (NeRF-synthetic paths omit the ".png")."""
    img_path = transforms_file.parent / file_path
    if not img_path.suffix and not os.path.lexists(img_path):
        img_path = img_path.with_suffix(".png")
    return img_path


@dataclass(frozen=True)
class ImportOptions:
    """How a bag or transforms.json folder becomes a clip (`rtfm data import`: one option per field)."""

    image_topic: str | None = setting(None, "Image or CompressedImage topic; default: the only one")
    camera_frame: str | None = setting(None, "TF frame of the camera (optical axes); default: images' frame_id")
    world_frame: str | None = setting(None, "TF world frame; default: root of the camera's TF tree")
    res: int | None = setting(None, "centre-crop to square and resize to RES x RES")
    max_frames: int | None = setting(None, "import at most this many frames")
    depth_topic: str | None = setting(None, "depth Image topic registered to the images (16UC1 mm or 32FC1 m); "
                                            "default: the only one in the images' frame, if any")
    no_depth: bool = setting(False, "ignore depth maps (a bag's depth topic, transforms.json depth_file_path)")

    def __post_init__(self) -> None:
        for name in ("res", "max_frames"):
            v = getattr(self, name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
                raise ImportDataError(f"--{name.replace('_', '-')} must be a positive integer, got {v!r}")


def import_any(path: str | Path, options: ImportOptions | None = None) -> Clip:
    """Dispatch on the input: a transforms.json (or folder with one) or a ROS 2 bag."""
    path = Path(path)
    o = options or ImportOptions()
    if path.suffix == ".json" or (path.is_dir() and (path / "transforms.json").is_file()):
        bag_only = [k for k in ("image_topic", "camera_frame", "world_frame", "depth_topic")
                    if getattr(o, k) is not None]
        if bag_only:
            raise ImportDataError(f"{', '.join(bag_only)} only apply to bags, not to {path}")
        return import_transforms_json(path, res=o.res, max_frames=o.max_frames, no_depth=o.no_depth)
    return import_bag(path, image_topic=o.image_topic, camera_frame=o.camera_frame, world_frame=o.world_frame,
                      res=o.res, max_frames=o.max_frames, depth_topic=o.depth_topic, no_depth=o.no_depth)


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register `rtfm data import IN --out DIR`."""
    p = data_subparsers(sub).add_parser("import", help="import a ROS 2 bag or transforms.json folder as a clip dataset")
    p.add_argument("input", help="bag (folder, .mcap, .db3) or transforms.json / its folder")
    p.add_argument("--out", required=True, help="output dataset directory")
    add_options(p, ImportOptions)
    p.add_argument("--overwrite", action="store_true", help="replace a dataset already in --out")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from rtfm_ros.data.clips import write_dataset

    clip = import_any(args.input, from_options(ImportOptions, args))
    out = write_dataset(args.out, [clip], info={"importer": clip.meta["source"], "input": str(args.input)},
                        overwrite=args.overwrite)
    h, w = clip.resolution
    depth = "" if clip.depth is None else f", {int(np.isfinite(clip.depth).any(axis=(1, 2)).sum())} with depth"
    print(f"imported {len(clip)} frames ({w}x{h}{depth}) from {args.input} into {out}")
    return 0
