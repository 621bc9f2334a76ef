"""Atomic writes: build a file (or folder) under a hidden temporary name beside its target, fsync
it, then rename it into place.

Every output of the project (worlds, checkpoints, datasets, fits, bags, demo files) is written
this one way, so a crash, a full disk or an error mid-write never leaves a half-written file
where a finished one is expected: readers see the previous version or the new one, whole.
"""

from __future__ import annotations

import os
import re
import shutil
import uuid
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType


def temp_path(final: str | Path) -> Path:
    """Hidden unique name beside ``final``: ``.NAME.PID.RANDOM.tmp`` (the pid lets a cleaner tell
    a live write from a killed one's leftovers)."""
    final = Path(final)
    return final.with_name(f".{final.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")


def temp_pattern(name: str, sidecars: Sequence[str] = ()) -> re.Pattern[str]:
    """Regex matching temp_path names for a target called ``name`` (group 1: the pid), optionally
    followed by one of ``sidecars`` (e.g. SQLite's ``-wal``)."""
    sides = "|".join(re.escape(s) for s in sidecars)
    return re.compile(rf"\.{re.escape(name)}\.(\d+)\.[0-9a-f]{{8}}\.tmp" + (f"(?:{sides})?" if sides else ""))


def fsync_path(path: str | Path) -> None:
    """Flush a file, or a directory's entries, to disk (best effort on platforms that cannot)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except IsADirectoryError:  # pragma: no cover - Windows cannot open directories
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover - some file systems refuse fsync on directories
        if not Path(path).is_dir():
            raise
    finally:
        os.close(fd)


def remove_path(path: str | Path, sidecars: Sequence[str] = ()) -> None:
    """Delete a file or folder and its sidecar files; best effort (the caller's error matters)."""
    path = Path(path)
    for side in ("", *sidecars):
        p = Path(f"{path}{side}")
        try:
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p, ignore_errors=True)
            else:
                p.unlink(missing_ok=True)
        except OSError:
            pass


def replace_path(src: str | Path, final: str | Path) -> None:
    """Rename ``src`` (a finished file or folder) over ``final`` and fsync the parent folder.

    A file replaces a file in one rename; a folder (which rename cannot put over a non-empty
    folder, nor over a file) first moves what is at ``final`` to a hidden side name, removed after.
    """
    src, final = Path(src), Path(final)
    old = None
    if (src.is_dir() or final.is_dir()) and (final.exists() or final.is_symlink()):
        old = temp_path(final)
        os.replace(final, old)
    os.replace(src, final)
    if old is not None:
        remove_path(old)
    fsync_path(final.parent)


class AtomicPath:
    """Write to ``tmp`` (a fresh temporary path beside ``final``, not created), then ``commit()``.

    ``commit`` fsyncs the file (or every file of a folder), renames it over ``final`` and fsyncs
    the parent folder; ``discard`` (or leaving the ``with`` block by an exception) removes it and
    leaves ``final`` untouched. A folder replaces an existing folder through a hidden side name.
    ``overwrite=False`` refuses to replace anything that appeared at ``final`` meanwhile.
    ``sidecars`` are suffixed files the writer may leave beside tmp (SQLite's -wal, -journal).
    ``keep_name`` makes tmp carry the final name, inside a hidden staging folder.
    """

    def __init__(self, final: str | Path, *, overwrite: bool = True, sidecars: Sequence[str] = (),
                 keep_name: bool = False) -> None:
        self.final = Path(final)
        self._staging: Path | None = None
        if keep_name:  # for writers that name inner files after their target (rosbag2 folders)
            self._staging = temp_path(self.final)
            self._staging.mkdir()
            self.tmp = self._staging / self.final.name
        else:
            self.tmp = temp_path(self.final)
        self.overwrite = overwrite
        self.sidecars = tuple(sidecars)
        self.done = False

    def commit(self) -> Path:
        """Move the finished temporary into place; the temporary is removed if this fails."""
        try:
            fsync_tree(self.tmp)
            if not self.overwrite and (self.final.exists() or self.final.is_symlink()):
                raise FileExistsError(f"{self.final} appeared while writing; refusing to overwrite it")
            replace_path(self.tmp, self.final)
        except BaseException:
            self.discard()
            raise
        self.done = True
        self._clean()  # sidecars and staging only: tmp itself is now final
        return self.final

    def discard(self) -> None:
        """Drop whatever was written; ``final`` is left as it was."""
        if not self.done:
            self._clean()
        self.done = True

    def _clean(self) -> None:
        remove_path(self.tmp, self.sidecars)
        if self._staging is not None:
            remove_path(self._staging)

    def __enter__(self) -> Path:
        return self.tmp

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.discard()


def atomic_path(final: str | Path, *, overwrite: bool = True, sidecars: Sequence[str] = (),
                keep_name: bool = False) -> AtomicPath:
    """``with atomic_path(final) as tmp:`` write tmp; it replaces final when the block succeeds."""
    return AtomicPath(final, overwrite=overwrite, sidecars=sidecars, keep_name=keep_name)


def write_bytes_atomic(final: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``final`` atomically."""
    with atomic_path(final) as tmp:
        tmp.write_bytes(data)
    return Path(final)


def write_text_atomic(final: str | Path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``final`` atomically."""
    return write_bytes_atomic(final, text.encode("utf-8"))


def fsync_tree(path: str | Path) -> None:
    """fsync a file, or every file and folder under a folder."""
    path = Path(path)
    if path.is_dir():
        for root, _dirs, files in os.walk(path):
            for name in files:
                fsync_path(Path(root) / name)
            fsync_path(root)
    else:
        fsync_path(path)
