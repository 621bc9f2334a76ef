"""A bag's camera images as posed frames: decoded, placed by the bag's TF at their stamps, with
the CameraInfo nearest in time.

Importing a bag as a dataset (data.importers) and seeding a world from one (replay.seeding)
both place images this one way, so a bag gives the same frames to both.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from rtfm_ros.geometry import PinholeCamera, body_to_optical
from rtfm_ros.io.bags import BagError
from rtfm_ros.io.messages import MessageError, camera_from_info, decode_image, stamp_to_ns
from rtfm_ros.tf_buffer import ExtrapolationError, TransformBuffer, TransformLookupError

if TYPE_CHECKING:  # pragma: no cover
    from rosbags.highlevel import AnyReader

@dataclass
class PosedImage:
    """One placed image: optical-axes T_world_camera, and the camera matching the decoded size."""

    stamp_ns: int
    frame_id: str
    rgb: np.ndarray
    T_world_camera: np.ndarray
    camera: PinholeCamera
    info: Any  # the CameraInfo message the camera came from (its distortion is ignored)


class ImagePlacer:
    """Places images read from a bag; ``place`` returns None for one without TF at its stamp.

    ``infos`` are (stamp ns, CameraInfo) pairs, as bags.read_camera_info_msgs gives them.

    ``camera_frame`` overrides the images' header frame, ``default_frame`` stands in for an
    empty one; ``body_frames`` are frames with ROS body axes (x forward), turned to optical.
    ``world_frame`` None takes the root of the first camera frame's TF tree. With
    ``min_size`` a JPEG decodes at a reduced scale covering it, the camera scaled to match;
    otherwise an image whose size is not its CameraInfo's is refused.
    """

    def __init__(self, tf: TransformBuffer, infos: list[tuple[int, Any]], world_frame: str | None, *,
                 camera_frame: str | None = None, default_frame: str | None = None,
                 body_frames: Iterable[str] = (), min_size: tuple[int, int] | None = None) -> None:
        if not infos:
            raise BagError("no CameraInfo to place images with")
        self.tf, self.infos = tf, infos
        self._info_stamps = np.array([t for t, _ in infos], dtype=np.int64)
        self.world_frame = world_frame.lstrip("/") if world_frame else None
        self.camera_frame, self.default_frame = camera_frame, default_frame
        self.body_frames, self.min_size = set(body_frames), min_size
        self.frame_ids: set[str] = set()

    def frame_of(self, msg: Any) -> str:
        """The camera frame of an image message, checked against the bag's TF."""
        frame = (self.camera_frame or msg.header.frame_id.lstrip("/") or self.default_frame or "").lstrip("/")
        known = self.tf.frames()
        listing = ", ".join(sorted(known)) or "none: the bag has no /tf or /tf_static"
        if frame not in known:
            raise BagError(f"camera frame {frame!r} is not in the bag's TF; frames it has: {listing}")
        if self.world_frame is None:
            root = frame
            while self.tf.parent_of(root) is not None:
                root = self.tf.parent_of(root)
            self.world_frame = root
        elif self.world_frame not in known:
            raise BagError(f"world frame {self.world_frame!r} is not in the bag's TF; frames it has: {listing}")
        self.frame_ids.add(frame)
        return frame

    def pose(self, frame: str, stamp_ns: int) -> np.ndarray | None:
        """Optical T_world_camera of frame at stamp_ns; None where TF does not cover that time."""
        assert self.world_frame is not None
        try:
            T = self.tf.lookup(self.world_frame, frame, stamp_ns) if self.world_frame != frame else np.eye(4)
        except ExtrapolationError:
            return None
        return body_to_optical(T) if frame in self.body_frames else T

    def place(self, msg: Any, msgtype: str) -> PosedImage | None:
        """The posed frame of one image message (Image or CompressedImage), or None without TF."""
        stamp = stamp_to_ns(msg.header.stamp)
        frame = self.frame_of(msg)
        try:
            T = self.pose(frame, stamp)
        except TransformLookupError as e:
            raise BagError(f"no TF from {self.world_frame!r} to {frame!r}: {e}") from e
        if T is None:
            return None
        info = self.infos[int(np.argmin(np.abs(self._info_stamps - stamp)))][1]
        try:
            rgb = decode_image(msg, msgtype, self.min_size)
            camera = camera_from_info(info, ignore_distortion=True)
        except MessageError as e:
            raise BagError(f"image at {stamp} ns on frame {frame!r}: {e}") from e
        if (camera.width, camera.height) != (rgb.shape[1], rgb.shape[0]):
            if self.min_size is None:
                raise BagError(f"image is {rgb.shape[1]}x{rgb.shape[0]} but CameraInfo says "
                               f"{camera.width}x{camera.height}")
            camera = camera.scaled(rgb.shape[1], rgb.shape[0])
        return PosedImage(stamp, frame, rgb, T, camera, info)


def posed_images(reader: AnyReader, connections: list[Any], placer: ImagePlacer, stride: int = 1,
                 skipped: list[int] | None = None) -> Iterator[PosedImage]:
    """Every ``stride``-th image on connections, placed; the images without TF are counted in
    ``skipped[0]`` (when given) and left out."""
    for k, (conn, _, raw) in enumerate(reader.messages(connections=connections)):
        if k % stride:
            continue
        item = placer.place(reader.deserialize(raw, conn.msgtype), conn.msgtype)
        if item is None:
            if skipped is not None:
                skipped[0] += 1
            continue
        yield item
