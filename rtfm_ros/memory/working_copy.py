"""A user's world file stays theirs: a working copy in a scratch directory, removed on close.

A world file is validated, then copied with SQLite's backup API (consistent even while another
process writes it) into a scratch directory; frames added since go to the copy, never to the
user's file. Only regular files are ever opened, so a FIFO or a device named as a world is
refused at once instead of blocking. The camera node, `rtfm serve` and bag replay use it.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import stat
import tempfile
from pathlib import Path

from rtfm_ros.memory.store import FrameMemory
from rtfm_ros.memory.world_file import WorldFile


def regular_file(path: Path) -> Path:
    """path if it names an existing regular file (symlinks followed); a clear error otherwise."""
    try:
        mode = os.stat(path).st_mode  # stat never blocks, even on a FIFO
    except FileNotFoundError:
        raise FileNotFoundError(f"{path} does not exist") from None
    if stat.S_ISDIR(mode):
        raise IsADirectoryError(f"{path} is a directory, not a world file")
    if not stat.S_ISREG(mode):
        raise ValueError(f"{path} is not a regular file (a FIFO, socket or device): not a world file")
    return path


def is_world_file(path: Path) -> bool:
    """Whether path is a readable rtfm_ros world (header, schema and index checksums)."""
    try:
        regular_file(path)
        WorldFile.open(path, writable=False, check="none").close()
        return True
    except (OSError, ValueError):
        return False


class WorkingCopy:
    """A writable copy of a world file (``memory``, pixels within ``ram_budget_bytes`` in RAM) in a
    scratch directory of its own, removed on close."""

    def __init__(self, source: str | Path, scratch_dir: str | Path = "", *,
                 ram_budget_bytes: int | None = None) -> None:
        source = regular_file(Path(source))
        WorldFile.open(source, writable=False, check="quick").close()  # refuse before copying anything
        self.dir = tempfile.mkdtemp(prefix="rtfm_world_", dir=str(scratch_dir) or None)
        self.source = source
        self.path = Path(self.dir) / "world.rtfm"
        try:
            src = sqlite3.connect(source.resolve().as_uri() + "?mode=ro", uri=True)
            try:
                dst = sqlite3.connect(self.path)
                try:
                    src.backup(dst)
                finally:
                    dst.close()
            finally:
                src.close()
            self.memory = FrameMemory.open(self.path, ram_budget_bytes, writable=True, check="none")
        except BaseException:
            shutil.rmtree(self.dir, ignore_errors=True)
            raise

    def close(self) -> None:
        """Close the copy and delete it (frames added since are lost unless saved)."""
        self.memory.close()
        shutil.rmtree(self.dir, ignore_errors=True)
