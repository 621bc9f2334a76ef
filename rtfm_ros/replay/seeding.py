"""Seeding a world from a bag's real camera images, each placed at its TF pose."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from rtfm_ros.data.depth_maps import DepthMapError, match_image, nearest_stamp
from rtfm_ros.io.bag_frames import ImagePlacer, PosedImage
from rtfm_ros.io.bags import BagError, camera_info_topic_for, connections_for, read_camera_info_msgs
from rtfm_ros.io.messages import COMPRESSED_IMAGE, IMAGE, MessageError, decode_depth, ns_to_seconds, stamp_to_ns
from rtfm_ros.replay.options import ReplayError, ReplayOptions
from rtfm_ros.tf_buffer import TransformBuffer

if TYPE_CHECKING:  # pragma: no cover
    from rosbags.highlevel import AnyReader

    from rtfm_ros.world import WorldModel


def seed_sources(reader: AnyReader, opt: ReplayOptions) -> tuple[list[Any], list[tuple[int, Any]]]:
    """Seed image connections and their CameraInfo messages (stamp, message), checked before any work."""
    conns = connections_for(reader, opt.seed_topic or "", {IMAGE, COMPRESSED_IMAGE})
    info_topic = opt.seed_camera_info_topic or camera_info_topic_for(reader, opt.seed_topic or "")
    return conns, read_camera_info_msgs(reader, info_topic)


def seed_world(wm: WorldModel, reader: AnyReader, tf: TransformBuffer, opt: ReplayOptions) -> tuple[int, int]:
    """Add the bag's camera images on opt.seed_topic to wm's memory at their TF poses; (added, skipped).

    With opt.seed_depth_topic each image takes the depth image nearest in time (within
    depth_maps.DEPTH_SYNC_NS, as imports pair them; registered to the colour camera: resized to it
    at the nearest pixel if needed, refused at another aspect) as its metric depth; images
    without one get stereo depth like any photo.
    """
    from tqdm import tqdm

    conns, infos = seed_sources(reader, opt)
    placer = ImagePlacer(tf, infos, opt.world_frame, default_frame=opt.camera_frame,
                         body_frames=[opt.camera_frame] if opt.body_frame else [],
                         min_size=(wm.config.max_frame_side,) * 2)  # stored at most that size
    depth_conns = connections_for(reader, opt.seed_depth_topic, {IMAGE}) if opt.seed_depth_topic else []
    total = sum(c.msgcount for c in conns + depth_conns)
    added = skipped = seen = 0
    pending: list[PosedImage] = []
    last_depth: tuple[int, np.ndarray] | None = None

    ids: list[int] = []

    def place(item: PosedImage, depths: list[tuple[int, np.ndarray]]) -> None:
        t, rgb = item.stamp_ns, item.rgb
        k = nearest_stamp(np.array([s for s, _ in depths], dtype=np.int64), t)
        depth = None if k is None else depths[k][1]
        if depth is not None:
            try:
                depth = match_image(depth, rgb.shape[1], rgb.shape[0], f"depth image on {opt.seed_depth_topic}")
            except DepthMapError as e:
                raise BagError(str(e)) from e
        ids.append(wm.add_frame(rgb, item.T_world_camera, item.camera, depth=depth, stamp=ns_to_seconds(t),
                                source="seed", defer_depth=True))  # stereo once all neighbours are in

    msgs = reader.messages(connections=conns + depth_conns)
    for conn, _, raw in tqdm(msgs, total=total, desc="seeding", unit="img", disable=not opt.progress):
        msg: Any = reader.deserialize(raw, conn.msgtype)  # an Image or CompressedImage
        if conn in depth_conns:
            try:
                d = (stamp_to_ns(msg.header.stamp), decode_depth(msg))
            except MessageError as e:
                raise BagError(f"depth image on {conn.topic}: {e}") from e
            for item in pending:
                place(item, [x for x in (last_depth, d) if x is not None])
                added += 1
            pending, last_depth = [], d
            continue
        seen += 1
        if (seen - 1) % opt.seed_stride:
            continue
        posed = placer.place(msg, conn.msgtype)
        if posed is None:
            skipped += 1
            continue
        if depth_conns:
            pending.append(posed)  # waits for the next depth image (or the end)
            continue
        place(posed, [])
        added += 1
    for item in pending:
        place(item, [last_depth] if last_depth is not None else [])
        added += 1
    if not added:
        raise ReplayError(f"no image on {opt.seed_topic} could be placed: none has TF from "
                          f"{opt.world_frame!r} at its stamp ({skipped} skipped)")
    for fid in tqdm(ids, desc="estimating depth", unit="frame", disable=not opt.progress):
        wm.prepare(fid)
    return added, skipped


