"""Stereo pairs: where the right camera of a rectified pair is, from TF between the two cameras.

A rectified pair's right camera sits on the left one's x axis with the same orientation, so
stereo_image_proc, VSLAM and RTAB-Map can match rows and read the baseline B from the right
camera's P[0,3] = -fx * B. The baseline comes from TF between the two optical frames (the mount,
usually static); a mount that is turned or offset off that axis is still rendered as the
rectified pair it is closest to (the rectification a real stereo driver applies) and said so.
"""

from __future__ import annotations

import math

import numpy as np

from rtfm_ros.camera.cameras import CameraSpec
from rtfm_ros.camera.posing import PoseSource
from rtfm_ros.geometry import R_BODY_OPTICAL, invert, make_transform

MOUNT_ANGLE_DEG = 0.5     # a mount turned more than this off the left camera is not rectified
MOUNT_OFFSET_SHARE = 0.01  # nor one offset off the x axis by more than this share of the baseline


class StereoError(ValueError):
    """A pair whose right camera is not to the right of its left camera."""


def _axes(spec: CameraSpec) -> np.ndarray:
    return make_transform(R_BODY_OPTICAL) if spec.body else np.eye(4)


def right_offset(tf: PoseSource, left: CameraSpec, right: CameraSpec, stamp_ns: int) -> tuple[np.ndarray, float, str]:
    """(T_left_optical_right_optical of the rectified pair, baseline B in metres, a note if the
    mount is not rectified as given, else ''). TransformLookupError, or StereoError when B <= 0."""
    T = tf.lookup(left.camera_frame, right.camera_frame, stamp_ns, 0.0)
    T_lr = invert(_axes(left)) @ T @ _axes(right)
    baseline = float(T_lr[0, 3])
    if baseline <= 0:
        raise StereoError(f"camera {right.name!r} is not to the right of camera {left.name!r} (x {baseline:+.4f} m "
                          f"in {left.optical_frame}): a right camera's baseline must be positive")
    angle = math.degrees(math.acos(float(np.clip((np.trace(T_lr[:3, :3]) - 1) / 2, -1.0, 1.0))))
    off = math.hypot(float(T_lr[1, 3]), float(T_lr[2, 3]))
    note = ""
    if angle > MOUNT_ANGLE_DEG or off > MOUNT_OFFSET_SHARE * baseline:
        note = (f"stereo mount {left.camera_frame} -> {right.camera_frame} is turned {angle:.2f} deg and "
                f"{off * 1000:.1f} mm off the baseline: rendering the rectified pair, baseline {baseline:.4f} m")
    return make_transform(translation=(baseline, 0.0, 0.0)), baseline, note
