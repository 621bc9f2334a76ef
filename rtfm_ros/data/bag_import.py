"""A ROS 2 bag -> a clip: its camera images placed by its TF, with their depth where it has any.

Images: sensor_msgs Image rgb8/bgr8/mono8/rgba8/bgra8, or CompressedImage jpeg/png; intrinsics
from CameraInfo (the message closest in time to each image); the pose of the camera frame in a
world frame from /tf + /tf_static at each image's stamp (io.bag_frames). Depth: an Image topic in
16UC1 or 32FC1 registered to the images (data.depth_maps).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from rtfm_ros.data.clips import Clip
from rtfm_ros.data.depth_maps import DepthMapError, crop_square, match_image, nearest_stamp
from rtfm_ros.data.import_common import ImportDataError, assemble, fit_image
from rtfm_ros.io.messages import CAMERA_INFO, COMPRESSED_IMAGE, DEPTH_ENCODINGS, IMAGE

IMAGE_TYPES = (IMAGE, COMPRESSED_IMAGE)
INFO_TYPE = CAMERA_INFO


def _pick_topic(conns: list[Any], types: tuple[str, ...], wanted: str | None, what: str) -> Any:
    found = [c for c in conns if c.msgtype in types]
    if wanted is not None:
        match = [c for c in found if c.topic == wanted]
        if not match:
            raise ImportDataError(f"no {what} topic {wanted!r} in the bag; it has: "
                                  f"{', '.join(sorted({c.topic for c in found})) or 'none'}")
        return match[0]
    topics = sorted({c.topic for c in found})
    if not topics:
        raise ImportDataError(f"the bag has no {what} topic ({' or '.join(t.rsplit('/', 1)[-1] for t in types)}); "
                              f"its topics: {', '.join(sorted({c.topic for c in conns})) or 'none'}")
    if len(topics) != 1:
        raise ImportDataError(f"the bag has {len(topics)} {what} topics ({', '.join(topics) or 'none'}); choose one")
    return next(c for c in found if c.topic == topics[0])


def import_bag(path: str | Path, *, image_topic: str | None = None, camera_info_topic: str | None = None,
               camera_frame: str | None = None, world_frame: str | None = None, res: int | None = None,
               max_frames: int | None = None, depth_topic: str | None = None, no_depth: bool = False) -> Clip:
    """One clip from a ROS 2 bag (folder, .mcap or .db3): every image with a TF pose at its stamp,
    and its depth where the bag has a depth topic registered to the images (depth_maps)."""
    from rtfm_ros.io.bag_frames import ImagePlacer, posed_images
    from rtfm_ros.io.bags import BagError, load_tf, open_bag, read_camera_info_msgs
    from rtfm_ros.io.messages import MessageError, decode_depth, ns_to_seconds, stamp_to_ns

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"bag {path} not found")
    try:
        reader = open_bag(path)
    except BagError as exc:
        raise ImportDataError(str(exc)) from exc
    try:
        conns = reader.connections
        first = {c.topic: _first_message(reader, c) for c in conns if c.msgtype == IMAGE}
        depth_conns = [c for c in conns if c.msgtype == IMAGE and first[c.topic] is not None
                       and str(first[c.topic].encoding).upper() in DEPTH_ENCODINGS]
        img_conn = _pick_topic([c for c in conns if c not in depth_conns], IMAGE_TYPES, image_topic, "image")
        infos = [c for c in conns if c.msgtype == INFO_TYPE]
        if camera_info_topic is None and len(infos) > 1:  # prefer the one next to the images
            ns = img_conn.topic.rsplit("/", 2)[0]
            near = [c for c in infos if c.topic.startswith(ns + "/")]
            camera_info_topic = near[0].topic if len(near) == 1 else None
        info_conn = _pick_topic(conns, (INFO_TYPE,), camera_info_topic, "CameraInfo")
        depth_conn = None if no_depth else _pick_depth_topic(reader, img_conn, depth_conns, first, depth_topic)
        depth_msgs: list[tuple[int, Any]] = []
        if depth_conn is not None:
            for c, _, raw in reader.messages(connections=[depth_conn]):
                msg: Any = reader.deserialize(raw, c.msgtype)
                depth_msgs.append((stamp_to_ns(msg.header.stamp), msg))
            depth_msgs.sort(key=lambda item: item[0])
        depth_stamps = np.array([t for t, _ in depth_msgs], dtype=np.int64)
        frames, skipped, distortion = [], [0], None
        depths: list[np.ndarray | None] = []
        try:
            tf, _ = load_tf(reader)  # the whole bag's TF, so lookups do not depend on logging order
            placer = ImagePlacer(tf, read_camera_info_msgs(reader, info_conn.topic), world_frame,
                                 camera_frame=camera_frame)
            for item in posed_images(reader, [img_conn], placer, skipped=skipped):
                distortion = {"model": item.info.distortion_model, "d": [float(v) for v in item.info.d]}
                k = nearest_stamp(depth_stamps, item.stamp_ns)
                if k is None:
                    depths.append(None)
                else:
                    where = f"depth at {depth_msgs[k][0]} ns on {depth_conn.topic if depth_conn else ''}"
                    try:
                        d = match_image(decode_depth(depth_msgs[k][1]), item.rgb.shape[1], item.rgb.shape[0], where)
                    except (MessageError, DepthMapError) as exc:
                        raise ImportDataError(str(exc)) from None
                    depths.append(crop_square(d, res))
                rgb, camera = fit_image(item.rgb, item.camera, res)
                frames.append((ns_to_seconds(item.stamp_ns), rgb, item.T_world_camera, camera))
                if max_frames is not None and len(frames) >= max_frames:
                    break
        except BagError as exc:
            raise ImportDataError(str(exc)) from exc
        world_frame, frame_ids = placer.world_frame, placer.frame_ids
    finally:
        reader.close()
    n_skipped = skipped[0]
    if not frames:
        raise ImportDataError(f"no image in {path} on {img_conn.topic} has a TF pose "
                              f"({world_frame} <- {', '.join(sorted(frame_ids)) or '?'}); {n_skipped} skipped")
    meta = {"source": "rosbag", "path": str(path), "image_topic": img_conn.topic, "camera_info_topic": info_conn.topic,
            "camera_frame": sorted(frame_ids)[0], "world_frame": world_frame, "skipped_no_tf": n_skipped,
            "distortion_ignored": distortion, "depth_topic": depth_conn.topic if depth_conn else None,
            "frames_without_depth": sum(d is None for d in depths) if depth_conn else None}
    return assemble(frames, meta, depths)


def _first_message(reader: Any, conn: Any) -> Any:
    """The first message of a connection, deserialised (None when it has none)."""
    for c, _, raw in reader.messages(connections=[conn]):
        return reader.deserialize(raw, c.msgtype)
    return None


def _pick_depth_topic(reader: Any, img_conn: Any, depth_conns: list[Any], first: dict[str, Any],
                      wanted: str | None) -> Any:
    """The depth topic registered to the images: the one named, else the only depth topic in the
    images' frame (a depth camera's own frame needs a reprojection this importer does not do)."""
    if wanted is not None:
        return _pick_topic(depth_conns, (IMAGE,), wanted, "depth image (16UC1 or 32FC1)")
    colour = first.get(img_conn.topic) or _first_message(reader, img_conn)
    frame = str(colour.header.frame_id).lstrip("/") if colour is not None else None
    same = [c for c in depth_conns if str(first[c.topic].header.frame_id).lstrip("/") == frame]
    if len(same) > 1:
        raise ImportDataError(f"the bag has {len(same)} depth topics in the images' frame {frame!r} "
                              f"({', '.join(sorted(c.topic for c in same))}); choose one (--depth-topic) or --no-depth")
    return same[0] if same else None
