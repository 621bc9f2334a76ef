"""ROS 2 bags (MCAP or sqlite3) written and read with the ``rosbags`` library, no ROS needed.

Bag replay and the demo write camera output (Image, depth, CameraInfo, TF) offline, where
rclpy is not available. A bag is written under a hidden temporary name next to its final path
and renamed into place only when it is complete, so a crash or an error never leaves a
half-written bag where a finished one is expected. Readers decode the few message kinds replay
needs (TF, camera images incl. CompressedImage via Pillow, CameraInfo) from any ROS 2 bag.
"""

from __future__ import annotations

import functools
import io
from pathlib import Path
from types import TracebackType
from typing import Any, Iterable, Iterator, Sequence

import numpy as np
from rosbags.highlevel import AnyReader
from rosbags.interfaces import Connection, Qos, QosDurability, QosHistory, QosLiveliness, QosReliability, QosTime
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.typesys import Stores, get_typestore
from rosbags.typesys.store import Typestore

from rtfm_ros.atomic import AtomicPath
from rtfm_ros.geometry import MAX_RESOLUTION, PinholeCamera, matrix_to_quat, transform_from_ros, validate_transform
from rtfm_ros.geometry import camera_from_k, opencv_k, opencv_p
from rtfm_ros.tf_buffer import NS_PER_S, TransformBuffer

STORAGES = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}
IMAGE = "sensor_msgs/msg/Image"
COMPRESSED_IMAGE = "sensor_msgs/msg/CompressedImage"
CAMERA_INFO = "sensor_msgs/msg/CameraInfo"
TF_MESSAGE = "tf2_msgs/msg/TFMessage"
TF_TOPIC, TF_STATIC_TOPIC = "/tf", "/tf_static"
_INT32_MAX = 2**31 - 1
_FOREVER = QosTime(sec=9223372036, nsec=854775807)  # rmw's "infinite" duration
# Latched, as tf2_ros's static broadcaster offers it, so players republish it to late joiners.
TF_STATIC_QOS = Qos(QosHistory.KEEP_LAST, 1, QosReliability.RELIABLE, QosDurability.TRANSIENT_LOCAL,
                    _FOREVER, _FOREVER, QosLiveliness.AUTOMATIC, _FOREVER, False)
# Colour encodings read: (channels, indices of R, G, B).
_ENCODINGS = {"rgb8": (3, (0, 1, 2)), "bgr8": (3, (2, 1, 0)), "rgba8": (4, (0, 1, 2)),
              "bgra8": (4, (2, 1, 0)), "mono8": (1, (0, 0, 0))}


class BagError(ValueError):
    """A bag that cannot be written or read as asked (exists, corrupt, empty, wrong types...)."""


@functools.lru_cache(maxsize=1)
def typestore() -> Typestore:
    """The newest ROS 2 message typestore this rosbags release ships."""
    for name in ("ROS2_KILTED", "ROS2_JAZZY", "ROS2_HUMBLE"):
        if hasattr(Stores, name):
            return get_typestore(getattr(Stores, name))
    raise BagError("this rosbags release ships no ROS 2 typestore")  # pragma: no cover


# ------------------------------------------------------------------------------ messages
def _types() -> Any:
    return typestore().types


def time_msg(stamp_ns: int) -> Any:
    """builtin_interfaces/Time for a non-negative nanosecond count."""
    if isinstance(stamp_ns, bool) or not isinstance(stamp_ns, (int, np.integer)) or stamp_ns < 0:
        raise BagError(f"stamp must be a non-negative integer number of nanoseconds, got {stamp_ns!r}")
    sec, nanosec = divmod(int(stamp_ns), NS_PER_S)
    if sec > _INT32_MAX:
        raise BagError(f"stamp {stamp_ns} ns is beyond builtin_interfaces/Time's range")
    return _types()["builtin_interfaces/msg/Time"](sec=sec, nanosec=nanosec)


def header_msg(stamp_ns: int, frame_id: str) -> Any:
    return _types()["std_msgs/msg/Header"](stamp=time_msg(stamp_ns), frame_id=str(frame_id))


def stamp_to_ns(stamp: Any) -> int:
    """Nanoseconds of a builtin_interfaces/Time."""
    return int(stamp.sec) * NS_PER_S + int(stamp.nanosec)


def image_msg(stamp_ns: int, frame_id: str, rgb: np.ndarray) -> Any:
    """sensor_msgs/Image, rgb8, from HxWx3 uint8."""
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8 or 0 in rgb.shape:
        raise BagError(f"image must be HxWx3 uint8, got {rgb.dtype} {rgb.shape}")
    h, w = rgb.shape[:2]
    return _types()[IMAGE](header=header_msg(stamp_ns, frame_id), height=h, width=w, encoding="rgb8",
                           is_bigendian=0, step=3 * w, data=np.ascontiguousarray(rgb).reshape(-1))


def depth_msg(stamp_ns: int, frame_id: str, depth: np.ndarray) -> Any:
    """sensor_msgs/Image, 32FC1 metres (REP 118), from HxW floats."""
    depth = np.asarray(depth)
    if depth.ndim != 2 or 0 in depth.shape or not np.issubdtype(depth.dtype, np.floating):
        raise BagError(f"depth must be an HxW float array, got {depth.dtype} {depth.shape}")
    h, w = depth.shape
    data = np.ascontiguousarray(depth, dtype="<f4").view(np.uint8).reshape(-1)
    return _types()[IMAGE](header=header_msg(stamp_ns, frame_id), height=h, width=w, encoding="32FC1",
                           is_bigendian=0, step=4 * w, data=data)


def camera_info_msg(stamp_ns: int, frame_id: str, camera: PinholeCamera) -> Any:
    """sensor_msgs/CameraInfo of an ideal pinhole camera (plumb_bob, zero distortion; ROS pixel centres)."""
    t = _types()
    roi = t["sensor_msgs/msg/RegionOfInterest"](x_offset=0, y_offset=0, height=0, width=0, do_rectify=False)
    return t[CAMERA_INFO](
        header=header_msg(stamp_ns, frame_id), height=camera.height, width=camera.width,
        distortion_model="plumb_bob", d=np.zeros(5), k=np.asarray(opencv_k(camera)),
        r=np.eye(3).reshape(-1), p=np.asarray(opencv_p(camera)), binning_x=0, binning_y=0, roi=roi)


def tf_msg(stamp_ns: int, transforms: Sequence[tuple[str, str, np.ndarray]]) -> Any:
    """tf2_msgs/TFMessage from (parent, child, T_parent_child) triples."""
    t = _types()
    out = []
    for parent, child, T in transforms:
        T = validate_transform(T, f"transform {parent} -> {child}")
        q = matrix_to_quat(T[:3, :3])
        tr = t["geometry_msgs/msg/Transform"](
            translation=t["geometry_msgs/msg/Vector3"](x=T[0, 3], y=T[1, 3], z=T[2, 3]),
            rotation=t["geometry_msgs/msg/Quaternion"](x=q[0], y=q[1], z=q[2], w=q[3]))
        out.append(t["geometry_msgs/msg/TransformStamped"](header=header_msg(stamp_ns, parent),
                                                           child_frame_id=child, transform=tr))
    return t[TF_MESSAGE](transforms=out)


# ------------------------------------------------------------------------------ writing
class BagWriter:
    """Context manager writing a ROS 2 bag directory at ``path``; renamed into place on success.

    Messages are stamped with their log time (``timestamp_ns``, default: the header stamp).
    On an exception inside the ``with`` block nothing is left at ``path``.
    """

    def __init__(self, path: str | Path, storage: str = "mcap") -> None:
        if storage not in STORAGES:
            raise BagError(f"storage must be one of {sorted(STORAGES)}, got {storage!r}")
        self.path = Path(path)
        if self.path.exists() or self.path.is_symlink():
            raise BagError(f"output {self.path} exists already; refusing to overwrite it")
        self.storage = storage
        self._staging: AtomicPath | None = None
        self._writer: Writer | None = None
        self._connections: dict[str, Connection] = {}
        self.count = 0

    # -- lifecycle
    def open(self) -> "BagWriter":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._staging = AtomicPath(self.path, overwrite=False, keep_name=True)
        self._writer = Writer(self._staging.tmp, version=9, storage_plugin=STORAGES[self.storage])
        self._writer.open()
        return self

    def close(self) -> Path:
        """Finish the bag and move it to ``path``."""
        writer, self._writer = self._require(), None
        assert self._staging is not None
        staging, self._staging = self._staging, None
        try:
            writer.close()
            staging.commit()
        except FileExistsError as e:
            raise BagError(f"output {self.path} appeared while writing; refusing to overwrite it") from e
        finally:
            staging.discard()
        return self.path

    def abort(self) -> None:
        """Drop everything written so far."""
        writer, self._writer = self._writer, None
        if writer is not None:
            try:
                writer.abort()
            except Exception:  # noqa: BLE001 - the files are deleted below anyway
                pass
        if self._staging is not None:
            self._staging.discard()
            self._staging = None

    def __enter__(self) -> "BagWriter":
        return self.open()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def _require(self) -> Writer:
        if self._writer is None:
            raise BagError("the bag writer is not open (use it as a context manager)")
        return self._writer

    # -- connections and raw writes
    def connection(self, topic: str, msgtype: str, qos: Sequence[Qos] = ()) -> Connection:
        """The connection for topic (created on first use); one message type per topic."""
        conn = self._connections.get(topic)
        if conn is None:
            conn = self._require().add_connection(topic, msgtype, typestore=typestore(), offered_qos_profiles=qos)
            self._connections[topic] = conn
        elif conn.msgtype != msgtype:
            raise BagError(f"topic {topic} already carries {conn.msgtype}, cannot also write {msgtype}")
        return conn

    def write_raw(self, connection: Connection, timestamp_ns: int, rawdata: bytes | memoryview) -> None:
        self._require().write(connection, int(timestamp_ns), rawdata)
        self.count += 1

    def write_message(self, topic: str, msg: Any, timestamp_ns: int, qos: Sequence[Qos] = ()) -> None:
        """Serialise a typestore message (its type from ``msg.__msgtype__``) and write it."""
        conn = self.connection(topic, msg.__msgtype__, qos)
        self.write_raw(conn, timestamp_ns, typestore().serialize_cdr(msg, msg.__msgtype__))

    def copy(self, connection: Connection, rawdata: bytes | memoryview, timestamp_ns: int,
             reader_typestore: Typestore | None = None) -> None:
        """Copy one raw message read from another ROS 2 bag (same topic, type, definition, QoS)."""
        conn = self._connections.get(connection.topic)
        if conn is None:
            ext = connection.ext
            qos = list(getattr(ext, "offered_qos_profiles", []) or [])
            fmt = getattr(ext, "serialization_format", "cdr")
            msgdef, digest = connection.msgdef.data, connection.digest
            if not msgdef or not digest.startswith("RIHS01_"):
                store = reader_typestore or typestore()
                if connection.msgtype not in store.types:
                    raise BagError(f"cannot copy topic {connection.topic}: type {connection.msgtype} is unknown "
                                   "and the bag carries no definition for it")
                msgdef = msgdef or store.generate_msgdef(connection.msgtype, ros_version=2)[0]
                digest = store.hash_rihs01(connection.msgtype)
            conn = self._require().add_connection(connection.topic, connection.msgtype, msgdef=msgdef,
                                                  rihs01=digest, serialization_format=fmt, offered_qos_profiles=qos)
            self._connections[connection.topic] = conn
        elif conn.msgtype != connection.msgtype:
            raise BagError(f"topic {connection.topic} already carries {conn.msgtype}; "
                           f"cannot copy {connection.msgtype} messages into it")
        self.write_raw(conn, timestamp_ns, rawdata)

    # -- typed helpers (log time ``timestamp_ns`` defaults to the header stamp)
    def write_image(self, topic: str, stamp_ns: int, frame_id: str, rgb: np.ndarray,
                    timestamp_ns: int | None = None) -> None:
        self.write_message(topic, image_msg(stamp_ns, frame_id, rgb), _log(stamp_ns, timestamp_ns))

    def write_depth(self, topic: str, stamp_ns: int, frame_id: str, depth: np.ndarray,
                    timestamp_ns: int | None = None) -> None:
        self.write_message(topic, depth_msg(stamp_ns, frame_id, depth), _log(stamp_ns, timestamp_ns))

    def write_camera_info(self, topic: str, stamp_ns: int, frame_id: str, camera: PinholeCamera,
                          timestamp_ns: int | None = None) -> None:
        self.write_message(topic, camera_info_msg(stamp_ns, frame_id, camera), _log(stamp_ns, timestamp_ns))

    def write_tf(self, stamp_ns: int, transforms: Sequence[tuple[str, str, np.ndarray]], static: bool = False,
                 timestamp_ns: int | None = None) -> None:
        """One TFMessage on /tf (or latched /tf_static) with (parent, child, T_parent_child) triples."""
        topic, qos = (TF_STATIC_TOPIC, [TF_STATIC_QOS]) if static else (TF_TOPIC, [])
        self.write_message(topic, tf_msg(stamp_ns, transforms), _log(stamp_ns, timestamp_ns), qos)


def _log(stamp_ns: int, timestamp_ns: int | None) -> int:
    return stamp_ns if timestamp_ns is None else timestamp_ns


# ------------------------------------------------------------------------------ reading
class CheckedReader(AnyReader):
    """An AnyReader whose damaged data (corrupt chunks, bad compression, bad CDR) raises BagError.

    Opening only reads a bag's summary; the data is read while iterating, so every reader of a
    bag gets the same clear error, wherever in the bag the damage lies.
    """

    def messages(self, *args: Any, **kwargs: Any) -> Iterator[tuple[Connection, int, bytes]]:
        it = super().messages(*args, **kwargs)
        while True:
            try:
                item = next(it)
            except StopIteration:
                return
            except Exception as e:  # noqa: BLE001 - rosbags and its decompressors raise many kinds
                raise BagError(f"cannot read bag {self.paths[0]}: damaged data ({type(e).__name__}: {e})") from e
            yield item

    def deserialize(self, rawdata: bytes, typename: str) -> Any:
        try:
            return super().deserialize(rawdata, typename)
        except Exception as e:  # noqa: BLE001 - damaged CDR fails in many ways
            raise BagError(f"cannot read bag {self.paths[0]}: a damaged {typename} message ({e})") from e


def open_bag(path: str | Path) -> AnyReader:
    """An opened reader over a ROS 2 bag (directory or bare .mcap/.db3 file); clear errors."""
    path = Path(path)
    if not path.exists():
        raise BagError(f"bag {path} does not exist")
    reader = CheckedReader([path], default_typestore=typestore())
    try:
        reader.open()
    except Exception as e:  # noqa: BLE001 - rosbags raises many kinds on damaged files (even MemoryError)
        raise BagError(f"cannot read bag {path}: {e}") from e
    if not reader.is2:
        reader.close()
        raise BagError(f"{path} is a ROS 1 bag; only ROS 2 bags (sqlite3 or MCAP) are supported")
    if reader.message_count == 0:
        reader.close()
        raise BagError(f"bag {path} holds no messages")
    return reader


def topics(reader: AnyReader) -> dict[str, str]:
    """topic -> message type of every connection."""
    return {c.topic: c.msgtype for c in reader.connections}


def connections_for(reader: AnyReader, topic: str, msgtypes: Iterable[str] | None = None) -> list[Connection]:
    """The connections of topic (refusing other types); BagError listing the bag's topics if absent."""
    conns = [c for c in reader.connections if c.topic == topic]
    if not conns:
        listing = ", ".join(f"{t} ({m})" for t, m in sorted(topics(reader).items()))
        raise BagError(f"topic {topic} is not in the bag; it has: {listing}")
    allowed = set(msgtypes) if msgtypes is not None else None
    bad = [c.msgtype for c in conns if allowed is not None and c.msgtype not in allowed]
    if bad:
        raise BagError(f"topic {topic} carries {bad[0]}; expected one of {sorted(allowed or [])}")
    return conns


def load_tf(reader: AnyReader) -> tuple[TransformBuffer, list[int]]:
    """A TransformBuffer holding every /tf and /tf_static sample of the bag, and the
    log-minus-header time offsets of the /tf messages (to tell sim-time bags apart).

    The cache spans the whole bag, so lookups do not depend on the order messages were logged.
    """
    span_s = max(10.0, 2.0 * reader.duration / NS_PER_S + 10.0)
    buf = TransformBuffer(cache_time_s=span_s, jump_threshold_s=span_s)
    conns = [c for c in reader.connections if c.topic in (TF_TOPIC, TF_STATIC_TOPIC) and c.msgtype == TF_MESSAGE]
    offsets: list[int] = []
    if not conns:  # (an empty selection would read every message)
        return buf, offsets
    for conn, log_ns, raw in reader.messages(connections=conns):
        msg = reader.deserialize(raw, conn.msgtype)
        static = conn.topic == TF_STATIC_TOPIC
        for ts in msg.transforms:
            tr, rot = ts.transform.translation, ts.transform.rotation
            T = transform_from_ros((tr.x, tr.y, tr.z), (rot.x, rot.y, rot.z, rot.w))
            t_ns = stamp_to_ns(ts.header.stamp)
            buf.set_transform(ts.header.frame_id, ts.child_frame_id, t_ns, T, static=static)
            if not static:
                offsets.append(int(log_ns) - t_ns)
    return buf, offsets


def decode_image(msg: Any, msgtype: str, min_size: tuple[int, int] | None = None) -> np.ndarray:
    """HxWx3 uint8 RGB from a sensor_msgs/Image (rgb8/bgr8/rgba8/bgra8/mono8) or CompressedImage.

    ``min_size`` (width, height) lets a JPEG decode at a reduced scale that still covers that
    size (much faster when the image is only going to be shrunk); other images come at full size.
    """
    if msgtype == COMPRESSED_IMAGE:
        from PIL import Image as PILImage, UnidentifiedImageError

        try:
            with PILImage.open(io.BytesIO(bytes(msg.data))) as im:
                _check_image_size(im.size[0], im.size[1])  # from the header, before decoding a pixel
                if min_size is not None:
                    im.draft("RGB", min_size)
                return np.asarray(im.convert("RGB"), dtype=np.uint8)
        except (UnidentifiedImageError, OSError, PILImage.DecompressionBombError, ValueError) as e:
            if isinstance(e, BagError):
                raise
            raise BagError(f"cannot decode compressed image (format {msg.format!r}): {e}") from e
    if msgtype != IMAGE:
        raise BagError(f"{msgtype} is not an image message (expected {IMAGE} or {COMPRESSED_IMAGE})")
    enc = str(msg.encoding).lower()
    if enc not in _ENCODINGS:
        raise BagError(f"image encoding {msg.encoding!r} is not supported; use one of {sorted(_ENCODINGS)}")
    ch, order = _ENCODINGS[enc]
    h, w, step = int(msg.height), int(msg.width), int(msg.step)
    _check_image_size(w, h)
    data = np.asarray(msg.data, dtype=np.uint8)
    if h == 0 or w == 0 or step < w * ch or data.size < h * step:
        raise BagError(f"image data ({data.size} bytes, step {step}) does not fit {w}x{h} {enc}")
    px = data[: h * step].reshape(h, step)[:, : w * ch].reshape(h, w, ch)
    return np.ascontiguousarray(px[..., list(order)])


def decode_depth(msg: Any) -> np.ndarray:
    """HxW float32 metres from a depth sensor_msgs/Image: 16UC1 (millimetres, 0 = none) or 32FC1
    (metres, REP 118); unknown pixels (0, NaN, inf, negative) become NaN."""
    enc = str(msg.encoding).upper()
    kinds = {"16UC1": np.dtype("uint16"), "MONO16": np.dtype("uint16"), "32FC1": np.dtype("float32")}
    if enc not in kinds:
        raise BagError(f"depth image encoding {msg.encoding!r} is not supported (16UC1 millimetres or 32FC1 metres)")
    h, w = int(msg.height), int(msg.width)
    _check_image_size(w, h)
    dt = kinds[enc].newbyteorder(">" if msg.is_bigendian else "<")
    step = int(msg.step) or w * dt.itemsize
    data = np.asarray(msg.data, dtype=np.uint8)
    if step < w * dt.itemsize or data.size < step * h:
        raise BagError(f"depth image is {w}x{h} {msg.encoding} but carries {data.size} bytes (step {step})")
    rows = data[: step * h].reshape(h, step)[:, : w * dt.itemsize]
    depth = np.ascontiguousarray(rows).view(dt).reshape(h, w).astype(np.float32)
    if kinds[enc].kind == "u":
        depth = depth / 1000.0
    with np.errstate(invalid="ignore"):
        return np.where(np.isfinite(depth) & (depth > 0), depth, np.nan).astype(np.float32)


def _check_image_size(width: int, height: int) -> None:
    """Refuse images larger than any camera can be (PinholeCamera's MAX_RESOLUTION a side)."""
    if width > MAX_RESOLUTION or height > MAX_RESOLUTION:
        raise BagError(f"image is {width}x{height}, larger than {MAX_RESOLUTION} pixels a side")


def camera_from_info(msg: Any) -> PinholeCamera:
    """PinholeCamera from a sensor_msgs/CameraInfo (ROS pixel centres converted; distortion ignored)."""
    return camera_from_k(int(msg.width), int(msg.height), np.asarray(msg.k, dtype=np.float64))


def camera_info_topic_for(reader: AnyReader, image_topic: str) -> str:
    """The CameraInfo topic of an image topic: ``camera_info`` in its namespace or the nearest parent's
    (/cam/image_raw/compressed -> /cam/image_raw/camera_info, then /cam/camera_info, then /camera_info)."""
    parts = image_topic.rstrip("/").split("/")
    tried = ["/".join(parts[:k]) + "/camera_info" for k in range(len(parts) - 1, 0, -1)]
    have = {c.topic for c in reader.connections if c.msgtype == CAMERA_INFO}
    for cand in tried:
        if cand in have:
            return cand
    raise BagError(f"no CameraInfo topic for {image_topic} (looked for {', '.join(tried)}); "
                   "name one explicitly (--seed-camera-info-topic)")


def read_camera_infos(reader: AnyReader, topic: str) -> tuple[np.ndarray, list[PinholeCamera]]:
    """(header stamps in ns, cameras) of every CameraInfo on topic, in stamp order."""
    conns = connections_for(reader, topic, {CAMERA_INFO})
    items = sorted(((stamp_to_ns(m.header.stamp), camera_from_info(m)) for m in
                    (reader.deserialize(raw, c.msgtype) for c, _, raw in reader.messages(connections=conns))),
                   key=lambda item: item[0])
    if not items:
        raise BagError(f"CameraInfo topic {topic} holds no messages")
    return np.array([t for t, _ in items], dtype=np.int64), [c for _, c in items]
