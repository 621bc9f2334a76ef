"""ROS 2 bags (MCAP or sqlite3) written and read with the ``rosbags`` library, no ROS needed.

Bag replay and the demo write camera output (Image, depth, CameraInfo, TF) offline, where
rclpy is not available. A bag is written under a hidden temporary name next to its final path
and renamed into place only when it is complete, so a crash or an error never leaves a
half-written bag where a finished one is expected (rtfm_ros.atomic). Readers load TF and CameraInfo
from any ROS 2 bag; messages are built and decoded by rtfm_ros.io.messages.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Generator, Iterable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np
from rosbags.highlevel import AnyReader
from rosbags.interfaces import Connection, Qos, QosDurability, QosHistory, QosLiveliness, QosReliability, QosTime
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.typesys.store import Typestore

from rtfm_ros.atomic import AtomicPath
from rtfm_ros.geometry import PinholeCamera
from rtfm_ros.io.messages import (
    CAMERA_INFO,
    TF_MESSAGE,
    MessageError,
    camera_from_info,
    camera_info_msg,
    depth_msg,
    image_msg,
    stamp_to_ns,
    typestore,
)
from rtfm_ros.io.tf_messages import tf_msg, transform_to_matrix
from rtfm_ros.tf_buffer import NS_PER_S, TransformBuffer

STORAGES = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}
TF_TOPIC, TF_STATIC_TOPIC = "/tf", "/tf_static"
_FOREVER = QosTime(sec=9223372036, nsec=854775807)  # rmw's "infinite" duration
# Latched, as tf2_ros's static broadcaster offers it, so players republish it to late joiners.
TF_STATIC_QOS = Qos(QosHistory.KEEP_LAST, 1, QosReliability.RELIABLE, QosDurability.TRANSIENT_LOCAL,
                    _FOREVER, _FOREVER, QosLiveliness.AUTOMATIC, _FOREVER, False)


class BagError(ValueError):
    """A bag that cannot be written or read as asked (exists, corrupt, empty, wrong types...)."""


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
    def open(self) -> BagWriter:
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

    def __enter__(self) -> BagWriter:
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

    # -- typed helpers (log time ``timestamp_ns`` defaults to the header stamp; bad data: BagError)
    def write_image(self, topic: str, rgb: np.ndarray, stamp_ns: int, frame_id: str,
                    timestamp_ns: int | None = None) -> None:
        self.write_message(topic, _built(image_msg, rgb, stamp_ns, frame_id), _log(stamp_ns, timestamp_ns))

    def write_depth(self, topic: str, depth: np.ndarray, stamp_ns: int, frame_id: str,
                    timestamp_ns: int | None = None, encoding: str = "32FC1") -> None:
        """Depth in metres as 32FC1, or as 16UC1 millimetres (0 where unknown)."""
        self.write_message(topic, _built(depth_msg, depth, stamp_ns, frame_id, encoding),
                           _log(stamp_ns, timestamp_ns))

    def write_camera_info(self, topic: str, camera: PinholeCamera, stamp_ns: int, frame_id: str,
                          timestamp_ns: int | None = None) -> None:
        self.write_message(topic, _built(camera_info_msg, camera, stamp_ns, frame_id), _log(stamp_ns, timestamp_ns))

    def write_tf(self, transforms: Sequence[tuple[str, str, np.ndarray]], stamp_ns: int, static: bool = False,
                 timestamp_ns: int | None = None) -> None:
        """One TFMessage on /tf (or latched /tf_static) with (parent, child, T_parent_child) triples."""
        topic, qos = (TF_STATIC_TOPIC, [TF_STATIC_QOS]) if static else (TF_TOPIC, [])
        self.write_message(topic, _built(tf_msg, transforms, stamp_ns), _log(stamp_ns, timestamp_ns), qos)


def _built(make: Callable[..., Any], *args: Any) -> Any:
    """A message from make(*args); what cannot be one is a BagError (the writer's error)."""
    try:
        return make(*args)
    except MessageError as e:
        raise BagError(str(e)) from e


def _log(stamp_ns: int, timestamp_ns: int | None) -> int:
    return stamp_ns if timestamp_ns is None else timestamp_ns


# ------------------------------------------------------------------------------ reading
class CheckedReader(AnyReader):
    """An AnyReader whose damaged data (corrupt chunks, bad compression, bad CDR) raises BagError.

    Opening only reads a bag's summary; the data is read while iterating, so every reader of a
    bag gets the same clear error, wherever in the bag the damage lies.
    """

    def messages(self, connections: Collection[Connection] = (), start: int | None = None,
                 stop: int | None = None) -> Generator[tuple[Connection, int, bytes], None, None]:
        it = super().messages(connections, start, stop)
        while True:
            try:
                item = next(it)
            except StopIteration:
                return
            except Exception as e:  # rosbags and its decompressors raise many kinds
                raise BagError(f"cannot read bag {self.paths[0]}: damaged data ({type(e).__name__}: {e})") from e
            yield item

    def deserialize(self, rawdata: bytes, typename: str) -> Any:
        try:
            return super().deserialize(rawdata, typename)
        except Exception as e:  # damaged CDR fails in many ways
            raise BagError(f"cannot read bag {self.paths[0]}: a damaged {typename} message ({e})") from e


def open_bag(path: str | Path) -> AnyReader:
    """An opened reader over a ROS 2 bag (directory or bare .mcap/.db3 file); clear errors."""
    path = Path(path)
    if not path.exists():
        raise BagError(f"bag {path} does not exist")
    try:
        reader = CheckedReader([path], default_typestore=typestore())  # refuses a file that is no bag format
        reader.open()
    except Exception as e:  # rosbags raises many kinds on damaged files (even MemoryError)
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
        msg: Any = reader.deserialize(raw, conn.msgtype)  # a tf2_msgs/msg/TFMessage
        static = conn.topic == TF_STATIC_TOPIC
        for ts in msg.transforms:
            T = transform_to_matrix(ts)
            t_ns = stamp_to_ns(ts.header.stamp)
            buf.set_transform(ts.header.frame_id, ts.child_frame_id, t_ns, T, static=static)
            if not static:
                offsets.append(int(log_ns) - t_ns)
    return buf, offsets


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


def read_camera_info_msgs(reader: AnyReader, topic: str) -> list[tuple[int, Any]]:
    """(header stamp ns, CameraInfo message) of every message on topic, in stamp order."""
    conns = connections_for(reader, topic, {CAMERA_INFO})
    msgs: list[Any] = [reader.deserialize(raw, c.msgtype) for c, _, raw in reader.messages(connections=conns)]
    infos = sorted(((stamp_to_ns(m.header.stamp), m) for m in msgs), key=lambda item: item[0])
    if not infos:
        raise BagError(f"CameraInfo topic {topic} holds no messages")
    return infos


def read_camera_infos(reader: AnyReader, topic: str) -> tuple[np.ndarray, list[PinholeCamera]]:
    """(header stamps in ns, cameras) of every CameraInfo on topic, in stamp order (distortion ignored:
    rendering uses K alone)."""
    infos = read_camera_info_msgs(reader, topic)
    try:
        cams = [camera_from_info(m, ignore_distortion=True) for _, m in infos]
    except MessageError as e:
        raise BagError(f"CameraInfo on {topic}: {e}") from e
    return np.array([t for t, _ in infos], dtype=np.int64), cams
