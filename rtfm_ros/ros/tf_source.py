"""One TF interface over tf2_ros.Buffer (system ROS 2) or the project's TransformBuffer (pip set-up).

The node subscribes /tf and /tf_static itself and feeds whichever buffer is available, so both
back-ends see the same data, skip the same bad transforms and raise the same errors
(FrameNotFound / ConnectivityError / ExtrapolationError from rtfm_ros.tf_buffer).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

import numpy as np

from rtfm_ros.geometry import R_BODY_OPTICAL, GeometryError, make_transform
from rtfm_ros.io.tf_messages import feed_tf_message, transform_to_matrix
from rtfm_ros.ros.conversions import transform_msg
from rtfm_ros.tf_buffer import (
    NS_PER_S,
    ConnectivityError,
    ExtrapolationError,
    FrameNotFound,
    TransformBuffer,
    TransformLookupError,
    clean_frame_id,
)

try:  # only with a system ROS 2
    import tf2_ros  # type: ignore[import-not-found]
    from rclpy.duration import Duration
    from rclpy.time import Time
except ImportError:  # pragma: no cover - depends on the installation
    tf2_ros = None

# A clock this far behind the last one seen means time jumped back (bag loop, simulator reset).
JUMP_BACK_S = 1.0
_POLL_S = 0.002  # tf2_ros has no wake-up on new data: poll while waiting


class TfSource:
    """Feed TF messages in, look poses up (optionally waiting for data to arrive)."""

    def __init__(self, cache_time_s: float = 10.0, use_tf2: bool | None = None) -> None:
        use_tf2 = tf2_ros is not None if use_tf2 is None else use_tf2
        if use_tf2 and tf2_ros is None:
            raise RuntimeError("tf2_ros is not installed")
        self.backend = "tf2_ros" if use_tf2 else "rtfm_ros.tf_buffer"
        self._tf2 = tf2_ros.Buffer(cache_time=Duration(seconds=cache_time_s)) if use_tf2 else None
        self._own = None if use_tf2 else TransformBuffer(cache_time_s=cache_time_s, jump_threshold_s=JUMP_BACK_S)
        self._last_now_ns: int | None = None
        self.resets = 0

    def _tf2_buffer(self) -> Any:
        """The tf2_ros.Buffer: set exactly when the project's own buffer is not."""
        assert self._tf2 is not None
        return self._tf2

    # ------------------------------------------------------------------ writing
    def feed(self, msg: Any, static: bool) -> list[GeometryError]:
        """Store a tf2_msgs/TFMessage; returns the transforms skipped (NaN, bad names, second parents)."""
        if self._own is not None:
            before = self._own.resets
            skipped = feed_tf_message(self._own, msg, static)
            self.resets += self._own.resets - before
            return skipped
        tf2 = self._tf2_buffer()
        errors: list[GeometryError] = []
        for tf in msg.transforms:
            try:
                clean_frame_id(tf.header.frame_id), clean_frame_id(tf.child_frame_id)
                transform_to_matrix(tf)  # refuse NaN / non-unit quaternions before tf2 sees them
                if static:
                    tf2.set_transform_static(tf, "rtfm_camera")
                else:
                    tf2.set_transform(tf, "rtfm_camera")
            except GeometryError as e:
                errors.append(type(e)(f"skipped transform {tf.header.frame_id!r} -> {tf.child_frame_id!r}: {e}"))
            except Exception as e:  # noqa: BLE001 - tf2's own refusals
                errors.append(GeometryError(f"skipped transform {tf.header.frame_id!r} -> "
                                            f"{tf.child_frame_id!r}: {e}"))
        return errors

    def note_time(self, now_ns: int) -> bool:
        """Give the node's clock; a jump back by more than JUMP_BACK_S clears dynamic TF. True if cleared."""
        if self._own is not None:
            cleared = self._own.note_time(now_ns)
        else:
            cleared = self._last_now_ns is not None and now_ns < self._last_now_ns - int(JUMP_BACK_S * NS_PER_S)
            if cleared:
                self._tf2_buffer().clear()
        self._last_now_ns = now_ns
        self.resets += int(cleared)
        return cleared

    def clear(self) -> None:
        """Forget dynamic transforms (static ones stay, as tf2's Buffer.clear does for latched data)."""
        if self._own is not None:
            self._own.clear()
        else:
            self._tf2_buffer().clear()

    # ------------------------------------------------------------------ reading
    def lookup(self, target: str, source: str, stamp_ns: int, timeout_s: float = 0.0) -> np.ndarray:
        """T_target_source at stamp_ns, waiting up to timeout_s for the data; raises TransformLookupError."""
        if self._own is not None:
            if timeout_s <= 0:
                return self._own.lookup(target, source, stamp_ns)
            return self._own.wait_for(target, source, stamp_ns, timeout_s)
        tf2 = self._tf2_buffer()
        deadline = time.monotonic() + max(0.0, timeout_s)
        while True:
            try:
                tf = tf2.lookup_transform(target, source, Time(nanoseconds=stamp_ns))
                return transform_to_matrix(tf)
            except tf2_ros.TransformException as e:
                if time.monotonic() >= deadline:
                    raise _translate(e) from None
            time.sleep(_POLL_S)


    def latest_time(self, target: str, source: str) -> int:
        """Newest stamp at which target <-> source can be looked up (0 when every edge is static)."""
        if self._own is not None:
            return self._own.latest_common_time(target, source)
        try:
            tf = self._tf2_buffer().lookup_transform(target, source, Time())
        except tf2_ros.TransformException as e:
            raise _translate(e) from None
        return int(tf.header.stamp.sec) * NS_PER_S + int(tf.header.stamp.nanosec)


def optical_frame_transforms(cameras: Iterable[Any], stamp_ns: int) -> list[Any]:
    """camera_frame -> optical frame (the REP-103 rotation) of each body-axes camera, for /tf_static."""
    tfs = {c.optical_frame: transform_msg(make_transform(R_BODY_OPTICAL), c.camera_frame,
                                                        c.optical_frame, stamp_ns) for c in cameras if c.body}
    return list(tfs.values())


def _translate(e: Exception) -> TransformLookupError:
    """tf2's exceptions as the project's lookup errors (same messages)."""
    if isinstance(e, tf2_ros.ExtrapolationException):
        return ExtrapolationError(str(e))
    if isinstance(e, tf2_ros.ConnectivityException):
        return ConnectivityError(str(e))
    if isinstance(e, tf2_ros.LookupException):
        return FrameNotFound(str(e))
    return TransformLookupError(str(e))

