"""The user's world files stay theirs: the node works on a scratch copy and writes only where asked.

A world passed in (``world`` parameter, ``~/load_world``) is validated, then copied with SQLite's
backup API (consistent even while another process writes it) into a scratch directory; the node
remembers its generated views into that copy, never into the user's file. ``~/save_world``
writes a new file and refuses any existing path; ``~/replace_world`` replaces an existing world
file (and refuses anything that is not one). Only regular files are ever opened, so a FIFO or a
device named as a world is refused at once instead of blocking. ROS-free.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import stat
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from rtfm_ros.memory import FrameMemory
from rtfm_ros.memory.world_file import WorldFile

if TYPE_CHECKING:  # pragma: no cover
    from rtfm_ros.world import WorldModel


def user_path(path: str) -> Path:
    """A path from a request: stripped, ~ expanded, not empty."""
    path = path.strip()
    if not path:
        raise ValueError("path is empty")
    return Path(os.path.expanduser(path))


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


class ScratchWorld:
    """A working copy of a user's world in a scratch directory, removed on close."""

    def __init__(self, source: Path, scratch_dir: str = "") -> None:
        regular_file(source)
        WorldFile.open(source, writable=False, check="quick").close()  # refuse before copying anything
        self.dir = tempfile.mkdtemp(prefix="rtfm_world_", dir=scratch_dir or None)
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
            self.memory = FrameMemory.open(self.path, writable=True, check="none")
        except BaseException:
            shutil.rmtree(self.dir, ignore_errors=True)
            raise

    def close(self) -> None:
        """Close the copy and delete it (frames remembered since are lost unless saved)."""
        self.memory.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def open_copy(world: WorldModel, source: Path, scratch_dir: str = "") -> tuple[WorldModel, ScratchWorld]:
    """A new world over a working copy of source, sharing world's network (its fit is the caller's)."""
    scratch = ScratchWorld(source, scratch_dir)
    try:
        return world.with_memory(scratch.memory), scratch
    except BaseException:
        scratch.close()
        raise


def save_world(world: WorldModel, path: Path, replace: bool) -> Path:
    """Save to a new file, or (replace) over an existing world file only; refuses everything else."""
    if path.exists() or path.is_symlink():
        if not replace:
            raise FileExistsError(f"{path} already exists; ~/save_world never replaces a file "
                                  "(call ~/replace_world to replace a world file)")
        if not is_world_file(path):
            raise ValueError(f"{path} exists and is not a world file: refusing to replace it")
    elif replace:
        raise FileNotFoundError(f"{path} does not exist: nothing to replace (use ~/save_world)")
    if not path.parent.is_dir():
        raise FileNotFoundError(f"directory {path.parent} does not exist")
    return world.save(path)
