"""Seeding a world from a bag's real camera images, each placed at its TF pose."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from rtfm_ros.bags import COMPRESSED_IMAGE, IMAGE, camera_info_topic_for, connections_for, decode_image, \
    read_camera_infos, stamp_to_ns
from rtfm_ros.geometry import PinholeCamera
from rtfm_ros.replay.options import ReplayError, ReplayOptions
from rtfm_ros.replay.trajectory import camera_pose, check_frames
from rtfm_ros.tf_buffer import NS_PER_S, ExtrapolationError, TransformBuffer

if TYPE_CHECKING:  # pragma: no cover
    from rosbags.highlevel import AnyReader

    from rtfm_ros.world import WorldModel


def seed_sources(reader: "AnyReader", opt: ReplayOptions) -> tuple[list, np.ndarray, list[PinholeCamera]]:
    """Seed image connections and their CameraInfo (stamps, cameras), checked before any work."""
    conns = connections_for(reader, opt.seed_topic or "", {IMAGE, COMPRESSED_IMAGE})
    info_topic = opt.seed_camera_info_topic or camera_info_topic_for(reader, opt.seed_topic or "")
    stamps, cams = read_camera_infos(reader, info_topic)
    return conns, stamps, cams


def seed_world(wm: "WorldModel", reader: "AnyReader", tf: TransformBuffer, opt: ReplayOptions) -> tuple[int, int]:
    """Add the bag's camera images on opt.seed_topic to wm's memory at their TF poses; (added, skipped)."""
    from tqdm import tqdm

    conns, stamps, cams = seed_sources(reader, opt)
    total = sum(c.msgcount for c in conns)
    added = skipped = 0
    msgs = reader.messages(connections=conns)
    for i, (conn, _, raw) in enumerate(tqdm(msgs, total=total, desc="seeding", unit="img", disable=not opt.progress)):
        if i % opt.seed_stride:
            continue
        msg = reader.deserialize(raw, conn.msgtype)
        t = stamp_to_ns(msg.header.stamp)
        frame = msg.header.frame_id.lstrip("/") or opt.camera_frame
        check_frames(tf, frame)
        try:
            T = camera_pose(tf, opt.world_frame, frame, t, opt.body_frame and frame == opt.camera_frame)
        except ExtrapolationError:
            skipped += 1
            continue
        rgb = decode_image(msg, conn.msgtype, (wm.max_frame_side,) * 2)  # stored at most that size
        cam = cams[int(np.argmin(np.abs(stamps - t)))]
        if (cam.width, cam.height) != (rgb.shape[1], rgb.shape[0]):
            cam = cam.scaled(rgb.shape[1], rgb.shape[0])
        wm.add_frame(rgb, T, cam, stamp=t / NS_PER_S, source="seed")
        added += 1
    if not added:
        raise ReplayError(f"no image on {opt.seed_topic} could be placed: none has TF from "
                          f"{opt.world_frame!r} at its stamp ({skipped} skipped)")
    return added, skipped
