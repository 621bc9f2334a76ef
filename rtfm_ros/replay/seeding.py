"""Seeding a world from a bag's real camera images, each placed at its TF pose."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from rtfm_ros.bags import COMPRESSED_IMAGE, IMAGE, camera_info_topic_for, connections_for, decode_depth, \
    decode_image, read_camera_infos, stamp_to_ns
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


DEPTH_PAIRING_NS = 50_000_000  # a depth image within 50 ms of a colour image belongs to it


def seed_world(wm: "WorldModel", reader: "AnyReader", tf: TransformBuffer, opt: ReplayOptions) -> tuple[int, int]:
    """Add the bag's camera images on opt.seed_topic to wm's memory at their TF poses; (added, skipped).

    With opt.seed_depth_topic each image takes the depth image nearest in time (within
    DEPTH_PAIRING_NS, registered to the colour camera: resized to it if needed) as its metric
    depth; images without one get stereo depth like any photo.
    """
    from tqdm import tqdm

    conns, stamps, cams = seed_sources(reader, opt)
    depth_conns = connections_for(reader, opt.seed_depth_topic, {IMAGE}) if opt.seed_depth_topic else []
    total = sum(c.msgcount for c in conns + depth_conns)
    added = skipped = seen = 0
    pending: list[tuple[int, np.ndarray, np.ndarray, PinholeCamera]] = []
    last_depth: tuple[int, np.ndarray] | None = None

    def place(item: tuple[int, np.ndarray, np.ndarray, PinholeCamera], depths: list[tuple[int, np.ndarray]]) -> None:
        t, rgb, T, cam = item
        near = [d for d in depths if abs(d[0] - t) <= DEPTH_PAIRING_NS]
        depth = min(near, key=lambda d: abs(d[0] - t))[1] if near else None
        if depth is not None and depth.shape != rgb.shape[:2]:
            depth = _resize_nearest(depth, rgb.shape[1], rgb.shape[0])
        wm.add_frame(rgb, T, cam, depth=depth, stamp=t / NS_PER_S, source="seed")

    msgs = reader.messages(connections=conns + depth_conns)
    for conn, _, raw in tqdm(msgs, total=total, desc="seeding", unit="img", disable=not opt.progress):
        msg = reader.deserialize(raw, conn.msgtype)
        t = stamp_to_ns(msg.header.stamp)
        if conn in depth_conns:
            d = (t, decode_depth(msg))
            for item in pending:
                place(item, [x for x in (last_depth, d) if x is not None])
                added += 1
            pending, last_depth = [], d
            continue
        seen += 1
        if (seen - 1) % opt.seed_stride:
            continue
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
        if depth_conns:
            pending.append((t, rgb, T, cam))  # waits for the next depth image (or the end)
            continue
        wm.add_frame(rgb, T, cam, stamp=t / NS_PER_S, source="seed")
        added += 1
    for item in pending:
        place(item, [last_depth] if last_depth is not None else [])
        added += 1
    if not added:
        raise ReplayError(f"no image on {opt.seed_topic} could be placed: none has TF from "
                          f"{opt.world_frame!r} at its stamp ({skipped} skipped)")
    return added, skipped


def _resize_nearest(depth: np.ndarray, width: int, height: int) -> np.ndarray:
    rows = (np.arange(height) * depth.shape[0] // height).clip(0, depth.shape[0] - 1)
    cols = (np.arange(width) * depth.shape[1] // width).clip(0, depth.shape[1] - 1)
    return np.ascontiguousarray(depth[rows][:, cols])
