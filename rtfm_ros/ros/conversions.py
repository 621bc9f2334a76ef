"""The node's message builders: rtfm_ros.io.messages with rclpy's own message classes.

rclpy publishers take only their generated classes, so the node builds with these; everything
else (decoding, CameraInfo -> camera, TF -> 4x4, stamps) is rtfm_ros.io.messages itself, which
reads rclpy and bag messages alike.
"""

from __future__ import annotations

import array
import functools
import importlib
from typing import Any

import numpy as np

from rtfm_ros.geometry import PinholeCamera
from rtfm_ros.io import messages, tf_messages
from rtfm_ros.io.messages import CalibrationLike, MessageTypes, Stamp


def _rclpy_class(name: str) -> type:
    package, _, typename = name.split("/")
    cls: type = getattr(importlib.import_module(f"{package}.msg"), typename)
    return cls


RCLPY = MessageTypes(get=functools.lru_cache(maxsize=None)(_rclpy_class),
                     bytes_field=lambda a: array.array("B", np.ascontiguousarray(a).tobytes()),
                     floats_field=lambda v: array.array("d", v))


def time_msg(stamp: Stamp) -> Any:
    """builtin_interfaces/Time (rclpy)."""
    return messages.time_msg(stamp, types=RCLPY)


def image_msg(rgb: np.ndarray, stamp: Stamp, frame_id: str) -> Any:
    """sensor_msgs/Image rgb8 (rclpy)."""
    return messages.image_msg(rgb, stamp, frame_id, types=RCLPY)


def depth_msg(depth: np.ndarray, stamp: Stamp, frame_id: str, encoding: str = "32FC1") -> Any:
    """sensor_msgs/Image 32FC1 or 16UC1 (rclpy)."""
    return messages.depth_msg(depth, stamp, frame_id, encoding, types=RCLPY)


def compressed_msg(rgb: np.ndarray, stamp: Stamp, frame_id: str, fmt: str = "jpeg", quality: int = 90) -> Any:
    """sensor_msgs/CompressedImage (rclpy)."""
    return messages.compressed_msg(rgb, stamp, frame_id, fmt, quality, types=RCLPY)


def cloud_msg(points: np.ndarray, rgb: np.ndarray, stamp: Stamp, frame_id: str) -> Any:
    """sensor_msgs/PointCloud2 XYZRGB (rclpy)."""
    return messages.cloud_msg(points, rgb, stamp, frame_id, types=RCLPY)


def camera_info_msg(camera: PinholeCamera, stamp: Stamp, frame_id: str,
                    calibration: CalibrationLike | None = None) -> Any:
    """sensor_msgs/CameraInfo (rclpy)."""
    return messages.camera_info_msg(camera, stamp, frame_id, calibration, types=RCLPY)


def transform_msg(T_parent_child: np.ndarray, parent: str, child: str, stamp: Stamp) -> Any:
    """geometry_msgs/TransformStamped (rclpy)."""
    return tf_messages.transform_msg(T_parent_child, parent, child, stamp, types=RCLPY)


def pose_msg(T: np.ndarray) -> Any:
    """geometry_msgs/Pose (rclpy)."""
    return tf_messages.pose_msg(T, types=RCLPY)
