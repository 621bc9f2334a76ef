"""Fisheye lenses: the `equidistant` model (ROS camera_calibration, OpenCV's cv::fisheye) and the
ideal pinhole views that cover a field of view up to 180 degrees.

The equidistant model maps a ray at angle theta from the optical axis to the distorted radius
theta_d = theta (1 + k1 theta^2 + k2 theta^4 + k3 theta^6 + k4 theta^8) in normalised image
coordinates, so rays at 90 degrees and beyond still land in the image, where no single pinhole
view reaches. A fisheye whose rays stay within FACE_LIMIT_DEG of the axis is rendered like a
plumb_bob lens (one wider pinhole view, camera/lens.py); a wider one from up to five faces of a
cube round the camera (front, left, right, up, down), each pixel sampled from the face its ray
points at most directly. ROS-free (numpy).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from rtfm_ros.geometry import PinholeCamera

FACE_LIMIT_DEG = 60.0   # rays within this of the axis: one pinhole view; wider: cube faces
MAX_THETA_DEG = 90.0    # a field of view up to 180 degrees (rays behind the camera are left black)
_ITERATIONS = 20
_RESIDUAL = 1e-6        # radians: a pixel whose theta does not solve the model this well has no ray
_MARGIN_PX = 2          # each face reaches this far past its 90-degree square, for bilinear taps

# Face -> camera rotations (optical axes: x right, y down, z forward); columns are the face's axes.
FACE_ROTATIONS: dict[str, np.ndarray] = {
    "front": np.eye(3),
    "right": np.array([[0.0, 0.0, 1.0], [0.0, 1.0, 0.0], [-1.0, 0.0, 0.0]]),
    "left": np.array([[0.0, 0.0, -1.0], [0.0, 1.0, 0.0], [1.0, 0.0, 0.0]]),
    "down": np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]]),
    "up": np.array([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]]),
}


def equidistant_theta(theta_d: np.ndarray, k: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """(theta, solved) for distorted radii theta_d: Newton's method as cv::fisheye::undistortPoints."""
    k1, k2, k3, k4 = (float(x) for x in k)
    theta = np.array(theta_d, dtype=np.float64)
    for _ in range(_ITERATIONS):
        t2 = theta * theta
        f = theta * (1 + t2 * (k1 + t2 * (k2 + t2 * (k3 + t2 * k4)))) - theta_d
        df = 1 + t2 * (3 * k1 + t2 * (5 * k2 + t2 * (7 * k3 + t2 * 9 * k4)))
        theta = theta - f / np.where(np.abs(df) > 1e-12, df, 1e-12)
    t2 = theta * theta
    residual = np.abs(theta * (1 + t2 * (k1 + t2 * (k2 + t2 * (k3 + t2 * k4)))) - theta_d)
    slope = 1 + t2 * (3 * k1 + t2 * (5 * k2 + t2 * (7 * k3 + t2 * 9 * k4)))
    solved = np.isfinite(theta) & (residual < _RESIDUAL) & (theta >= 0) & (slope > 0)
    return theta, solved


def equidistant_project(directions: np.ndarray, camera: PinholeCamera, k: Sequence[float]) -> np.ndarray:
    """Nx3 ray directions -> Nx2 pixel coordinates (project convention: pixel centres at +0.5)."""
    d = np.asarray(directions, dtype=np.float64)
    r = np.hypot(d[:, 0], d[:, 1])
    theta = np.arctan2(r, d[:, 2])
    t2 = theta * theta
    k1, k2, k3, k4 = (float(x) for x in k)
    theta_d = theta * (1 + t2 * (k1 + t2 * (k2 + t2 * (k3 + t2 * k4))))
    scale = np.where(r > 1e-12, theta_d / np.maximum(r, 1e-12), 1.0)
    return np.stack([camera.fx * d[:, 0] * scale + camera.cx, camera.fy * d[:, 1] * scale + camera.cy], -1)


def equidistant_rays(camera: PinholeCamera, k: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """(HxWx3 unit ray of each pixel centre, HxW whether it has one within MAX_THETA_DEG)."""
    u, v = np.meshgrid(np.arange(camera.width) + 0.5, np.arange(camera.height) + 0.5)
    xd, yd = (u - camera.cx) / camera.fx, (v - camera.cy) / camera.fy
    theta_d = np.hypot(xd, yd)
    theta, solved = equidistant_theta(theta_d, k)
    valid = solved & (theta <= math.radians(MAX_THETA_DEG) + 1e-9)
    s = np.where(theta_d > 1e-12, np.sin(theta) / np.maximum(theta_d, 1e-12), 1.0)
    rays = np.stack([xd * s, yd * s, np.cos(theta)], -1)
    return np.where(valid[..., None], rays, np.nan), valid


@dataclass(frozen=True)
class IdealView:
    """One pinhole view the model renders for a lens: its rotation in the camera and intrinsics."""

    R: np.ndarray            # 3x3 face -> camera (identity for a lens rendered from one view)
    camera: PinholeCamera


def cube_faces(rays: np.ndarray, valid: np.ndarray, focal: float,
               max_pixels: int) -> tuple[list[IdealView], np.ndarray, list[np.ndarray]]:
    """The cube faces a wide lens needs: (views, HxW index of the view each pixel samples (-1:
    none), HxWx2 normalised face coordinates of each pixel in each view (NaN where not its view)).

    Faces keep the lens's angular resolution at its centre (``focal`` pixels per radian) within
    max_pixels in all.
    """
    names = list(FACE_ROTATIONS)
    axes = np.stack([FACE_ROTATIONS[n][:, 2] for n in names])  # face z axes in the camera
    d = np.nan_to_num(rays)
    owner = np.where(valid, np.argmax(d @ axes.T, axis=-1), -1)
    used = [i for i in range(len(names)) if np.any(owner == i)]
    size = 2 * focal + 2 * _MARGIN_PX
    if len(used) * size * size > max_pixels:
        focal = (math.sqrt(max_pixels / len(used)) - 2 * _MARGIN_PX) / 2
    n = max(1, int(math.ceil(2 * focal + 2 * _MARGIN_PX)))
    views, coords, index = [], [], np.full(valid.shape, -1)
    for j, i in enumerate(used):
        R = FACE_ROTATIONS[names[i]]
        views.append(IdealView(R, PinholeCamera(n, n, focal, focal, n / 2.0, n / 2.0)))
        p = d @ R  # the rays in the face's axes (R^T d, per pixel)
        mine = owner == i
        with np.errstate(divide="ignore", invalid="ignore"):
            xy = p[..., :2] / p[..., 2:3]
        coords.append(np.where(mine[..., None], xy, np.nan))
        index[mine] = j
    return views, index, coords
