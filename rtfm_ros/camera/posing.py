"""Which pose a camera renders at a tick, and the time its image is stamped with.

A robot's TF arrives at 10-50 Hz and a little late, so at a tick's time the newest transform is
usually some milliseconds old: looking TF up at the tick's time alone lost a third of the frames.
The policy (README, "Pose timing"), in order:

1. TF already reaches the tick's time: that pose, stamped with the tick.
2. Otherwise (not in lockstep) the newest pose of the chain world_frame -> camera_frame, when it
   is at most ``tf_tolerance`` older than the tick and newer than the camera's last image: that
   pose, stamped with the pose's own time. Nothing is extrapolated; the image, its camera_info and
   TF agree exactly at its stamp, as a real driver stamps an image with its capture time.
3. Otherwise wait up to ``tf_timeout`` for TF to reach the tick's time (lockstep always does:
   its images carry their ticks' times).
4. Otherwise the camera is skipped for that tick and the reason counted.

ROS-free: the node's TfSource is one PoseSource; tests may pass a TransformBuffer-backed one.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from rtfm_ros.tf_buffer import ExtrapolationError, TransformLookupError


class PoseSource(Protocol):
    """Where camera poses come from (the node: TF; rtfm_ros.ros.tf_source.TfSource)."""

    def note_time(self, now_ns: int) -> bool:
        """Record the current time; True when time jumped backwards and the poses were forgotten."""
        ...

    def lookup(self, target: str, source: str, stamp_ns: int, timeout_s: float) -> np.ndarray:
        """T_target_source at stamp_ns, waiting up to timeout_s (TransformLookupError when not known)."""
        ...

    def latest_time(self, target: str, source: str) -> int:
        """Newest stamp at which target <-> source can be looked up (0: every edge is static)."""
        ...


@dataclass(frozen=True)
class Posed:
    """A camera's pose for one tick and the stamp of its image."""

    T: np.ndarray       # T_world_frame_camera_frame, as TF gives it
    stamp_ns: int
    newest: bool        # stamped with the newest pose's time rather than the tick's


class PoseTiming:
    """Applies the policy above, remembering each camera's last stamp (stamps never repeat)."""

    def __init__(self, tf: PoseSource) -> None:
        self.tf = tf
        self._last: dict[str, int] = {}
        self._lock = threading.Lock()

    def forget(self) -> None:
        """Time jumped back (bag loop, simulator reset): earlier stamps no longer bound new ones."""
        with self._lock:
            self._last.clear()

    def published(self, camera: str, stamp_ns: int) -> None:
        """Record the stamp a camera's image went out with."""
        with self._lock:
            self._last[camera] = max(stamp_ns, self._last.get(camera, 0))

    def resolve(self, world_frame: str, camera_frame: str, camera: str, tick_ns: int, *, tolerance_s: float,
                deadline: float, exact: bool = False) -> Posed:
        """The pose and stamp for one camera at tick_ns; TransformLookupError when TF has neither.

        ``deadline`` (time.monotonic()) bounds the wait of step 3; ``exact`` (lockstep) skips step 2.
        """
        try:
            return Posed(self.tf.lookup(world_frame, camera_frame, tick_ns, 0.0), tick_ns, False)
        except TransformLookupError as e:
            first = e
        if isinstance(first, ExtrapolationError) and not exact and tolerance_s > 0:
            try:
                newest = self.tf.latest_time(world_frame, camera_frame)
            except TransformLookupError:
                newest = 0
            with self._lock:
                last = self._last.get(camera, 0)
            if last < newest < tick_ns and tick_ns - newest <= int(tolerance_s * 1e9):
                try:
                    return Posed(self.tf.lookup(world_frame, camera_frame, newest, 0.0), newest, True)
                except TransformLookupError:
                    pass  # TF changed between the two lookups: wait for the tick's time instead
        left = deadline - time.monotonic()
        if left <= 0:
            raise first
        return Posed(self.tf.lookup(world_frame, camera_frame, tick_ns, left), tick_ns, False)
