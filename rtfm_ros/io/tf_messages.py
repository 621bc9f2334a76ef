"""TF and pose messages <-> 4x4 matrices, without rclpy: TransformStamped, TFMessage, Pose.

Readers only use message attributes (a bag's message and an rclpy one read the same) and
validate what they read; builders make their messages from ``types`` as in rtfm_ros.io.messages.
One bad transform in a TFMessage is skipped and reported, never dropping the good ones beside it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from rtfm_ros.geometry import GeometryError, transform_from_ros, transform_to_ros, validate_transform
from rtfm_ros.io.messages import TF_MESSAGE, MessageTypes, Stamp, bag_types, header_msg, stamp_to_ns
from rtfm_ros.tf_buffer import TransformBuffer


def _matrix(translation: Any, rotation: Any, what: str) -> np.ndarray:
    try:
        return transform_from_ros((translation.x, translation.y, translation.z),
                                  (rotation.x, rotation.y, rotation.z, rotation.w))
    except GeometryError as e:
        raise GeometryError(f"{what}: {e}") from e


def transform_to_matrix(msg: Any) -> np.ndarray:
    """4x4 T_parent_child of a TransformStamped (parent = header.frame_id), validated."""
    return _matrix(msg.transform.translation, msg.transform.rotation,
                   f"transform {msg.header.frame_id} -> {msg.child_frame_id}")


def pose_to_matrix(pose: Any) -> np.ndarray:
    """4x4 from a geometry_msgs/Pose (the pose of a frame in its header's frame)."""
    return _matrix(pose.position, pose.orientation, "pose")


def _vector_quaternion(T: np.ndarray, what: str, types: MessageTypes, point: bool) -> tuple[Any, Any]:
    t, q = transform_to_ros(validate_transform(T, what))
    vec = types.get("geometry_msgs/msg/Point" if point else "geometry_msgs/msg/Vector3")(
        x=float(t[0]), y=float(t[1]), z=float(t[2]))
    quat = types.get("geometry_msgs/msg/Quaternion")(x=float(q[0]), y=float(q[1]), z=float(q[2]), w=float(q[3]))
    return vec, quat


def transform_msg(T_parent_child: np.ndarray, parent: str, child: str, stamp: Stamp, *,
                  types: MessageTypes | None = None) -> Any:
    """geometry_msgs/TransformStamped from a 4x4 T_parent_child."""
    types = types or bag_types()
    vec, quat = _vector_quaternion(T_parent_child, f"transform {parent} -> {child}", types, point=False)
    return types.get("geometry_msgs/msg/TransformStamped")(
        header=header_msg(stamp, parent, types=types), child_frame_id=child,
        transform=types.get("geometry_msgs/msg/Transform")(translation=vec, rotation=quat))


def tf_msg(transforms: Sequence[tuple[str, str, np.ndarray]], stamp: Stamp, *,
           types: MessageTypes | None = None) -> Any:
    """tf2_msgs/TFMessage from (parent, child, T_parent_child) triples, all at one stamp."""
    types = types or bag_types()
    return types.get(TF_MESSAGE)(transforms=[transform_msg(T, parent, child, stamp, types=types)
                                             for parent, child, T in transforms])


def pose_msg(T: np.ndarray, *, types: MessageTypes | None = None) -> Any:
    """geometry_msgs/Pose from a 4x4 transform."""
    types = types or bag_types()
    point, quat = _vector_quaternion(T, "pose", types, point=True)
    return types.get("geometry_msgs/msg/Pose")(position=point, orientation=quat)


def feed_tf_message(buffer: TransformBuffer, msg: Any, static: bool) -> list[GeometryError]:
    """Push every transform of a tf2_msgs/TFMessage into buffer; bad ones are skipped and returned.

    One bad transform (NaN, a second parent) must not drop the good ones published beside it.
    """
    errors: list[GeometryError] = []
    for tf in msg.transforms:
        parent, child = tf.header.frame_id, tf.child_frame_id
        try:
            buffer.set_transform(parent, child, stamp_to_ns(tf.header.stamp), transform_to_matrix(tf), static)
        except GeometryError as e:
            errors.append(type(e)(f"skipped {'static ' if static else ''}transform {parent!r} -> {child!r}: {e}"))
    return errors
