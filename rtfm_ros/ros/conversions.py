"""Numpy <-> ROS message conversions (images, depth, camera info, transforms, stamps).

cv_bridge is not available from PyPI for ROS 2, and numpy views over ``msg.data`` are all that
is needed for the few encodings a camera simulator meets. Readers only use message attributes,
so messages deserialised by the ``rosbags`` library convert as well as rclpy ones.
"""

from __future__ import annotations

import array
import sys
from typing import Any, Union

import numpy as np
from builtin_interfaces.msg import Time
from geometry_msgs.msg import Point, Pose, Quaternion, Transform, TransformStamped, Vector3
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2, PointField
from std_msgs.msg import Header

from rtfm_ros.geometry import GeometryError, PinholeCamera, transform_from_ros, transform_to_ros
from rtfm_ros.ros.lens import Calibration
from rtfm_ros.geometry import camera_from_k, opencv_k, opencv_p
from rtfm_ros.ros.sensor import depth_mm
from rtfm_ros.tf_buffer import NS_PER_S, TransformBuffer

Stamp = Union[int, Time]

# Channels and channel order (as indices into RGB(A)) of the colour encodings read.
_COLOUR_ENCODINGS: dict[str, tuple[int, tuple[int, ...]]] = {
    "rgb8": (3, (0, 1, 2)),
    "bgr8": (3, (2, 1, 0)),
    "rgba8": (4, (0, 1, 2)),
    "bgra8": (4, (2, 1, 0)),
    "mono8": (1, (0, 0, 0)),
}
_INT32_MAX = 2**31 - 1


class MessageError(ValueError):
    """A ROS message (or array for one) that cannot be converted."""


# ---------------------------------------------------------------------------------- stamps
def stamp_to_ns(stamp: Any) -> int:
    """Nanoseconds since the epoch of a builtin_interfaces/Time."""
    return int(stamp.sec) * NS_PER_S + int(stamp.nanosec)


def ns_to_stamp(ns: int) -> Time:
    """builtin_interfaces/Time for a non-negative nanosecond count."""
    if isinstance(ns, bool) or not isinstance(ns, (int, np.integer)):
        raise MessageError(f"stamp must be an integer number of nanoseconds, got {ns!r}")
    sec, nanosec = divmod(int(ns), NS_PER_S)
    if not 0 <= sec <= _INT32_MAX:
        raise MessageError(f"stamp {ns} ns is outside builtin_interfaces/Time's range (0 .. 2^31 s)")
    return Time(sec=sec, nanosec=nanosec)


def _header(stamp: Stamp, frame_id: str) -> Header:
    t = stamp if isinstance(stamp, Time) else ns_to_stamp(stamp)
    if not isinstance(frame_id, str):
        raise MessageError(f"frame_id must be a string, got {type(frame_id).__name__}")
    return Header(stamp=t, frame_id=frame_id)


# ---------------------------------------------------------------------------------- images
def image_to_msg(rgb: np.ndarray, stamp: Stamp, frame_id: str) -> Image:
    """sensor_msgs/Image (rgb8, unpadded rows) from an HxWx3 uint8 array."""
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.shape[0] == 0 or rgb.shape[1] == 0:
        raise MessageError(f"image must be HxWx3, got shape {rgb.shape}")
    if rgb.dtype != np.uint8:
        raise MessageError(f"image must be uint8, got {rgb.dtype} (scale and cast before publishing)")
    h, w = rgb.shape[:2]
    msg = Image(header=_header(stamp, frame_id), height=h, width=w, encoding="rgb8", is_bigendian=0, step=3 * w)
    msg.data = array.array("B", np.ascontiguousarray(rgb).tobytes())
    return msg


def depth_to_msg(depth: np.ndarray, stamp: Stamp, frame_id: str, encoding: str = "32FC1") -> Image:
    """sensor_msgs/Image from an HxW float array in metres: 32FC1 (NaN/inf kept, REP 118) or 16UC1 (mm, 0 = none)."""
    depth = np.asarray(depth)
    if depth.ndim != 2 or 0 in depth.shape:
        raise MessageError(f"depth must be HxW, got shape {depth.shape}")
    if not np.issubdtype(depth.dtype, np.floating):
        raise MessageError(f"depth must be a float array in metres, got {depth.dtype}")
    h, w = depth.shape
    if encoding == "16UC1":
        msg = Image(header=_header(stamp, frame_id), height=h, width=w, encoding="16UC1",
                    is_bigendian=int(sys.byteorder == "big"), step=2 * w)
        msg.data = array.array("B", depth_mm(depth).tobytes())
        return msg
    if encoding != "32FC1":
        raise MessageError(f"depth encoding must be 32FC1 or 16UC1, got {encoding!r}")
    msg = Image(
        header=_header(stamp, frame_id), height=h, width=w, encoding="32FC1",
        is_bigendian=int(sys.byteorder == "big"), step=4 * w,
    )
    msg.data = array.array("B", np.ascontiguousarray(depth, dtype=np.float32).tobytes())
    return msg


def compressed_msg(rgb: np.ndarray, stamp: Stamp, frame_id: str, fmt: str = "jpeg",
                   quality: int = 90) -> CompressedImage:
    """sensor_msgs/CompressedImage as image_transport's compressed plugin writes it (format string included)."""
    import io

    from PIL import Image as PILImage

    buf = io.BytesIO()
    if fmt == "jpeg":
        PILImage.fromarray(rgb).save(buf, format="JPEG", quality=int(quality))
    elif fmt == "png":
        PILImage.fromarray(rgb).save(buf, format="PNG", compress_level=1)
    else:
        raise MessageError(f"compressed format must be jpeg or png, got {fmt!r}")
    msg = CompressedImage(header=_header(stamp, frame_id), format=f"rgb8; {fmt} compressed bgr8")
    msg.data = array.array("B", buf.getvalue())
    return msg


_CLOUD_FIELDS = [PointField(name=n, offset=4 * i, datatype=PointField.FLOAT32, count=1)
                 for i, n in enumerate(("x", "y", "z", "rgb"))]


def cloud_msg(points: np.ndarray, rgb: np.ndarray, stamp: Stamp, frame_id: str) -> PointCloud2:
    """Organised sensor_msgs/PointCloud2 XYZRGB (rgb packed in a float, as PCL and RViz read it).

    points: HxWx3 metres in the optical frame, NaN where depth is unknown (is_dense false).
    """
    h, w = points.shape[:2]
    packed = ((rgb[..., 0].astype(np.uint32) << 16) | (rgb[..., 1].astype(np.uint32) << 8)
              | rgb[..., 2].astype(np.uint32))
    data = np.empty((h, w, 4), dtype=np.float32)
    data[..., :3] = points
    data[..., 3] = packed.view(np.float32)
    msg = PointCloud2(header=_header(stamp, frame_id), height=h, width=w, fields=_CLOUD_FIELDS,
                      is_bigendian=sys.byteorder == "big", point_step=16, row_step=16 * w,
                      is_dense=bool(np.isfinite(points).all()))
    msg.data = array.array("B", data.tobytes())
    return msg


def _rows(msg: Any, bytes_per_pixel: int) -> np.ndarray:
    """HxW*bpp uint8 view of the pixel bytes, honouring step (row padding)."""
    h, w, step = int(msg.height), int(msg.width), int(msg.step)
    if h <= 0 or w <= 0:
        raise MessageError(f"image is empty ({w}x{h})")
    if step < w * bytes_per_pixel:
        raise MessageError(f"image step {step} is smaller than width {w} x {bytes_per_pixel} bytes per pixel")
    data = np.frombuffer(msg.data, dtype=np.uint8)
    if data.size < step * h:
        raise MessageError(f"image data has {data.size} bytes, expected step {step} x height {h} = {step * h}")
    return data[: step * h].reshape(h, step)[:, : w * bytes_per_pixel]


def msg_to_image(msg: Any) -> np.ndarray:
    """HxWx3 uint8 RGB from an Image in rgb8, bgr8, rgba8, bgra8 or mono8 (alpha dropped)."""
    enc = str(msg.encoding).lower()
    if enc not in _COLOUR_ENCODINGS:
        raise MessageError(
            f"image encoding {msg.encoding!r} is not supported; expected one of {', '.join(_COLOUR_ENCODINGS)}"
        )
    channels, order = _COLOUR_ENCODINGS[enc]
    px = _rows(msg, channels).reshape(int(msg.height), int(msg.width), channels)
    return np.ascontiguousarray(px[:, :, list(order)])


def msg_to_depth(msg: Any) -> np.ndarray:
    """HxW float32 metres from a 32FC1 (metres) or 16UC1 (millimetres, 0 = no data -> NaN) Image."""
    enc = str(msg.encoding).upper()
    if enc == "32FC1":
        dtype, size = np.dtype(">f4" if msg.is_bigendian else "<f4"), 4
    elif enc in ("16UC1", "MONO16"):
        dtype, size = np.dtype(">u2" if msg.is_bigendian else "<u2"), 2
    else:
        raise MessageError(f"depth encoding {msg.encoding!r} is not supported; expected 32FC1 or 16UC1")
    raw = np.ascontiguousarray(_rows(msg, size)).view(dtype).reshape(int(msg.height), int(msg.width))
    if size == 4:
        return raw.astype(np.float32)
    depth = raw.astype(np.float32) / 1000.0
    depth[raw == 0] = np.nan
    return depth


# ---------------------------------------------------------------------------------- cameras
def camera_info_msg(camera: PinholeCamera, stamp: Stamp, frame_id: str,
                    calibration: Calibration | None = None) -> CameraInfo:
    """CameraInfo in ROS's convention (integer pixel centres): a calibration's K, D, R, P as given,
    else an ideal pinhole (plumb_bob, d = 0, r = I, p = [K | 0])."""
    msg = CameraInfo(header=_header(stamp, frame_id), height=camera.height, width=camera.width)
    if calibration is not None:
        msg.distortion_model = calibration.distortion_model
        msg.d = array.array("d", calibration.d)
        msg.k = np.asarray(calibration.k, dtype=np.float64)
        msg.r = np.asarray(calibration.r, dtype=np.float64)
        msg.p = np.asarray(calibration.p, dtype=np.float64)
        return msg
    msg.distortion_model = "plumb_bob"
    msg.d = array.array("d", [0.0] * 5)
    msg.k = np.asarray(opencv_k(camera), dtype=np.float64)
    msg.r = np.eye(3).reshape(-1)
    msg.p = np.asarray(opencv_p(camera), dtype=np.float64)
    return msg


def camera_from_info(msg: Any, ignore_distortion: bool = False) -> PinholeCamera:
    """PinholeCamera from CameraInfo k (ROS convention, converted); refuses uncalibrated, skewed or distorted."""
    k = np.asarray(msg.k, dtype=np.float64).reshape(-1)
    if k.shape != (9,) or not np.all(np.isfinite(k)):
        raise MessageError(f"CameraInfo k must hold 9 finite values, got {k.tolist()}")
    if not np.any(k):
        raise MessageError("CameraInfo is uncalibrated (k is all zeros)")
    if k[1] != 0.0 or k[3] != 0.0 or k[6] != 0.0 or k[7] != 0.0 or k[8] != 1.0:
        raise MessageError(f"CameraInfo k is not a pinhole matrix [fx 0 cx; 0 fy cy; 0 0 1]: {k.tolist()}")
    d = np.asarray(msg.d, dtype=np.float64).reshape(-1)
    if np.any(d != 0.0) and not ignore_distortion:
        raise MessageError(
            f"CameraInfo has distortion {msg.distortion_model!r} d={d.tolist()}; only ideal pinhole "
            "cameras are rendered (pass ignore_distortion=True to use k alone)"
        )
    try:
        return camera_from_k(msg.width, msg.height, k)
    except GeometryError as e:
        raise MessageError(f"CameraInfo does not describe a usable camera: {e}") from e


# ---------------------------------------------------------------------------------- poses
def _matrix(translation: Any, rotation: Any, what: str) -> np.ndarray:
    try:
        return transform_from_ros(
            (translation.x, translation.y, translation.z), (rotation.x, rotation.y, rotation.z, rotation.w)
        )
    except GeometryError as e:
        raise GeometryError(f"{what}: {e}") from e


def transform_stamped_to_matrix(msg: Any) -> np.ndarray:
    """4x4 T_parent_child (parent = header.frame_id, child = child_frame_id), validated."""
    what = f"transform {msg.header.frame_id} -> {msg.child_frame_id}"
    return _matrix(msg.transform.translation, msg.transform.rotation, what)


def matrix_to_transform_stamped(T_parent_child: np.ndarray, parent: str, child: str, stamp: Stamp) -> TransformStamped:
    """geometry_msgs/TransformStamped from a 4x4 T_parent_child."""
    t, q = transform_to_ros(T_parent_child)
    msg = TransformStamped(header=_header(stamp, parent), child_frame_id=child)
    msg.transform = Transform(
        translation=Vector3(x=float(t[0]), y=float(t[1]), z=float(t[2])),
        rotation=Quaternion(x=float(q[0]), y=float(q[1]), z=float(q[2]), w=float(q[3])),
    )
    return msg


def pose_to_matrix(pose: Any) -> np.ndarray:
    """4x4 from a geometry_msgs/Pose (the pose of a frame in its header's frame)."""
    return _matrix(pose.position, pose.orientation, "pose")


def matrix_to_pose(T: np.ndarray) -> Pose:
    """geometry_msgs/Pose from a 4x4 transform."""
    t, q = transform_to_ros(T)
    return Pose(
        position=Point(x=float(t[0]), y=float(t[1]), z=float(t[2])),
        orientation=Quaternion(x=float(q[0]), y=float(q[1]), z=float(q[2]), w=float(q[3])),
    )


def feed_tf_message(buffer: TransformBuffer, msg: Any, static: bool) -> list[GeometryError]:
    """Push every transform of a tf2_msgs/TFMessage into buffer; bad ones are skipped and returned.

    One bad transform (NaN, a second parent) must not drop the good ones published beside it.
    """
    errors: list[GeometryError] = []
    for tf in msg.transforms:
        parent, child = tf.header.frame_id, tf.child_frame_id
        try:
            buffer.set_transform(parent, child, stamp_to_ns(tf.header.stamp), transform_stamped_to_matrix(tf), static)
        except GeometryError as e:
            errors.append(type(e)(f"skipped {'static ' if static else ''}transform {parent!r} -> {child!r}: {e}"))
    return errors
