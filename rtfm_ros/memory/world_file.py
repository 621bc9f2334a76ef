"""World files: a frame memory on disk, in one SQLite file, safe against crashes and corruption.

The layout (tables, records, checksums) is in world_schema; this module opens, checks, appends
to and saves world files.

Why it survives crashes: appends are single SQLite transactions in WAL mode (INSERT only, plus
the meta counters in the same transaction), and a whole-world save writes a hidden temporary
file, fsyncs it and renames it over the target, so a killed save leaves the previous world.
Why it never half-loads: opening checks the SQLite header against the file size (unless a WAL
holds the newest pages), the schema and the meta counters, runs PRAGMA quick_check, recomputes
every row's SHA-256 over its small fields and the rolling digest over all rows (catching lost,
reordered or edited rows); pixel bytes carry their own SHA-256, checked whenever they are read.
What may be opened or replaced is guarded in file_safety.
Across processes: the index is read as one snapshot (a world another process appends to opens
as it was at one moment), and a handle that finds its path now names another file (a save by
another process renamed a new world into place) refuses to write instead of writing to the
unlinked one.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from rtfm_ros.atomic import atomic_path, fsync_path
from rtfm_ros.memory.codecs import DEPTH_FORMATS, IMAGE_FORMATS, decode_depth, decode_image
from rtfm_ros.memory.errors import WorldFileError
from rtfm_ros.memory.file_safety import (
    APPLICATION_ID,
    TEMP_SIDECARS,
    check_save_target,
    check_sqlite_header,
    checkpoint,
    clean_stale_temps,
    connect,
)
from rtfm_ros.memory.world_schema import (
    CHECKS,
    GENESIS,
    READ_ERRORS,
    SCHEMA,
    SCHEMA_VERSION,
    FrameRecord,
    check_schema,
    parse_meta,
    row_sha256,
)


class WorldFile:
    """An open world file. Use :meth:`create`, :meth:`open` or :func:`save_world`."""

    def __init__(self, path: Path, conn: sqlite3.Connection, writable: bool) -> None:
        self.path = path
        self._conn = conn
        self.writable = writable
        self._lock = threading.Lock()
        self.meta, self._count, self._digest = parse_meta(path, conn.execute("SELECT key, value FROM meta"))
        self._identity = _identity(path)

    # ---------------------------------------------------------------- creation / opening
    @classmethod
    def create(cls, path: str | os.PathLike[str], *, model: str | None = None, meta: dict[str, Any] | None = None,
               image_format: str = "png", image_quality: int = 95, depth_format: str = "npz32") -> WorldFile:
        """New empty world at ``path`` (which must not exist), opened for appending.

        Created under a temporary name and renamed, so ``path`` never holds a half-made world.
        ``meta`` must be JSON-serialisable.
        """
        if Path(path).exists():
            raise WorldFileError(f"world file {path} already exists")
        save_world(path, [], model=model, meta=meta, image_format=image_format, image_quality=image_quality,
                   depth_format=depth_format)
        return cls.open(path, writable=True, check="none")

    @classmethod
    def _create_unjournaled(cls, path: Path, *, model: str | None, meta: dict[str, Any] | None, image_format: str,
                            image_quality: int, depth_format: str) -> WorldFile:
        """A fresh world without journal: only for temporary files that are renamed once complete."""
        if image_format not in IMAGE_FORMATS:
            raise WorldFileError(f"image format must be one of {IMAGE_FORMATS}, got {image_format!r}")
        if depth_format not in DEPTH_FORMATS:
            raise WorldFileError(f"depth format must be one of {DEPTH_FORMATS}, got {depth_format!r}")
        if not 1 <= int(image_quality) <= 100:
            raise WorldFileError(f"image quality must be in 1..100, got {image_quality}")
        if path.exists():
            raise WorldFileError(f"world file {path} already exists")
        values = {"schema_version": SCHEMA_VERSION, "created": time.time(), "model": model,
                  "user": meta or {}, "image_format": image_format, "image_quality": int(image_quality),
                  "depth_format": depth_format, "frame_count": 0, "digest": GENESIS.hex()}
        try:
            encoded = {k: json.dumps(v) for k, v in values.items()}
        except (TypeError, ValueError, RecursionError) as exc:
            raise WorldFileError(f"world metadata must be JSON-serialisable: {exc}") from None
        conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        try:
            conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
            conn.execute("PRAGMA journal_mode = OFF")
            conn.execute("PRAGMA synchronous = OFF")
            conn.execute("BEGIN")
            for stmt in SCHEMA.strip().split(";"):
                if stmt.strip():
                    conn.execute(stmt)
            conn.executemany("INSERT INTO meta VALUES (?, ?)", encoded.items())
            conn.execute("COMMIT")
        except BaseException:
            conn.close()
            path.unlink(missing_ok=True)
            raise
        return cls(path, conn, writable=True)

    @classmethod
    def open(cls, path: str | os.PathLike[str], *, writable: bool = False, check: str = "quick") -> WorldFile:
        """Open and verify a world. ``check``: 'quick' (default), 'full' (also every pixel
        checksum and PRAGMA integrity_check) or 'none' (index checksums only)."""
        path = Path(path)
        if check not in CHECKS:
            raise WorldFileError(f"check must be one of {CHECKS}, got {check!r}")
        clean_stale_temps(path)
        check_sqlite_header(path)
        conn = connect(path, writable)
        try:
            check_schema(path, conn)
            if check != "none":
                pragma = "integrity_check" if check == "full" else "quick_check"
                result = [r[0] for r in conn.execute(f"PRAGMA {pragma}")]
                if result != ["ok"]:
                    raise WorldFileError(f"world file {path} is corrupt: {'; '.join(result[:3])}")
            world = cls(path, conn, writable)
            version = world.meta.get("schema_version")
            if version != SCHEMA_VERSION:
                raise WorldFileError(f"world file {path} has schema version {version!r}; "
                                     f"this rtfm_ros reads version {SCHEMA_VERSION}")
            if writable:
                conn.execute("PRAGMA journal_mode = WAL")
                conn.execute("PRAGMA synchronous = NORMAL")
            world.read_index()  # verifies row checksums, count and digest
            if check == "full":
                for _ in world.iter_records():
                    pass
        except WorldFileError:
            conn.close()
            raise
        except READ_ERRORS as exc:
            conn.close()
            raise WorldFileError(f"world file {path} is corrupt or unreadable: {exc}") from None
        return world

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> WorldFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __len__(self) -> int:
        return self._count

    # ---------------------------------------------------------------- writing
    def append(self, records: Iterable[FrameRecord]) -> int:
        """Append records (ids must continue 0, 1, 2, ...) in one transaction; returns the new count."""
        if not self.writable:
            raise WorldFileError(f"world file {self.path} is open read-only")
        with self._lock:
            count, digest = self._count, self._digest
            try:
                self._conn.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise WorldFileError(f"cannot append to world file {self.path}: {exc}") from None
            try:
                self._check_same_file()
                stored = self._conn.execute("SELECT value FROM meta WHERE key = 'frame_count'").fetchone()
                if json.loads(stored[0]) != count:
                    raise WorldFileError(f"world file {self.path} was changed by another writer")
                for r in records:
                    if r.id != count:
                        raise WorldFileError(f"frame id {r.id} appended to {self.path}, expected {count}")
                    pose = np.ascontiguousarray(r.pose, dtype="<f8").tobytes()
                    psha = r.pixels_sha256()
                    sha = row_sha256(r.id, pose, r.intrinsics, r.stamp, r.source, psha)
                    w, h, fx, fy, cx, cy = (float(v) for v in r.intrinsics)
                    self._conn.execute("INSERT INTO frames VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                                       (r.id, pose, int(w), int(h), fx, fy, cx, cy, r.stamp, r.source, psha, sha))
                    self._conn.execute("INSERT INTO pixels VALUES (?,?,?,?,?)",
                                       (r.id, r.image_format, r.image, r.depth_format, r.depth))
                    digest = hashlib.sha256(digest + sha).digest()
                    count += 1
                self._conn.executemany("UPDATE meta SET value = ? WHERE key = ?",
                                       [(json.dumps(count), "frame_count"), (json.dumps(digest.hex()), "digest")])
                self._conn.execute("COMMIT")
            except BaseException as exc:
                self._rollback()
                if isinstance(exc, sqlite3.Error):
                    raise WorldFileError(f"cannot append to world file {self.path}: {exc}") from None
                raise
            self._count, self._digest = count, digest
            self.meta["frame_count"], self.meta["digest"] = count, digest.hex()
        return count

    def _check_same_file(self) -> None:
        """Refuse to write when ``path`` is no longer the file this handle opened: another process
        saved over it (a save renames a new file into place) or removed it. Writes would go to the
        unlinked file and vanish with it."""
        if _identity(self.path) != self._identity:
            raise WorldFileError(f"world file {self.path} was replaced or removed by another process after this one "
                                 f"opened it: this process's {self._count} frames are not in it (save them to another "
                                 "path)")

    def _rollback(self) -> None:
        """Undo the open transaction; SQLite may already have (disk full, I/O error), which is fine."""
        if self._conn.in_transaction:
            try:
                self._conn.execute("ROLLBACK")
            except sqlite3.Error:
                pass

    def set_meta(self, user: dict[str, Any] | None = None, model: str | None = None) -> None:
        """Replace the caller's metadata and/or the model name (one transaction)."""
        if not self.writable:
            raise WorldFileError(f"world file {self.path} is open read-only")
        updates: dict[str, Any] = {}
        if user is not None:
            updates["user"] = user
        if model is not None:
            updates["model"] = model
        try:
            rows = [(json.dumps(v), k) for k, v in updates.items()]
        except (TypeError, ValueError, RecursionError) as exc:
            raise WorldFileError(f"world metadata must be JSON-serialisable: {exc}") from None
        with self._lock:
            self._check_same_file()
            try:
                self._conn.execute("BEGIN IMMEDIATE")
                self._conn.executemany("UPDATE meta SET value = ? WHERE key = ?", rows)
                self._conn.execute("COMMIT")
            except sqlite3.Error as exc:
                self._rollback()
                raise WorldFileError(f"cannot update the metadata of world file {self.path}: {exc}") from None
        self.meta.update(updates)

    # ---------------------------------------------------------------- reading
    def read_index(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
        """(poses Nx4x4, intrinsics Nx6, stamps N, sources) of every frame, all checksums verified.

        Read as one snapshot (a read transaction: the count, the digest and the rows of one
        moment), so frames another process appends meanwhile are all in it or none, never a
        spurious mismatch; the handle's count follows the snapshot.
        """
        with self._lock:
            self._conn.execute("BEGIN")
            try:
                _, n, expected = parse_meta(self.path, self._conn.execute("SELECT key, value FROM meta"))
                top = self._conn.execute("SELECT max(id) FROM frames").fetchone()[0]
                rows = self._conn.execute("SELECT id, pose, width, height, fx, fy, cx, cy, stamp, source, "
                                          "pixels_sha256, sha256 FROM frames ORDER BY id").fetchall()
            finally:
                self._conn.execute("COMMIT")
        if (-1 if top is None else top) + 1 != n:
            raise WorldFileError(f"world file {self.path} has frame ids up to {top}, {0 if top is None else top + 1} "
                                 f"frames but its meta says {n}")
        poses = np.empty((n, 4, 4))
        intr = np.empty((n, 6))
        stamps = np.empty(n)
        sources: list[str] = []
        digest = GENESIS
        i = -1
        for i, (fid, pose, w, h, fx, fy, cx, cy, stamp, source, psha, sha) in enumerate(rows):
            if fid != i or i >= n:
                raise WorldFileError(f"world file {self.path} has unexpected frame id {fid} at row {i} "
                                     f"(meta says {n} frames)")
            intr[i] = (w, h, fx, fy, cx, cy)
            if len(pose) != 128 or row_sha256(fid, pose, intr[i], stamp, source, psha) != sha:
                raise WorldFileError(f"world file {self.path}: checksum mismatch in frame {fid}")
            poses[i] = np.frombuffer(pose, dtype="<f8").reshape(4, 4)
            stamps[i] = stamp
            sources.append(source)
            digest = hashlib.sha256(digest + sha).digest()
        if i + 1 != n:
            raise WorldFileError(f"world file {self.path} holds {i + 1} frames but its meta says {n}")
        if digest != expected:
            raise WorldFileError(f"world file {self.path}: frame digest does not match (rows lost or altered)")
        with self._lock:
            self._count, self._digest = n, digest
            self.meta["frame_count"], self.meta["digest"] = n, digest.hex()
        return poses, intr, stamps, sources

    def read_record(self, fid: int) -> FrameRecord:
        """One frame's record, with both checksums verified."""
        try:
            with self._lock:
                row = self._conn.execute(
                    "SELECT f.pose, f.width, f.height, f.fx, f.fy, f.cx, f.cy, f.stamp, f.source, f.pixels_sha256, "
                    "f.sha256, p.image_format, p.image, p.depth_format, p.depth FROM frames f "
                    "JOIN pixels p ON p.id = f.id WHERE f.id = ?", (int(fid),)).fetchone()
            if row is None:
                raise WorldFileError(f"world file {self.path} has no frame {fid}")
            pose, w, h, fx, fy, cx, cy, stamp, source, psha, sha, ifmt, image, dfmt, depth = row
            intr = np.array([w, h, fx, fy, cx, cy], dtype=np.float64)
            rec = FrameRecord(int(fid), np.frombuffer(pose, dtype="<f8").reshape(4, 4).copy(), intr, stamp, source,
                              ifmt, bytes(image), dfmt, None if depth is None else bytes(depth))
            ok = rec.pixels_sha256() == psha and row_sha256(fid, pose, intr, stamp, source, psha) == sha
        except WorldFileError:
            raise
        except READ_ERRORS as exc:
            raise WorldFileError(f"world file {self.path}: frame {fid} cannot be read: {exc}") from None
        if not ok:
            raise WorldFileError(f"world file {self.path}: checksum mismatch in frame {fid} (corrupt pixels)")
        return rec

    def read_pixels(self, fid: int) -> tuple[np.ndarray, np.ndarray | None]:
        """(rgb, depth or None) of one frame, decoded after its checksum passes."""
        rec = self.read_record(fid)
        w, h = int(rec.intrinsics[0]), int(rec.intrinsics[1])
        try:
            rgb = decode_image(rec.image, w, h)
            depth = None if rec.depth is None else decode_depth(rec.depth, rec.depth_format, w, h)
        except (OSError, ValueError) as exc:
            raise WorldFileError(f"world file {self.path}: frame {fid} cannot be decoded: {exc}") from None
        return rgb, depth

    def iter_records(self) -> Iterator[FrameRecord]:
        """Every record in id order, verified, one at a time (constant memory)."""
        for fid in range(self._count):
            yield self.read_record(fid)


def _identity(path: Path) -> tuple[int, int] | None:
    """(device, inode) of the file at ``path`` now, None when there is none."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def save_world(path: str | os.PathLike[str], records: Iterable[FrameRecord], *, model: str | None = None,
               meta: dict[str, Any] | None = None, image_format: str = "png", image_quality: int = 95,
               depth_format: str = "npz32", batch: int = 512,
               progress: Callable[[int], None] | None = None) -> Path:
    """Write a complete world to ``path`` atomically (temp file, fsync, rename, fsync directory).

    ``path`` must be new or an existing world file (never a symbolic link or another file). A
    save that fails or is killed midway leaves whatever was at ``path`` untouched; the next
    open or save removes what a killed one left. Records are consumed one batch at a time, so
    a world larger than RAM can be written.
    """
    path = Path(path)
    check_save_target(path)
    clean_stale_temps(path)
    try:
        with atomic_path(path, sidecars=TEMP_SIDECARS) as tmp:
            world = WorldFile._create_unjournaled(tmp, model=model, meta=meta, image_format=image_format,
                                                  image_quality=image_quality, depth_format=depth_format)
            try:
                pending: list[FrameRecord] = []
                for rec in records:
                    pending.append(rec)
                    if len(pending) >= batch:
                        n = world.append(pending)
                        pending = []
                        if progress is not None:
                            progress(n)
                n = world.append(pending)
                if progress is not None:
                    progress(n)
                world._conn.execute("PRAGMA journal_mode = WAL")
            finally:
                world.close()
            check_save_target(path)  # again: the path may have changed while the frames were written
            if path.exists():
                checkpoint(path)
        for side in ("-wal", "-shm"):  # the replaced world's (checkpointed, empty)
            Path(f"{path}{side}").unlink(missing_ok=True)
        fsync_path(path.parent)
    except (sqlite3.Error, OSError) as exc:
        raise WorldFileError(f"cannot save the world to {path}: {exc}") from None
    return path
