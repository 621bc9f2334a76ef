"""A real camera's calibration and lens: camera_calibration YAML files, plumb_bob /
rational_polynomial / equidistant (fisheye).

The model renders ideal pinhole views. A distorted camera is rendered as an undistorted view at
a slightly larger field (covering every ray the lens sees), then remapped per output pixel:
each pixel's ray is found by inverting the published distortion D (OpenCV's iteration), and the
ideal view is sampled there. A fisheye wider than one pinhole view can hold (up to 180 degrees)
is rendered from several views, the faces of a cube round the camera (camera/fisheye.py). So the
published image matches the published K and D, as the images of a real camera do. ROS-free
(numpy + torch).
"""

from __future__ import annotations

import functools
import math
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import numpy as np
import torch
import torch.nn.functional as F

from rtfm_ros.camera.fisheye import FACE_LIMIT_DEG, IdealView, cube_faces, equidistant_rays
from rtfm_ros.geometry import PinholeCamera, camera_from_k, camera_from_p

MODELS = {"plumb_bob": 5, "rational_polynomial": 8, "equidistant": 4}
_ITERATIONS = 20
_RESIDUAL_PX = 0.05  # output pixels whose ray does not round-trip this well are outside the lens


class CalibrationError(ValueError):
    """A calibration file or distortion that cannot be used."""


@dataclass(frozen=True)
class Calibration:
    """What a camera_calibration YAML holds (K, R, P in ROS/OpenCV convention)."""

    width: int
    height: int
    k: tuple[float, ...]
    d: tuple[float, ...]
    distortion_model: str
    r: tuple[float, ...]
    p: tuple[float, ...]
    camera_name: str = ""

    @property
    def camera(self) -> PinholeCamera:
        """The sensor's intrinsics (K) in the project's convention."""
        return camera_from_k(self.width, self.height, self.k)

    @property
    def rect_camera(self) -> PinholeCamera:
        """The rectified camera (P), what image_rect is rendered with."""
        return camera_from_p(self.width, self.height, self.p)


_SUBSTITUTION = re.compile(r"\$\{([^}]*)\}")


def expand_url(url: str, camera_name: str = "") -> str:
    """camera_info_manager's substitutions: ${NAME} (the camera's name) and ${ROS_HOME}
    ($ROS_HOME, else ~/.ros); any other ${...} is refused rather than left in a path."""
    def sub(m: re.Match[str]) -> str:
        key = m.group(1)
        if key == "NAME":
            if not camera_name:
                raise CalibrationError(f"camera_info_url {url!r} uses ${{NAME}} but the camera has no name")
            return camera_name
        if key == "ROS_HOME":
            return os.environ.get("ROS_HOME") or os.path.join(os.path.expanduser("~"), ".ros")
        raise CalibrationError(f"camera_info_url {url!r}: unknown substitution ${{{key}}} "
                               "(camera_info_manager knows ${NAME} and ${ROS_HOME})")
    return _SUBSTITUTION.sub(sub, url)


def resolve_url(url: str, camera_name: str = "") -> Path:
    """camera_info_manager URLs: file:///abs/path, package://pkg/rel/path, or a plain path, after
    expand_url's substitutions."""
    url = expand_url(url, camera_name)
    parsed = urlparse(url)
    if parsed.scheme in ("", "file"):
        return Path(os.path.expanduser(unquote(parsed.path if parsed.scheme else url)))
    if parsed.scheme == "package":
        try:
            from ament_index_python.packages import get_package_share_directory
            return Path(get_package_share_directory(parsed.netloc)) / unquote(parsed.path).lstrip("/")
        except Exception as e:  # noqa: BLE001 - no ament index (pip set-up) or an unknown package
            raise CalibrationError(f"cannot resolve {url!r}: {e}") from None
    raise CalibrationError(f"camera_info_url {url!r}: only file://, package:// or a path are supported")


def _numbers(data: list[Any], key: str) -> tuple[float, ...]:
    """Finite numbers, as YAML gives them: a nested list, a bool or a word is refused, not coerced.
    A string that spells a number is one (YAML 1.1 reads 1e-05, without a dot, as a string)."""
    try:
        if any(isinstance(x, bool) or not isinstance(x, (int, float, str)) for x in data):
            raise ValueError
        values = tuple(float(x) for x in data)
    except ValueError:
        raise CalibrationError(f"{key} must hold numbers, got {str(data)[:80]}") from None
    if not all(math.isfinite(x) for x in values):
        raise CalibrationError(f"{key} holds non-finite values")
    return values


def _matrix(doc: dict[str, Any], key: str, rows: int, cols: int) -> tuple[float, ...]:
    entry = doc.get(key)
    data = entry.get("data") if isinstance(entry, dict) else None
    if not isinstance(data, list) or len(data) != rows * cols:
        raise CalibrationError(f"{key} must be a {rows}x{cols} matrix with 'data' of {rows * cols} numbers")
    return _numbers(data, key)


def _size(doc: dict[str, Any], key: str) -> int:
    v = doc.get(key)
    if isinstance(v, bool) or not isinstance(v, int):
        raise CalibrationError(f"{key} must be a whole number of pixels, got {str(v)[:40]}")
    return v


def read_calibration(url: str, camera_name: str = "") -> Calibration:
    """Parse a camera_calibration_parsers YAML (the format `camera_calibration` writes);
    ``camera_name`` fills ${NAME} in the URL."""
    import yaml

    path = resolve_url(url, camera_name)
    if not path.is_file():
        raise CalibrationError(f"calibration file {path} does not exist or is not a regular file")
    try:
        doc = yaml.safe_load(path.read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
        raise CalibrationError(f"cannot read calibration {path}: {e}") from None
    if not isinstance(doc, dict):
        raise CalibrationError(f"calibration {path} is not a YAML mapping")
    try:
        w, h = _size(doc, "image_width"), _size(doc, "image_height")
        model = doc.get("distortion_model", "plumb_bob")
        if not isinstance(model, str):
            raise CalibrationError(f"distortion_model must be a name, got {str(model)[:40]}")
        dist = doc.get("distortion_coefficients", {"data": []})
        data = dist.get("data") if isinstance(dist, dict) else None
        d = _numbers(data if isinstance(data, list) else [], "distortion_coefficients")
        k = _matrix(doc, "camera_matrix", 3, 3)
        r = _matrix(doc, "rectification_matrix", 3, 3) if "rectification_matrix" in doc else tuple(np.eye(3).flat)
        p = _matrix(doc, "projection_matrix", 3, 4) if "projection_matrix" in doc else (*k[:3], 0.0, *k[3:6], 0.0,
                                                                                         *k[6:], 0.0)
        cal = Calibration(w, h, k, d, model, r, p, str(doc.get("camera_name", "")))
        check_distortion(model, d)
        _ = (cal.camera, cal.rect_camera)  # both must be valid cameras
    except CalibrationError as e:
        raise CalibrationError(f"calibration {path}: {e}") from None
    except ValueError as e:
        raise CalibrationError(f"calibration {path}: {e}") from None
    return cal


def check_distortion(model: str, d: Sequence[float]) -> tuple[float, ...]:
    """D padded to 8 coefficients (k1 k2 p1 p2 k3 k4 k5 k6; equidistant: k1 k2 k3 k4 first);
    CalibrationError for other models."""
    if model not in MODELS:
        raise CalibrationError(f"distortion model {model!r} is not rendered; use one of {', '.join(MODELS)}")
    d = tuple(float(x) for x in d)
    if len(d) > MODELS[model] or (model == "rational_polynomial" and 5 < len(d) < 8):
        raise CalibrationError(f"{model} takes {MODELS[model]} coefficients, got {len(d)}")
    return d + (0.0,) * (8 - len(d))


def distort(x: np.ndarray, y: np.ndarray, d8: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """OpenCV's lens model on normalised ideal coordinates -> distorted ones."""
    k1, k2, p1, p2, k3, k4, k5, k6 = d8
    r2 = x * x + y * y
    radial = (1 + r2 * (k1 + r2 * (k2 + r2 * k3))) / (1 + r2 * (k4 + r2 * (k5 + r2 * k6)))
    return (x * radial + 2 * p1 * x * y + p2 * (r2 + 2 * x * x),
            y * radial + p1 * (r2 + 2 * y * y) + 2 * p2 * x * y)


def undistort(xd: np.ndarray, yd: np.ndarray, d8: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """Inverse of distort by OpenCV's fixed-point iteration (cv::undistortPoints)."""
    k1, k2, p1, p2, k3, k4, k5, k6 = d8
    x, y = xd.copy(), yd.copy()
    for _ in range(_ITERATIONS):
        r2 = x * x + y * y
        icdist = (1 + r2 * (k4 + r2 * (k5 + r2 * k6))) / (1 + r2 * (k1 + r2 * (k2 + r2 * k3)))
        dx = 2 * p1 * x * y + p2 * (r2 + 2 * x * x)
        dy = p1 * (r2 + 2 * y * y) + 2 * p2 * x * y
        x, y = (xd - dx) * icdist, (yd - dy) * icdist
    return x, y


class Lens:
    """Per-pixel rays of an output camera (K, D) and the ideal views that cover them.

    ``rays`` are normalised (x/z, y/z), NaN where a pixel has no ray in front of the camera;
    ``views`` are the ideal pinhole views rendered for it (one, or a fisheye's cube faces), each
    at the camera's pose turned by its R; remap and remap_depth take one image per view.
    """

    def __init__(self, camera: PinholeCamera, model: str = "plumb_bob", d: Sequence[float] = (), *,
                 max_pixels: int = 4096 * 4096) -> None:
        self.camera, self.model = camera, model
        self.d8 = check_distortion(model, d)
        self.distorted = any(self.d8) or model == "equidistant"  # a fisheye is never a pinhole, even with D = 0
        self.views = [IdealView(np.eye(3), camera)]
        self._grids: list[torch.Tensor] = []  # per view, when distorted
        self._owner: np.ndarray | None = None  # view each pixel samples (cube faces only)
        self._zscale: list[np.ndarray] = []   # per view: the camera's z over the view's (cube faces only)
        if model == "equidistant":
            dirs, self.valid = equidistant_rays(camera, self.d8[:4])
            front = self.valid & (dirs[..., 2] > 1e-6)
            z = np.where(front, dirs[..., 2], 1.0)[..., None]
            self.rays = np.where(front[..., None], dirs[..., :2] / z, np.nan).astype(np.float32)
            if not self.valid.any():
                raise CalibrationError("the distortion leaves no pixel with a valid ray")
            widest = math.degrees(math.acos(float(np.clip(np.nanmin(dirs[..., 2][self.valid]), -1.0, 1.0))))
            if widest > FACE_LIMIT_DEG:
                self._fit_faces(dirs, max_pixels)
                return
            self.valid = front
        else:
            w, h = camera.width, camera.height
            u, v = np.meshgrid(np.arange(w) + 0.5, np.arange(h) + 0.5)
            xd, yd = (u - camera.cx) / camera.fx, (v - camera.cy) / camera.fy
            x, y = undistort(xd, yd, self.d8) if self.distorted else (xd, yd)
            rx, ry = distort(x, y, self.d8)
            err = np.hypot((rx - xd) * camera.fx, (ry - yd) * camera.fy)
            self.valid = np.isfinite(err) & (err < _RESIDUAL_PX)
            self.rays = np.where(self.valid[..., None], np.stack([x, y], -1), np.nan).astype(np.float32)
        if self.distorted:
            self._fit_render(max_pixels)

    @property
    def render_camera(self) -> PinholeCamera:
        """The ideal camera the model renders (of the first view; every view has its size)."""
        return self.views[0].camera

    def _fit_render(self, max_pixels: int) -> None:
        """Smallest ideal view (pixel pitch of K where possible) holding every valid ray, 1 px margin."""
        c = self.camera
        if not self.valid.any():
            raise CalibrationError("the distortion leaves no pixel with a valid ray")
        x, y = self.rays[..., 0][self.valid], self.rays[..., 1][self.valid]
        span_x, span_y = float(x.max() - x.min()), float(y.max() - y.min())
        scale = min(1.0, 3.0 * c.width / (span_x * c.fx + 2), 3.0 * c.height / (span_y * c.fy + 2))
        if (span_x * c.fx * scale + 2) * (span_y * c.fy * scale + 2) > max_pixels:
            scale *= math.sqrt(max_pixels / ((span_x * c.fx * scale + 2) * (span_y * c.fy * scale + 2)))
        fx, fy = c.fx * scale, c.fy * scale
        wr = max(1, int(math.ceil(span_x * fx + 2)))  # any size renders: no rounding to a block size
        hr = max(1, int(math.ceil(span_y * fy + 2)))
        cx = -float(x.min()) * fx + (wr - span_x * fx) / 2
        cy = -float(y.min()) * fy + (hr - span_y * fy) / 2
        rc = PinholeCamera(wr, hr, fx, fy, cx, cy)
        self.views = [IdealView(np.eye(3), rc)]
        self._grids = [self._grid_of(rc, self.rays)]

    def _fit_faces(self, rays: np.ndarray, max_pixels: int) -> None:
        """A fisheye wider than one view: the cube faces its rays point at (fisheye.cube_faces)."""
        views, self._owner, coords = cube_faces(rays, self.valid, min(self.camera.fx, self.camera.fy), max_pixels)
        self.views = views
        self._grids = [self._grid_of(v.camera, xy) for v, xy in zip(views, coords)]
        # a face's planar depth d at face coordinates (x, y) is the camera's z = d * (R @ [x, y, 1])_z
        self._zscale = [np.nan_to_num(xy[..., 0] * v.R[2, 0] + xy[..., 1] * v.R[2, 1] + v.R[2, 2], nan=0.0)
                        for v, xy in zip(views, coords)]

    @staticmethod
    def _grid_of(rc: PinholeCamera, xy: np.ndarray) -> torch.Tensor:
        """grid_sample's grid for normalised coordinates xy in ideal camera rc (NaN: outside, -2)."""
        gx = 2 * (rc.fx * xy[..., 0] + rc.cx) / rc.width - 1
        gy = 2 * (rc.fy * xy[..., 1] + rc.cy) / rc.height - 1
        return torch.from_numpy(np.nan_to_num(np.stack([gx, gy], -1), nan=-2.0).astype(np.float32))[None]

    def remap(self, images: np.ndarray | Sequence[np.ndarray]) -> np.ndarray:
        """The ideal render (HrxWrx3 uint8, or one per view) -> HxWx3 uint8 as the lens sees it
        (bilinear, black outside)."""
        views = [images] if isinstance(images, np.ndarray) else list(images)
        if not self._grids:
            return views[0]
        out: torch.Tensor | None = None
        for image, grid in zip(views, self._grids):
            t = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None].float()
            s = F.grid_sample(t, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
            out = s if out is None else out + s  # a pixel samples one view: the others give 0 there
        assert out is not None
        return out[0].permute(1, 2, 0).round().clamp(0, 255).to(torch.uint8).numpy()

    def remap_depth(self, depths: np.ndarray | Sequence[np.ndarray]) -> np.ndarray:
        """HrxWr depth (or one per view) -> HxW z-depth (nearest: no blending across edges; NaN
        outside the lens and for rays at 90 degrees or more)."""
        views = [depths] if isinstance(depths, np.ndarray) else list(depths)
        if not self._grids:
            return views[0]
        out = np.full(self.valid.shape, np.nan, dtype=np.float32)
        for j, (depth, grid) in enumerate(zip(views, self._grids)):
            t = torch.from_numpy(np.ascontiguousarray(depth, dtype=np.float32))[None, None]
            s = F.grid_sample(t, grid, mode="nearest", padding_mode="zeros", align_corners=False)[0, 0].numpy()
            if self._owner is None:
                out = np.where(self.valid, s, out)
            else:
                z = s * self._zscale[j]
                out = np.where((self._owner == j) & (self._zscale[j] > 1e-6), z, out)
        return out.astype(np.float32)


@functools.lru_cache(maxsize=16)
def rays_of(camera: PinholeCamera) -> np.ndarray:
    """HxWx2 normalised rays (x/z, y/z) of an ideal camera's pixel centres (read-only, cached)."""
    rays = Lens(camera).rays
    rays.setflags(write=False)
    return rays
