"""One posed frame of the world memory, and the checks every stored frame passes."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from rtfm_ros.geometry import PinholeCamera, validate_pose

SOURCES: tuple[str, ...] = ("seed", "observed", "generated")


class FrameError(ValueError):
    """A frame (pixels, depth, pose, camera, stamp or source) that cannot be stored."""


@dataclass(eq=False)
class Frame:
    """A posed RGB(-D) frame. Arrays are read-only views of what the memory holds (what a
    network derives from it, depth and pyramid, is cached by the network: rtfm_ros.render.cache)."""

    id: int
    rgb: np.ndarray                 # H x W x 3 uint8
    T_world_camera: np.ndarray      # 4 x 4 float64, optical axes
    camera: PinholeCamera
    stamp: float                    # seconds
    source: str                     # one of SOURCES
    depth: np.ndarray | None = None  # H x W float32 metres (NaN = unknown)


def readonly(a: np.ndarray) -> np.ndarray:
    a.setflags(write=False)
    return a


def check_frame(rgb: Any, T_world_camera: Any, camera: Any, stamp: Any, source: Any,
                depth: Any = None) -> tuple[np.ndarray, np.ndarray, float, np.ndarray | None]:
    """Validated, owned copies (rgb uint8, pose float64, stamp, depth float32 or None).

    Raises FrameError (or GeometryError for the pose) naming the problem; nothing is stored
    by the caller until every field has passed.
    """
    if not isinstance(camera, PinholeCamera):
        raise FrameError(f"camera must be a PinholeCamera, got {type(camera).__name__}")
    if not isinstance(rgb, np.ndarray) or rgb.dtype != np.uint8:
        kind = rgb.dtype if isinstance(rgb, np.ndarray) else type(rgb).__name__
        raise FrameError(f"rgb must be a uint8 numpy array, got {kind}")
    if rgb.shape != (camera.height, camera.width, 3):
        raise FrameError(f"rgb shape {rgb.shape} does not match the camera "
                         f"({camera.height}, {camera.width}, 3)")
    T = validate_pose(T_world_camera, "T_world_camera").copy()
    try:
        stamp_f = float(stamp)
    except (TypeError, ValueError):
        raise FrameError(f"stamp must be a number of seconds, got {stamp!r}") from None
    if not math.isfinite(stamp_f):
        raise FrameError(f"stamp must be finite, got {stamp_f}")
    if source not in SOURCES:
        raise FrameError(f"source must be one of {SOURCES}, got {source!r}")
    depth_out = None
    if depth is not None:
        if not isinstance(depth, np.ndarray) or not np.issubdtype(depth.dtype, np.floating):
            kind = depth.dtype if isinstance(depth, np.ndarray) else type(depth).__name__
            raise FrameError(f"depth must be a float numpy array in metres, got {kind}")
        if depth.shape != (camera.height, camera.width):
            raise FrameError(f"depth shape {depth.shape} does not match the camera "
                             f"({camera.height}, {camera.width})")
        depth_out = depth.astype(np.float32, copy=True)
        with np.errstate(invalid="ignore"):
            if np.any(depth_out < 0):
                raise FrameError("depth has negative values (use NaN for unknown depth)")
    return np.array(rgb, copy=True), T, stamp_f, depth_out
