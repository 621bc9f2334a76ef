"""One pixel convention at the edges: ROS/OpenCV K (integer pixel centres) <-> PinholeCamera.

Inside the project a pixel (u, v) covers [u, u+1) x [v, v+1) and its centre is (u + 0.5, v + 0.5),
so a centred principal point is cx = W/2. ROS CameraInfo and OpenCV (and camera_calibration's
YAML files) put pixel centres at integers, so the same camera has cx = (W - 1)/2 there. The
conversion happens here and only here: where CameraInfo messages (or calibration files) are made
or read. ROS-free, so bag writers and importers use it too.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from rtfm_ros.geometry import GeometryError, PinholeCamera

OFFSET = 0.5  # internal principal point = ROS/OpenCV principal point + OFFSET


def opencv_k(camera: PinholeCamera) -> list[float]:
    """Row-major 3x3 K as CameraInfo.k (integer pixel centres)."""
    return [camera.fx, 0.0, camera.cx - OFFSET, 0.0, camera.fy, camera.cy - OFFSET, 0.0, 0.0, 1.0]


def opencv_p(camera: PinholeCamera) -> list[float]:
    """Row-major 3x4 P = [K | 0] as CameraInfo.p for a monocular camera."""
    k = opencv_k(camera)
    return [*k[0:3], 0.0, *k[3:6], 0.0, *k[6:9], 0.0]


def camera_from_opencv(width: int, height: int, fx: float, fy: float, cx: float, cy: float) -> PinholeCamera:
    """PinholeCamera from ROS/OpenCV intrinsics (principal point with integer pixel centres)."""
    return PinholeCamera(int(width), int(height), fx, fy, cx + OFFSET, cy + OFFSET)


def camera_from_k(width: int, height: int, k: Sequence[float]) -> PinholeCamera:
    """PinholeCamera from a CameraInfo.k (row-major 3x3, ROS/OpenCV convention)."""
    k = np.asarray(k, dtype=np.float64).reshape(-1)
    if k.shape != (9,):
        raise GeometryError(f"CameraInfo k must have 9 values, got {k.shape[0]}")
    return camera_from_opencv(width, height, k[0], k[4], k[2], k[5])


def camera_from_p(width: int, height: int, p: Sequence[float]) -> PinholeCamera:
    """The rectified camera of a CameraInfo.p (row-major 3x4, ROS/OpenCV convention)."""
    p = np.asarray(p, dtype=np.float64).reshape(-1)
    if p.shape != (12,):
        raise GeometryError(f"CameraInfo p must have 12 values, got {p.shape[0]}")
    return camera_from_opencv(width, height, p[0], p[5], p[2], p[6])
