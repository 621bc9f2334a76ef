"""Poses, quaternions, pinhole cameras and the conversions between pose conventions.

One pose convention inside the project: ``T_world_camera`` (4x4 float64, maps camera
coordinates to world coordinates) with OpenCV / REP-103 optical axes (x right, y down,
z forward). Other conventions (ROS body frames, OpenGL/NeRF cameras, MuJoCo cameras) are
converted here, at the edges, and nowhere else.

Quaternions use ROS order (x, y, z, w). Rotation math goes through scipy. Per-pixel rays
(ray directions, unprojection, splatting) are in rtfm_ros.render.rays.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike
from scipy.spatial.transform import Rotation, Slerp

# A quaternion whose norm is off by more than this is refused; closer ones are normalised.
QUAT_NORM_TOLERANCE = 1e-3
MAX_RESOLUTION = 4096
MAX_FOV_DEG = 179.9          # a pinhole view's field of view per axis stays below this
MAX_FOCAL_PX = 1e7           # far beyond any lens at MAX_RESOLUTION, far below float32's limits
MAX_PRINCIPAL_PX = 16 * MAX_RESOLUTION  # tiles of the largest view keep the whole view's principal point
# Camera positions in a world are bounded: context selection works in float32, where much
# larger coordinates lose metre precision and their squares head for overflow (a frame at 1e39
# m became inf and blanked every view). 1e7 m still holds Earth-centred (ECEF) coordinates.
MAX_POSITION_M = 1e7
# Render budgets: a call holds the world while it runs, and its time and memory grow with its
# pixels (faster than linearly per view: 1024x1024 took ~7 s on one CPU core, 4096x4096 ran
# > 10 min and 1.8 GB). A view may have MAX_VIEW_PIXELS, a call MAX_PIXELS_PER_CALL in all.
MAX_VIEW_PIXELS = 1 << 20
MAX_PIXELS_PER_CALL = 1 << 23

# Rotation taking optical-frame coordinates (x right, y down, z forward) to ROS body-frame
# coordinates (x forward, y left, z up): columns are the optical axes seen from the body.
R_BODY_OPTICAL = np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])
# OpenGL / NeRF / MuJoCo cameras (x right, y up, looking along -z) to optical axes.
R_GL_OPTICAL = np.diag([1.0, -1.0, -1.0])


class GeometryError(ValueError):
    """A pose, quaternion or camera that cannot be used."""


def _finite(name: str, a: np.ndarray) -> np.ndarray:
    if not np.all(np.isfinite(a)):
        raise GeometryError(f"{name} has non-finite values: {a.tolist()}")
    return a


def make_transform(rotation: np.ndarray | None = None, translation: ArrayLike | None = None) -> np.ndarray:
    """4x4 rigid transform from a 3x3 rotation and a translation."""
    T = np.eye(4)
    if rotation is not None:
        T[:3, :3] = np.asarray(rotation, dtype=np.float64)
    if translation is not None:
        T[:3, 3] = np.asarray(translation, dtype=np.float64)
    return validate_transform(T)


_EYE3 = np.eye(3)


def det3(r: list[list[float]]) -> float:
    """A 3x3 determinant as a triple product (np.linalg.det costs ~10x more for one small matrix)."""
    return (r[0][0] * (r[1][1] * r[2][2] - r[1][2] * r[2][1]) - r[0][1] * (r[1][0] * r[2][2] - r[1][2] * r[2][0])
            + r[0][2] * (r[1][0] * r[2][1] - r[1][1] * r[2][0]))


def validate_transform(T: np.ndarray, name: str = "transform", atol: float = 1e-5) -> np.ndarray:
    """Return T as 4x4 float64 after checking it is finite and rigid (rotation + translation)."""
    T = np.asarray(T, dtype=np.float64)
    if T.shape != (4, 4):
        raise GeometryError(f"{name} must be 4x4, got shape {T.shape}")
    _finite(name, T)
    R = T[:3, :3]
    # Fast path for what is clearly rigid (np.allclose and np.linalg.det cost ~10x more for one
    # 3x3; this runs for every remembered view): inside both tolerances with room to spare, so
    # it accepts nothing the checks below would refuse.
    if (T[3, 0] == 0.0 and T[3, 1] == 0.0 and T[3, 2] == 0.0 and T[3, 3] == 1.0
            and float(np.abs(R.T @ R - _EYE3).max()) <= atol and abs(det3(R.tolist()) - 1.0) <= 0.5 * atol):
        return T
    if not np.allclose(R.T @ R, np.eye(3), atol=atol) or abs(np.linalg.det(R) - 1.0) > atol:
        raise GeometryError(f"{name} rotation is not orthonormal with det +1")
    if not np.allclose(T[3], [0.0, 0.0, 0.0, 1.0]):
        raise GeometryError(f"{name} last row must be [0, 0, 0, 1], got {T[3].tolist()}")
    return T


POSE_REPAIR_TOL = 1e-3  # rotations read from files (rounded to 4-6 decimals) are repaired within this


def repair_rotation(T: np.ndarray, name: str = "transform", tol: float = POSE_REPAIR_TOL) -> tuple[np.ndarray, bool]:
    """A rigid transform read from a file, its rotation re-orthonormalised (the nearest rotation,
    by SVD) when it is within ``tol`` of one, as pose files written with a few decimals are;
    (T, whether it was repaired). Beyond ``tol`` it is refused like validate_transform."""
    T = np.asarray(T, dtype=np.float64)
    if T.shape == (4, 4) and np.isfinite(T).all():
        R = T[:3, :3]
        if (T[3, 0] == 0.0 and T[3, 1] == 0.0 and T[3, 2] == 0.0 and T[3, 3] == 1.0
                and float(np.abs(R.T @ R - _EYE3).max()) <= 1e-5 and abs(det3(R.tolist()) - 1.0) <= 0.5e-5):
            return T, False  # clearly rigid (validate_transform's fast path): no LU determinant
        off = max(float(np.abs(R.T @ R - np.eye(3)).max()), abs(float(np.linalg.det(R)) - 1.0))
        if off <= 1e-5 and T[3, 0] == 0.0 and T[3, 1] == 0.0 and T[3, 2] == 0.0 and T[3, 3] == 1.0:
            return T, False  # rigid as given: validate_transform would only repeat these checks
        if 1e-5 < off <= tol:
            u, _, vt = np.linalg.svd(R)
            T = T.copy()
            T[:3, :3] = u @ np.diag([1.0, 1.0, float(np.linalg.det(u @ vt))]) @ vt
            return validate_transform(T, name), True
    return validate_transform(T, name), False


def validate_pose(T: np.ndarray, name: str = "T_world_camera") -> np.ndarray:
    """A camera pose as a world stores and renders it: rigid, its rotation re-orthonormalised within
    POSE_REPAIR_TOL (the one tolerance for poses, whether from a file, a message or a caller), and
    within the position bound a world can represent (MAX_POSITION_M)."""
    T, _ = repair_rotation(T, name)
    far = float(np.abs(T[:3, 3]).max())
    if far > MAX_POSITION_M:
        raise GeometryError(f"{name} position {T[:3, 3].tolist()} is beyond the {MAX_POSITION_M:g} m "
                            "a world can represent (use a local map frame)")
    return T


def validate_poses(T_stack: np.ndarray, name: str = "T_world_camera") -> np.ndarray:
    """validate_pose for an N x 4 x 4 stack, the common case (rigid as given, in bounds) checked
    for all poses at once; any other pose goes through validate_pose (repair or its error)."""
    Ts = np.array(T_stack, dtype=np.float64)  # a copy: repaired poses are written into it
    if Ts.ndim != 3 or Ts.shape[1:] != (4, 4):
        raise GeometryError(f"poses must be Nx4x4, got {Ts.shape}")
    R = Ts[:, :3, :3]
    with np.errstate(invalid="ignore", over="ignore"):
        off = np.maximum(np.abs(np.swapaxes(R, 1, 2) @ R - np.eye(3)).max(axis=(1, 2)),
                         np.abs(np.linalg.det(R) - 1.0) if len(Ts) else np.zeros(0))
        good = (np.isfinite(Ts).all(axis=(1, 2)) & (off <= 1e-5) & (Ts[:, 3] == (0.0, 0.0, 0.0, 1.0)).all(axis=1)
                & (np.abs(Ts[:, :3, 3]).max(axis=1) <= MAX_POSITION_M))
    for i in np.flatnonzero(~good):
        Ts[i] = validate_pose(Ts[i], name)
    return Ts


def check_pixel_budget(views: int, width: int, height: int, view_budget: int = MAX_VIEW_PIXELS,
                       call_budget: int = MAX_PIXELS_PER_CALL) -> None:
    """Refuse a render call with no view, a view over ``view_budget`` pixels or a call over ``call_budget``."""
    if views < 1:
        raise GeometryError("no poses to render: give at least one 4x4 pose")
    per_view = int(width) * int(height)
    if per_view > view_budget:
        raise GeometryError(f"a {width}x{height} view is {per_view} pixels, more than the {view_budget} one view "
                            "may have (its cost grows with the square of its pixels); render a smaller view")
    if per_view * int(views) > call_budget:
        raise GeometryError(f"{views} views of {width}x{height} are {per_view * int(views)} pixels, more than the "
                            f"{call_budget} one render call may produce; render fewer views per call")


def compose(*transforms: np.ndarray) -> np.ndarray:
    """Product T1 @ T2 @ ... (read right to left as frame changes)."""
    out = np.eye(4)
    for T in transforms:
        out = out @ np.asarray(T, dtype=np.float64)
    return out


def invert(T: np.ndarray) -> np.ndarray:
    """Inverse of a rigid transform (exact, no general matrix inverse)."""
    T = np.asarray(T, dtype=np.float64)
    out = np.eye(4)
    R = T[:3, :3]
    out[:3, :3] = R.T
    out[:3, 3] = -R.T @ T[:3, 3]
    return out


def quat_to_matrix(q_xyzw: ArrayLike) -> np.ndarray:
    """3x3 rotation from a ROS-order quaternion, refusing non-finite or badly scaled ones."""
    q = _finite("quaternion", np.asarray(q_xyzw, dtype=np.float64).reshape(-1))
    if q.shape != (4,):
        raise GeometryError(f"quaternion must have 4 values (x, y, z, w), got {q.shape[0]}")
    norm = float(np.linalg.norm(q))
    if abs(norm - 1.0) > QUAT_NORM_TOLERANCE:
        raise GeometryError(f"quaternion norm is {norm:.6g}, expected 1 (x, y, z, w = {q.tolist()})")
    R: np.ndarray = Rotation.from_quat(q / norm).as_matrix()
    return R


def matrix_to_quat(R: np.ndarray) -> np.ndarray:
    """ROS-order quaternion (x, y, z, w) with w >= 0 from a 3x3 rotation."""
    q: np.ndarray = Rotation.from_matrix(np.asarray(R, dtype=np.float64)).as_quat()
    return -q if q[3] < 0 else q


def transform_from_ros(translation: ArrayLike, q_xyzw: ArrayLike) -> np.ndarray:
    """4x4 from a ROS translation (x, y, z) and rotation (x, y, z, w), validated."""
    t = _finite("translation", np.asarray(translation, dtype=np.float64).reshape(-1))
    if t.shape != (3,):
        raise GeometryError(f"translation must have 3 values, got {t.shape[0]}")
    return make_transform(quat_to_matrix(q_xyzw), t)


def transform_to_ros(T: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(translation xyz, quaternion xyzw) of a 4x4 transform."""
    T = validate_transform(T)
    return T[:3, 3].copy(), matrix_to_quat(T[:3, :3])


def interpolate(T0: np.ndarray, T1: np.ndarray, alpha: float) -> np.ndarray:
    """Pose between T0 (alpha=0) and T1 (alpha=1): linear translation, SLERP rotation."""
    if not 0.0 <= alpha <= 1.0:
        raise GeometryError(f"interpolation factor must be in [0, 1], got {alpha}")
    T0, T1 = np.asarray(T0, dtype=np.float64), np.asarray(T1, dtype=np.float64)
    slerp = Slerp([0.0, 1.0], Rotation.from_matrix(np.stack([T0[:3, :3], T1[:3, :3]])))
    out = np.eye(4)
    out[:3, :3] = slerp([alpha]).as_matrix()[0]
    out[:3, 3] = (1.0 - alpha) * T0[:3, 3] + alpha * T1[:3, 3]
    return out


def body_to_optical(T_world_body: np.ndarray) -> np.ndarray:
    """Pose of a ROS body-convention camera frame (x forward, z up) -> optical-axes pose."""
    return compose(T_world_body, make_transform(R_BODY_OPTICAL))


def optical_to_body(T_world_camera: np.ndarray) -> np.ndarray:
    """Inverse of body_to_optical."""
    return compose(T_world_camera, make_transform(R_BODY_OPTICAL.T))


def opengl_to_optical(T_world_gl: np.ndarray) -> np.ndarray:
    """NeRF/OpenGL/MuJoCo camera-to-world (x right, y up, looks along -z) -> optical pose."""
    return compose(T_world_gl, make_transform(R_GL_OPTICAL))


def optical_to_opengl(T_world_camera: np.ndarray) -> np.ndarray:
    """Inverse of opengl_to_optical (the same flip, applied again)."""
    return compose(T_world_camera, make_transform(R_GL_OPTICAL))


def look_at(eye: ArrayLike, target: ArrayLike, up: ArrayLike = (0.0, 0.0, 1.0)) -> np.ndarray:
    """Optical-axes T_world_camera at ``eye`` looking at ``target``, image 'up' towards ``up``."""
    eye_ = np.asarray(eye, dtype=np.float64)
    z = np.asarray(target, dtype=np.float64) - eye_
    if np.linalg.norm(z) < 1e-12:
        raise GeometryError("look_at: eye and target coincide")
    z /= np.linalg.norm(z)
    x = np.cross(z, np.asarray(up, dtype=np.float64))
    if np.linalg.norm(x) < 1e-9:
        raise GeometryError("look_at: viewing direction is parallel to 'up'")
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    return make_transform(np.stack([x, y, z], axis=1), eye_)


def heading_rotation(yaw: ArrayLike, pitch: ArrayLike = 0.0, roll: ArrayLike = 0.0) -> np.ndarray:
    """Body-frame rotation (x forward, z up; 3x3, or Nx3x3 for N angles) heading ``yaw`` about world z
    (0: along +x), then ``pitch`` (up positive) and ``roll`` (image turned clockwise positive), radians."""
    yaw_, pitch_, roll_ = np.broadcast_arrays(*(np.asarray(a, dtype=np.float64) for a in (yaw, pitch, roll)))
    angles = np.stack([yaw_.ravel(), -pitch_.ravel(), roll_.ravel()], axis=1)
    R: np.ndarray = Rotation.from_euler("ZYX", angles).as_matrix()
    return R.reshape((*yaw_.shape, 3, 3))


def camera_from_heading(position: ArrayLike, yaw: ArrayLike, pitch: ArrayLike = 0.0,
                        roll: ArrayLike = 0.0) -> np.ndarray:
    """Optical-axes T_world_camera of a camera at ``position`` (3, or Nx3) whose body heads as
    :func:`heading_rotation` says (4x4, or Nx4x4): a robot's camera, a browser view, a trajectory."""
    R = heading_rotation(yaw, pitch, roll)
    p = np.asarray(position, dtype=np.float64)
    T = np.zeros((*R.shape[:-2], 4, 4))
    T[..., :3, :3] = R @ R_BODY_OPTICAL
    T[..., :3, 3] = p
    T[..., 3, 3] = 1.0
    return T


def level_turn(angle: float) -> np.ndarray:
    """3x3 rotation of an optical-axes camera about its own y axis (image down): a level camera
    turning on the spot, to its right for a positive angle (radians); compose on the right."""
    R: np.ndarray = Rotation.from_euler("y", angle).as_matrix()
    return R


def pose_distance(T_a: np.ndarray, T_b: np.ndarray) -> tuple[float, float]:
    """(translation distance in metres, rotation angle in radians) between two poses."""
    dt = float(np.linalg.norm(np.asarray(T_a)[:3, 3] - np.asarray(T_b)[:3, 3]))
    R = np.asarray(T_a)[:3, :3].T @ np.asarray(T_b)[:3, :3]
    angle = float(np.arccos(np.clip((np.trace(R) - 1.0) / 2.0, -1.0, 1.0)))
    return dt, angle


@dataclass(frozen=True)
class PinholeCamera:
    """Ideal pinhole intrinsics for an image of width x height pixels (no distortion)."""

    width: int
    height: int
    fx: float
    fy: float
    cx: float
    cy: float

    def __post_init__(self) -> None:
        for name in ("width", "height"):
            v = getattr(self, name)
            if int(v) != v or not 0 < v <= MAX_RESOLUTION:
                raise GeometryError(f"camera {name} must be an integer in 1..{MAX_RESOLUTION}, got {v}")
            object.__setattr__(self, name, int(v))
        for name in ("fx", "fy", "cx", "cy"):
            v = float(getattr(self, name))
            if not math.isfinite(v):
                raise GeometryError(f"camera {name} must be finite, got {v}")
            object.__setattr__(self, name, v)
        if self.fx <= 0 or self.fy <= 0:
            raise GeometryError(f"focal lengths must be positive, got fx={self.fx}, fy={self.fy}")
        # Values that are valid in float64 but not in the float32 the renderer computes in (fx =
        # 1e-300 is 0 there, 1e39 is inf), or that no lens has, are refused here, before a frame
        # with them can be stored.
        for name, size in (("fx", self.width), ("fy", self.height)):
            f = getattr(self, name)
            if not size / (2 * math.tan(math.radians(MAX_FOV_DEG) / 2)) <= f <= MAX_FOCAL_PX:
                raise GeometryError(f"camera {name}={f:g} is no pinhole lens for a {size}-pixel side: the field of "
                                    f"view must be below {MAX_FOV_DEG:g} degrees and {name} at most {MAX_FOCAL_PX:g}")
        for name in ("cx", "cy"):
            if abs(getattr(self, name)) > MAX_PRINCIPAL_PX:
                raise GeometryError(f"camera {name}={getattr(self, name):g} is more than {MAX_PRINCIPAL_PX:g} pixels "
                                    "from the image")

    @classmethod
    def from_fov(cls, width: int, height: int, fov_deg: float, axis: str = "horizontal") -> PinholeCamera:
        """Square-pixel camera with the principal point at the centre and the given field of view."""
        if not 0.0 < fov_deg < 180.0:
            raise GeometryError(f"field of view must be in (0, 180) degrees, got {fov_deg}")
        if axis not in ("horizontal", "vertical"):
            raise GeometryError(f"axis must be 'horizontal' or 'vertical', got {axis!r}")
        span = width if axis == "horizontal" else height
        f = 0.5 * span / math.tan(math.radians(fov_deg) / 2.0)
        return cls(width, height, f, f, width / 2.0, height / 2.0)

    @property
    def K(self) -> np.ndarray:
        return np.array([[self.fx, 0.0, self.cx], [0.0, self.fy, self.cy], [0.0, 0.0, 1.0]])

    @property
    def fov_deg(self) -> tuple[float, float]:
        """(horizontal, vertical) field of view in degrees."""
        return (
            math.degrees(2.0 * math.atan(self.width / (2.0 * self.fx))),
            math.degrees(2.0 * math.atan(self.height / (2.0 * self.fy))),
        )

    def scaled(self, width: int, height: int) -> PinholeCamera:
        """The same field of view at another resolution (pixel-edge convention)."""
        sx, sy = width / self.width, height / self.height
        return PinholeCamera(width, height, self.fx * sx, self.fy * sy, self.cx * sx, self.cy * sy)


# ----------------------------------------------------------------------------------------------
# One pixel convention at the edges. Inside the project a pixel (u, v) covers [u, u+1) x [v, v+1)
# and its centre is (u + 0.5, v + 0.5), so a centred principal point is cx = W/2. ROS CameraInfo,
# OpenCV and camera_calibration's YAML files put pixel centres at integers, so the same camera
# has cx = (W - 1)/2 there. These convert, and are used only where such intrinsics are made or
# read (CameraInfo messages, calibration files, bags, importers).

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


def camera_from_k(width: int, height: int, k: ArrayLike) -> PinholeCamera:
    """PinholeCamera from a CameraInfo.k (row-major 3x3, ROS/OpenCV convention)."""
    kv = np.asarray(k, dtype=np.float64).reshape(-1)
    if kv.shape != (9,):
        raise GeometryError(f"CameraInfo k must have 9 values, got {kv.shape[0]}")
    return camera_from_opencv(width, height, kv[0], kv[4], kv[2], kv[5])


def camera_from_p(width: int, height: int, p: ArrayLike) -> PinholeCamera:
    """The rectified camera of a CameraInfo.p (row-major 3x4, ROS/OpenCV convention)."""
    pv = np.asarray(p, dtype=np.float64).reshape(-1)
    if pv.shape != (12,):
        raise GeometryError(f"CameraInfo p must have 12 values, got {pv.shape[0]}")
    return camera_from_opencv(width, height, pv[0], pv[5], pv[2], pv[6])
