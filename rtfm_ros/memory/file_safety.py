"""What a world file may be opened from, what a save may replace, and what a killed save left.

Opening: only regular files (a FIFO would block the caller forever), and a short main file is
only "truncated" when no write-ahead log could complete it (a disk that filled up during a
checkpoint leaves the newest pages in the WAL, which SQLite replays). Saving: only over a
world file or onto a new path, never through a symbolic link or over another kind of file.
Leftovers: a killed save leaves a hidden temporary file; the next open or save of the same
world removes those whose writing process is gone.
"""

from __future__ import annotations

import os
import sqlite3
import stat
import struct
from pathlib import Path

from rtfm_ros.atomic import temp_pattern
from rtfm_ros.checksum import SpecialFileError, file_kind, open_regular
from rtfm_ros.memory.errors import WorldFileError

APPLICATION_ID = 0x52544657  # "RTFW" in the SQLite header
SQLITE_MAGIC = b"SQLite format 3\x00"
_WAL_MAGIC = (0x377F0682, 0x377F0683)
_WAL_HEADER = 32
TEMP_SIDECARS = ("-wal", "-shm", "-journal")  # what SQLite may leave beside a temporary world


def wal_has_frames(path: Path) -> bool:
    """Whether ``path``-wal is a WAL holding at least one frame (commits not yet in the main file)."""
    try:
        with open_regular(f"{path}-wal") as f:
            head = f.read(_WAL_HEADER + 1)
    except OSError:
        return False
    return len(head) > _WAL_HEADER and struct.unpack(">I", head[:4])[0] in _WAL_MAGIC


def check_sqlite_header(path: Path) -> None:
    """Refuse what is not an rtfm_ros world: special files, no SQLite header, truncated files."""
    try:
        with open_regular(path) as f:
            size = os.fstat(f.fileno()).st_size
            head = f.read(100)
    except FileNotFoundError:
        raise WorldFileError(f"world file {path} does not exist") from None
    except SpecialFileError as exc:
        raise WorldFileError(f"{exc}; a world file is a regular file") from None
    except OSError as exc:
        raise WorldFileError(f"cannot read world file {path}: {exc}") from None
    if len(head) < 100 or not head.startswith(SQLITE_MAGIC):
        raise WorldFileError(f"{path} is not a world file (no SQLite header)")
    page_size = struct.unpack(">H", head[16:18])[0]
    page_size = 65536 if page_size == 1 else page_size
    pages, change, valid_for = struct.unpack(">I", head[28:32])[0], head[24:28], head[92:96]
    if change == valid_for and size < pages * page_size and not wal_has_frames(path):
        raise WorldFileError(f"world file {path} is truncated ({size} bytes, header says {pages * page_size})")
    if struct.unpack(">I", head[68:72])[0] != APPLICATION_ID:
        raise WorldFileError(f"{path} is an SQLite file but not an rtfm_ros world")


def is_world_file(path: Path) -> bool:
    """Whether ``path`` is a regular file with an rtfm_ros world header (damaged or not)."""
    try:
        with open_regular(path) as f:
            head = f.read(100)
    except OSError:
        return False
    return len(head) == 100 and head.startswith(SQLITE_MAGIC) and struct.unpack(">I", head[68:72])[0] == APPLICATION_ID


def check_save_target(path: Path) -> None:
    """Refuse to save where a world may not go: anything but a new path or an existing world file."""
    try:
        st = os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        parent = path.parent
        if not parent.is_dir():
            what = "does not exist" if not os.path.lexists(parent) else "is not a directory"
            raise WorldFileError(f"cannot save a world to {path}: {parent} {what}") from None
        return
    except OSError as exc:
        raise WorldFileError(f"cannot save a world to {path}: {exc}") from None
    if stat.S_ISLNK(st.st_mode):
        raise WorldFileError(f"refusing to save a world over the symbolic link {path} "
                             f"(to {os.readlink(path)!r}); save to a plain path")
    if stat.S_ISDIR(st.st_mode):
        raise WorldFileError(f"cannot save a world over the directory {path}")
    if not stat.S_ISREG(st.st_mode):
        raise WorldFileError(f"refusing to save a world over {path}: it is {file_kind(st.st_mode)}")
    if not is_world_file(path):
        raise WorldFileError(f"refusing to replace {path}: it is not a world file (remove it first, "
                             "or save to another path)")


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True  # a save of this process may be under way in another thread
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    except OSError:
        return True
    return True


def clean_stale_temps(path: Path) -> list[Path]:
    """Remove temporary files of saves to ``path`` whose process is gone; returns what was removed.

    Best effort: a read-only folder or a vanished file is left as it is. A process id reused by
    a new process keeps its leftovers until that process ends (never removes a live save).
    """
    pattern = temp_pattern(path.name, TEMP_SIDECARS)
    removed: list[Path] = []
    try:
        entries = list(os.scandir(path.parent))
    except OSError:
        return removed
    for entry in entries:
        m = pattern.fullmatch(entry.name)
        if m is None or _alive(int(m.group(1))):
            continue
        try:
            if entry.is_file(follow_symlinks=False):
                os.unlink(entry.path)
                removed.append(Path(entry.path))
        except OSError:
            pass
    return removed


def checkpoint(path: Path) -> None:
    """Fold an existing world's WAL into it so that no stale WAL can pair with a new file."""
    try:
        conn = sqlite3.connect(path, isolation_level=None)
        try:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            conn.close()
    except sqlite3.Error:
        pass  # not a readable SQLite file: nothing of it to keep


def connect(path: Path, writable: bool) -> sqlite3.Connection:
    """An SQLite connection; read-only worlds on read-only media open as immutable.

    SQLite cannot open a WAL-mode file read-only where it may not create the -shm file (a
    read-only disk). Nothing can change such a file, so it is opened immutable, unless its WAL
    holds commits that only a writable copy can replay.
    """
    base = path.resolve().as_uri()

    def attempt(query: str) -> sqlite3.Connection:
        conn = sqlite3.connect(base + query, uri=True, check_same_thread=False, isolation_level=None)
        try:
            conn.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchall()
        except BaseException:
            conn.close()
            raise
        return conn

    try:
        return attempt("?mode=rw" if writable else "?mode=ro")
    except sqlite3.Error as exc:
        first = exc
    cannot_write = _read_only_fs(path) or not os.access(path.parent, os.W_OK | os.X_OK)
    if writable and cannot_write:
        raise WorldFileError(f"cannot open world file {path} for writing: its folder or disk is read-only "
                             f"(open it read-only) ({first})")
    if not writable and cannot_write:
        if wal_has_frames(path):
            raise WorldFileError(f"world file {path} has writes in its WAL that only a writable disk can "
                                 f"replay; copy it with its -wal file to a writable disk ({first})")
        try:
            return attempt("?mode=ro&immutable=1")
        except sqlite3.Error as exc:
            first = exc
    raise WorldFileError(f"cannot open world file {path}: {first}")


def _read_only_fs(path: Path) -> bool:
    try:
        return bool(os.statvfs(path.parent).f_flag & os.ST_RDONLY)
    except OSError:
        return False
