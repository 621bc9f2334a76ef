"""The world file's layout: its SQLite tables, one frame as stored, and the checksums that chain them.

Layout (schema version 1): ``frames`` holds the small per-frame data (pose as 16 float64,
intrinsics, stamp, source and checksums) so the whole index loads with one compact scan;
``pixels`` holds the encoded image (PNG by default, lossless; WebP/JPEG with a quality) and
optional depth (compressed npz float32/float16, or 16-bit PNG in millimetres); ``meta`` holds
JSON values (schema version, creation time, model name, caller metadata, frame count and a
rolling digest over every row's SHA-256, starting from GENESIS).
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypedDict

import numpy as np

from rtfm_ros.memory.codecs import encode_depth, encode_image
from rtfm_ros.memory.errors import WorldFileError

SCHEMA_VERSION = 1
CHECKS = ("none", "quick", "full")
GENESIS = hashlib.sha256(b"rtfm_ros world v1").digest()
COLUMNS = {"meta": ["key", "value"],
            "frames": ["id", "pose", "width", "height", "fx", "fy", "cx", "cy", "stamp", "source",
                       "pixels_sha256", "sha256"],
            "pixels": ["id", "image_format", "image", "depth_format", "depth"]}
# Anything sqlite3 or json can raise on a damaged file (deep nesting, odd types, huge numbers).
READ_ERRORS = (sqlite3.Error, ValueError, KeyError, TypeError, AttributeError, RecursionError, OverflowError)

SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE frames (
    id INTEGER PRIMARY KEY, pose BLOB NOT NULL, width INTEGER NOT NULL, height INTEGER NOT NULL,
    fx REAL NOT NULL, fy REAL NOT NULL, cx REAL NOT NULL, cy REAL NOT NULL, stamp REAL NOT NULL,
    source TEXT NOT NULL, pixels_sha256 BLOB NOT NULL, sha256 BLOB NOT NULL);
CREATE TABLE pixels (
    id INTEGER PRIMARY KEY, image_format TEXT NOT NULL, image BLOB NOT NULL,
    depth_format TEXT, depth BLOB);
"""


class StorageFormats(TypedDict):
    """How a memory encodes the frames it writes to a world file."""

    image_format: str
    image_quality: int
    depth_format: str


@dataclass(frozen=True)
class FrameRecord:
    """One frame as stored: small fields plus encoded pixel bytes."""

    id: int
    pose: np.ndarray           # 4x4 float64
    intrinsics: np.ndarray     # (width, height, fx, fy, cx, cy) float64
    stamp: float
    source: str
    image_format: str
    image: bytes
    depth_format: str | None
    depth: bytes | None

    def pixels_sha256(self) -> bytes:
        h = hashlib.sha256()
        for part in (self.image_format.encode(), self.image, (self.depth_format or "").encode(), self.depth or b""):
            h.update(struct.pack("<Q", len(part)))
            h.update(part)
        return h.digest()


def row_sha256(fid: int, pose: bytes, intr: np.ndarray, stamp: float, source: str, pixels_sha: bytes) -> bytes:
    """Checksum of one row's small fields (covers the pixels through their own checksum)."""
    return hashlib.sha256(struct.pack("<q", fid) + pose + np.asarray(intr, dtype="<f8").tobytes()
                          + struct.pack("<d", stamp) + source.encode() + b"\0" + pixels_sha).digest()


def parse_meta(path: Path, rows: Iterable[tuple[str, str]]) -> tuple[dict[str, Any], int, bytes]:
    """(meta, frame count, digest) with the count and digest type-checked before anything is sized by them."""
    meta = {k: json.loads(v) for k, v in rows}
    count, digest = meta.get("frame_count", 0), meta.get("digest", GENESIS.hex())
    if isinstance(count, bool) or not isinstance(count, int) or count < 0:
        raise WorldFileError(f"world file {path} has a bad frame count {count!r}")
    if not isinstance(digest, str) or len(digest) != 64:
        raise WorldFileError(f"world file {path} has a bad digest {str(digest)[:80]!r}")
    return meta, count, bytes.fromhex(digest)


def check_schema(path: Path, conn: sqlite3.Connection) -> None:
    """Refuse a world whose tables or columns are not this schema (a dropped table, an edited one)."""
    for table, columns in COLUMNS.items():
        got = [row[1] for row in conn.execute(f"PRAGMA table_info({table})")]
        if got != columns:
            what = "lacks the table" if not got else "has unexpected columns in"
            raise WorldFileError(f"world file {path} {what} {table!r}")


def encode_record(fid: int, pose: np.ndarray, intrinsics: np.ndarray, stamp: float, source: str, rgb: np.ndarray,
                  depth: np.ndarray | None, formats: StorageFormats) -> FrameRecord:
    """One frame as stored, its pixels encoded in ``formats``."""
    f = formats
    return FrameRecord(fid, np.array(pose, dtype=np.float64), np.array(intrinsics, dtype=np.float64), stamp, source,
                       f["image_format"], encode_image(rgb, f["image_format"], f["image_quality"]),
                       None if depth is None else f["depth_format"],
                       None if depth is None else encode_depth(depth, f["depth_format"]))
