"""ROS messages <-> numpy, for bags and the node alike, without rclpy.

cv_bridge is not on PyPI for ROS 2, and numpy views over ``msg.data`` are all a camera
simulator needs. Readers (``decode_*``, ``camera_from_info``, tf_messages') only use
message attributes, so a message deserialised from a bag by ``rosbags`` and one received by
rclpy read the same. Builders take the data first, then stamp and frame, and make their
messages from ``types``: the ``rosbags`` typestore by default (bags, offline), or rclpy's own
classes (``rtfm_ros.ros.conversions``, the node). Stamps are integer nanoseconds or a
builtin_interfaces/Time; CameraInfo uses ROS's pixel convention (geometry.opencv_k).
"""

from __future__ import annotations

import functools
import io
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
from numpy.typing import ArrayLike

from rtfm_ros.geometry import (
    MAX_RESOLUTION,
    GeometryError,
    PinholeCamera,
    camera_from_k,
    opencv_k,
    opencv_p,
)
from rtfm_ros.tf_buffer import NS_PER_S

IMAGE = "sensor_msgs/msg/Image"
COMPRESSED_IMAGE = "sensor_msgs/msg/CompressedImage"
CAMERA_INFO = "sensor_msgs/msg/CameraInfo"
TF_MESSAGE = "tf2_msgs/msg/TFMessage"
# Colour encodings read: (channels, indices of R, G, B).
COLOUR_ENCODINGS: dict[str, tuple[int, tuple[int, ...]]] = {
    "rgb8": (3, (0, 1, 2)), "bgr8": (3, (2, 1, 0)), "rgba8": (4, (0, 1, 2)), "bgra8": (4, (2, 1, 0)),
    "mono8": (1, (0, 0, 0))}
DEPTH_ENCODINGS: dict[str, np.dtype[Any]] = {
    "32FC1": np.dtype("float32"), "16UC1": np.dtype("uint16"), "MONO16": np.dtype("uint16")}
_INT32_MAX = 2**31 - 1
Stamp = Any  # int nanoseconds, or anything with sec and nanosec (a builtin_interfaces/Time)


class MessageError(ValueError):
    """A ROS message (or an array for one) that cannot be converted."""


@dataclass(frozen=True)
class MessageTypes:
    """Where builders get message classes (by ROS name) and how they fill sequence fields."""

    get: Callable[[str], type]
    bytes_field: Callable[[np.ndarray], Any]  # uint8[] from a uint8 array
    floats_field: Callable[[Sequence[float]], Any]  # float64[] (CameraInfo.d)


@functools.lru_cache(maxsize=1)
def typestore() -> Any:
    """The newest ROS 2 message typestore this rosbags release ships."""
    from rosbags.typesys import Stores, get_typestore

    for name in ("ROS2_KILTED", "ROS2_JAZZY", "ROS2_HUMBLE"):
        if hasattr(Stores, name):
            return get_typestore(getattr(Stores, name))
    raise MessageError("this rosbags release ships no ROS 2 typestore")  # pragma: no cover


@functools.lru_cache(maxsize=1)
def bag_types() -> MessageTypes:
    """The rosbags typestore's classes (what BagWriter serialises)."""
    return MessageTypes(get=lambda name: typestore().types[name],
                        bytes_field=lambda a: np.ascontiguousarray(a).view(np.uint8).reshape(-1),
                        floats_field=lambda v: np.asarray(v, dtype=np.float64))


class CalibrationLike(Protocol):
    """A camera calibration's CameraInfo fields (ROS/OpenCV convention), e.g. camera.lens.Calibration."""

    @property
    def distortion_model(self) -> str: ...
    @property
    def k(self) -> Sequence[float]: ...
    @property
    def d(self) -> Sequence[float]: ...
    @property
    def r(self) -> Sequence[float]: ...
    @property
    def p(self) -> Sequence[float]: ...


# ------------------------------------------------------------------------------ stamps
def stamp_to_ns(stamp: Any) -> int:
    """Nanoseconds of a builtin_interfaces/Time."""
    return int(stamp.sec) * NS_PER_S + int(stamp.nanosec)


def ns_to_seconds(ns: int) -> float:
    """Seconds (float, what frames and clips store) of a nanosecond stamp."""
    return ns / NS_PER_S


def time_msg(stamp: Stamp, *, types: MessageTypes | None = None) -> Any:
    """builtin_interfaces/Time for non-negative nanoseconds (or a copy of a Time-like stamp)."""
    types = types or bag_types()
    if hasattr(stamp, "sec") and hasattr(stamp, "nanosec"):
        return types.get("builtin_interfaces/msg/Time")(sec=int(stamp.sec), nanosec=int(stamp.nanosec))
    if isinstance(stamp, bool) or not isinstance(stamp, (int, np.integer)):
        raise MessageError(f"stamp must be an integer number of nanoseconds, got {stamp!r}")
    sec, nanosec = divmod(int(stamp), NS_PER_S)
    if not 0 <= sec <= _INT32_MAX:
        raise MessageError(f"stamp {stamp} ns is outside builtin_interfaces/Time's range (0 .. 2^31 s)")
    return types.get("builtin_interfaces/msg/Time")(sec=sec, nanosec=nanosec)


def header_msg(stamp: Stamp, frame_id: str, *, types: MessageTypes | None = None) -> Any:
    """std_msgs/Header."""
    types = types or bag_types()
    if not isinstance(frame_id, str):
        raise MessageError(f"frame_id must be a string, got {type(frame_id).__name__}")
    return types.get("std_msgs/msg/Header")(stamp=time_msg(stamp, types=types), frame_id=frame_id)


# ------------------------------------------------------------------------------ images
def image_msg(rgb: np.ndarray, stamp: Stamp, frame_id: str, *, types: MessageTypes | None = None) -> Any:
    """sensor_msgs/Image (rgb8, unpadded rows) from an HxWx3 uint8 array."""
    types = types or bag_types()
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8 or 0 in rgb.shape:
        raise MessageError(f"image must be HxWx3 uint8, got {rgb.dtype} {rgb.shape} (scale and cast first)")
    h, w = rgb.shape[:2]
    return types.get(IMAGE)(header=header_msg(stamp, frame_id, types=types), height=h, width=w, encoding="rgb8",
                            is_bigendian=0, step=3 * w, data=types.bytes_field(rgb))


def depth_mm(depth: np.ndarray) -> np.ndarray:
    """16UC1 millimetres: NaN, <= 0 and beyond 65.535 m become 0 ("no return", REP 118)."""
    mm = np.nan_to_num(depth.astype(np.float64) * 1000.0, nan=0.0, posinf=0.0, neginf=0.0)
    mm = np.where((mm > 0) & (mm <= 65535), np.round(mm), 0)
    return mm.astype(np.uint16)


def depth_msg(depth: np.ndarray, stamp: Stamp, frame_id: str, encoding: str = "32FC1", *,
              types: MessageTypes | None = None) -> Any:
    """sensor_msgs/Image from HxW floats in metres: 32FC1 (NaN/inf kept, REP 118) or 16UC1 (mm, 0 = none)."""
    types = types or bag_types()
    depth = np.asarray(depth)
    if depth.ndim != 2 or 0 in depth.shape or not np.issubdtype(depth.dtype, np.floating):
        raise MessageError(f"depth must be an HxW float array in metres, got {depth.dtype} {depth.shape}")
    if encoding not in ("32FC1", "16UC1"):
        raise MessageError(f"depth encoding must be 32FC1 or 16UC1, got {encoding!r}")
    px = depth_mm(depth) if encoding == "16UC1" else np.ascontiguousarray(depth, dtype=np.float32)
    h, w = depth.shape
    return types.get(IMAGE)(header=header_msg(stamp, frame_id, types=types), height=h, width=w, encoding=encoding,
                            is_bigendian=int(sys.byteorder == "big"), step=px.itemsize * w,
                            data=types.bytes_field(px))


def compressed_msg(rgb: np.ndarray, stamp: Stamp, frame_id: str, fmt: str = "jpeg", quality: int = 90, *,
                   types: MessageTypes | None = None) -> Any:
    """sensor_msgs/CompressedImage as image_transport's compressed plugin writes it (format string included)."""
    from PIL import Image as PILImage

    types = types or bag_types()
    buf = io.BytesIO()
    if fmt == "jpeg":
        PILImage.fromarray(rgb).save(buf, format="JPEG", quality=int(quality))
    elif fmt == "png":
        PILImage.fromarray(rgb).save(buf, format="PNG", compress_level=1)
    else:
        raise MessageError(f"compressed format must be jpeg or png, got {fmt!r}")
    return types.get(COMPRESSED_IMAGE)(header=header_msg(stamp, frame_id, types=types),
                                       format=f"rgb8; {fmt} compressed bgr8",
                                       data=types.bytes_field(np.frombuffer(buf.getvalue(), np.uint8)))


def cloud_msg(points: np.ndarray, rgb: np.ndarray, stamp: Stamp, frame_id: str, *,
              types: MessageTypes | None = None) -> Any:
    """Organised sensor_msgs/PointCloud2 XYZRGB (rgb packed in a float, as PCL and RViz read it).

    points: HxWx3 metres in the optical frame, NaN where depth is unknown (is_dense false).
    """
    types = types or bag_types()
    h, w = points.shape[:2]
    packed = ((rgb[..., 0].astype(np.uint32) << 16) | (rgb[..., 1].astype(np.uint32) << 8)
              | rgb[..., 2].astype(np.uint32))
    data = np.empty((h, w, 4), dtype=np.float32)
    data[..., :3] = points
    data[..., 3] = packed.view(np.float32)
    field = types.get("sensor_msgs/msg/PointField")
    fields = [field(name=n, offset=4 * i, datatype=7, count=1)  # 7: PointField.FLOAT32
              for i, n in enumerate(("x", "y", "z", "rgb"))]
    return types.get("sensor_msgs/msg/PointCloud2")(
        header=header_msg(stamp, frame_id, types=types), height=h, width=w, fields=fields,
        is_bigendian=sys.byteorder == "big", point_step=16, row_step=16 * w,
        is_dense=bool(np.isfinite(points).all()), data=types.bytes_field(data))


def _pixel_bytes(msg: Any) -> np.ndarray:
    data = msg.data
    if isinstance(data, np.ndarray):
        return data.reshape(-1).view(np.uint8) if data.dtype == np.uint8 else data.astype(np.uint8).reshape(-1)
    if isinstance(data, (list, tuple)):
        return np.asarray(data, dtype=np.uint8)
    return np.frombuffer(data, dtype=np.uint8)


def _rows(msg: Any, bytes_per_pixel: int, what: str, lenient_step: bool = False) -> np.ndarray:
    """HxW*bpp uint8 view of the pixel bytes, honouring step (row padding); clear errors."""
    h, w = int(msg.height), int(msg.width)
    _check_image_size(w, h)
    if h <= 0 or w <= 0:
        raise MessageError(f"image is empty ({w}x{h})")
    step = int(msg.step) or (w * bytes_per_pixel if lenient_step else 0)
    if step < w * bytes_per_pixel:
        raise MessageError(f"image step {step} is smaller than width {w} x {bytes_per_pixel} bytes per pixel")
    data = _pixel_bytes(msg)
    if data.size < step * h:
        raise MessageError(f"image data has {data.size} bytes, expected step {step} x height {h} = {step * h}; "
                           f"it does not fit {w}x{h} {what}")
    return data[: step * h].reshape(h, step)[:, : w * bytes_per_pixel]


def _check_image_size(width: int, height: int) -> None:
    """Refuse images larger than any camera can be (PinholeCamera's MAX_RESOLUTION a side)."""
    if width > MAX_RESOLUTION or height > MAX_RESOLUTION:
        raise MessageError(f"image is {width}x{height}, larger than {MAX_RESOLUTION} pixels a side")


def decode_image(msg: Any, msgtype: str | None = None, min_size: tuple[int, int] | None = None) -> np.ndarray:
    """HxWx3 uint8 RGB from an Image (rgb8/bgr8/rgba8/bgra8/mono8, alpha dropped) or a CompressedImage.

    ``msgtype`` (a bag connection's type) tells the two apart; without it a message with a
    ``format`` and no ``encoding`` is compressed. ``min_size`` (width, height) lets a JPEG decode
    at a reduced scale that still covers that size (faster when it is only going to be shrunk).
    """
    if msgtype is None:
        msgtype = COMPRESSED_IMAGE if hasattr(msg, "format") and not hasattr(msg, "encoding") else IMAGE
    if msgtype == COMPRESSED_IMAGE:
        return _decode_compressed(msg, min_size)
    if msgtype != IMAGE:
        raise MessageError(f"{msgtype} is not an image message (expected {IMAGE} or {COMPRESSED_IMAGE})")
    enc = str(msg.encoding).lower()
    if enc not in COLOUR_ENCODINGS:
        raise MessageError(f"image encoding {msg.encoding!r} is not supported; expected one of "
                           f"{', '.join(COLOUR_ENCODINGS)}")
    channels, order = COLOUR_ENCODINGS[enc]
    px = _rows(msg, channels, enc).reshape(int(msg.height), int(msg.width), channels)
    return np.ascontiguousarray(px[:, :, list(order)])


def _decode_compressed(msg: Any, min_size: tuple[int, int] | None) -> np.ndarray:
    from rtfm_ros.photo import PhotoError, decode_photo

    try:
        return decode_photo(bytes(_pixel_bytes(msg)), f"compressed image (format {msg.format!r})", draft=min_size)
    except PhotoError as e:
        raise MessageError(f"cannot decode {e}") from None


def decode_depth(msg: Any, keep_invalid: bool = False) -> np.ndarray:
    """HxW float32 metres from a 32FC1 (metres, REP 118) or 16UC1 (millimetres, 0 = none) Image.

    16UC1's 0 becomes NaN; other unknown pixels (NaN, inf, <= 0) also become NaN unless
    ``keep_invalid`` (to see a 32FC1 image exactly as published).
    """
    enc = str(msg.encoding).upper()
    if enc not in DEPTH_ENCODINGS:
        raise MessageError(f"depth image encoding {msg.encoding!r} is not supported; expected 32FC1 or 16UC1 "
                           "(metres or millimetres)")
    dt = DEPTH_ENCODINGS[enc].newbyteorder(">" if msg.is_bigendian else "<")
    rows = _rows(msg, dt.itemsize, enc, lenient_step=True)
    raw = np.ascontiguousarray(rows).view(dt).reshape(int(msg.height), int(msg.width))
    depth = raw.astype(np.float32)
    if dt.kind == "u":
        depth = depth / np.float32(1000.0)
        depth[raw == 0] = np.nan
    if keep_invalid:
        return depth
    with np.errstate(invalid="ignore"):
        return np.where(np.isfinite(depth) & (depth > 0), depth, np.nan).astype(np.float32)


# ------------------------------------------------------------------------------ cameras
def camera_info_msg(camera: PinholeCamera, stamp: Stamp, frame_id: str, calibration: CalibrationLike | None = None,
                    *, types: MessageTypes | None = None) -> Any:
    """CameraInfo in ROS's convention (integer pixel centres): a calibration's K, D, R, P as given,
    else an ideal pinhole (plumb_bob, d = 0, r = I, p = [K | 0])."""
    types = types or bag_types()
    d: Sequence[float]
    k: ArrayLike
    r: ArrayLike
    p: ArrayLike
    if calibration is not None:
        model, d, k, r, p = (calibration.distortion_model, calibration.d, calibration.k, calibration.r,
                             calibration.p)
    else:
        model, d, k, r, p = "plumb_bob", [0.0] * 5, opencv_k(camera), np.eye(3).reshape(-1), opencv_p(camera)
    roi = types.get("sensor_msgs/msg/RegionOfInterest")(x_offset=0, y_offset=0, height=0, width=0, do_rectify=False)
    return types.get(CAMERA_INFO)(
        header=header_msg(stamp, frame_id, types=types), height=camera.height, width=camera.width,
        distortion_model=model, d=types.floats_field(list(d)), k=np.asarray(k, dtype=np.float64),
        r=np.asarray(r, dtype=np.float64), p=np.asarray(p, dtype=np.float64), binning_x=0, binning_y=0, roi=roi)


def camera_from_info(msg: Any, ignore_distortion: bool = False) -> PinholeCamera:
    """PinholeCamera from CameraInfo k (ROS convention, converted); refuses uncalibrated, skewed or
    (unless ``ignore_distortion``) distorted cameras."""
    k = np.asarray(msg.k, dtype=np.float64).reshape(-1)
    if k.shape != (9,) or not np.all(np.isfinite(k)):
        raise MessageError(f"CameraInfo k must hold 9 finite values, got {k.tolist()}")
    if not np.any(k):
        raise MessageError("CameraInfo is uncalibrated (k is all zeros)")
    if k[1] != 0.0 or k[3] != 0.0 or k[6] != 0.0 or k[7] != 0.0 or k[8] != 1.0:
        raise MessageError(f"CameraInfo k is not a pinhole matrix [fx 0 cx; 0 fy cy; 0 0 1]: {k.tolist()}")
    d = np.asarray(msg.d, dtype=np.float64).reshape(-1)
    if np.any(d != 0.0) and not ignore_distortion:
        raise MessageError(f"CameraInfo has distortion {msg.distortion_model!r} d={d.tolist()}; only ideal "
                           "pinhole cameras are rendered (pass ignore_distortion=True to use k alone)")
    try:
        return camera_from_k(int(msg.width), int(msg.height), k)
    except GeometryError as e:
        raise MessageError(f"CameraInfo does not describe a usable camera: {e}") from e
