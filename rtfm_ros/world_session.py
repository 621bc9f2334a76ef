"""One world behind one lock: the world now, its working copy, and reset, save and load.

The camera node (camera.world_handle) and `rtfm serve` (serve.shared) hold their world in a
WorldSession. A world is never changed from outside by swapping its memory: loading a world
file builds a new WorldModel over a working copy (memory.working_copy, sharing the render core),
makes it the session's world under the lock, then closes the previous working copy. Saves write
a new file, or replace an existing world file only when asked (never anything else). The lock is
a WorldGate: re-entrant, and fair between a stream of renders and other work when both wait.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from rtfm_ros.geometry import PinholeCamera
from rtfm_ros.memory.store import FrameMemory
from rtfm_ros.memory.working_copy import WorkingCopy, is_world_file
from rtfm_ros.world import WorldModel


def user_path(path: str | Path) -> Path:
    """A path from a request: stripped, ~ expanded, not empty."""
    text = str(path).strip()
    if not text:
        raise ValueError("path is empty")
    return Path(os.path.expanduser(text))


def save_world(world: WorldModel, path: Path, replace: bool) -> Path:
    """Save to a new file, or (replace) over an existing world file only; refuses everything else."""
    if path.exists() or path.is_symlink():
        if not replace:
            raise FileExistsError(f"{path} already exists; a save never replaces a file unless asked "
                                  "(~/replace_world replaces a world file)")
        if not is_world_file(path):
            raise ValueError(f"{path} exists and is not a world file: refusing to replace it")
    elif replace:
        raise FileNotFoundError(f"{path} does not exist: nothing to replace (use ~/save_world)")
    if not path.parent.is_dir():
        raise FileNotFoundError(f"directory {path.parent} does not exist")
    return world.save(path)


class WorldGate:
    """A re-entrant lock that alternates between the stream and background work when both wait."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._owner: int | None = None
        self._depth = 0
        self._waiting = {True: 0, False: 0}  # stream?, count
        self._last_stream = False

    def acquire(self, stream: bool = False, timeout: float | None = None) -> bool:
        me = threading.get_ident()
        with self._cond:
            if self._owner == me:
                self._depth += 1
                return True
            self._waiting[stream] += 1
            try:
                ok = self._cond.wait_for(lambda: self._owner is None and not (
                    self._waiting[not stream] and self._last_stream == stream), timeout)
            finally:
                self._waiting[stream] -= 1
            if ok:
                self._owner, self._depth, self._last_stream = me, 1, stream
            return ok

    def release(self) -> None:
        with self._cond:
            if self._owner != threading.get_ident():
                raise RuntimeError("release of a WorldGate not held by this thread")
            self._depth -= 1
            if self._depth == 0:
                self._owner = None
                self._cond.notify_all()

    def waiting(self, stream: bool = False) -> int:
        """How many threads wait for the gate (the stream's, or background work's)."""
        with self._cond:
            return self._waiting[stream]

    @contextmanager
    def hold(self, stream: bool = False) -> Iterator[None]:
        self.acquire(stream)
        try:
            yield
        finally:
            self.release()

    def __enter__(self) -> WorldGate:
        self.acquire(False)
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


class WorldSession:
    """The world now, behind ``lock``; its working copy when it came from a file (closed with it)."""

    def __init__(self, world: WorldModel, *, copy: WorkingCopy | None = None, scratch_dir: str | Path = "",
                 log: Any = None) -> None:
        self._world = world
        self.lock = WorldGate()
        self._copy = copy
        self._scratch_dir = scratch_dir
        self.log = log  # logging-like (warning) or None

    @property
    def world(self) -> WorldModel:
        """The world now (read without the lock: it may be replaced right after)."""
        return self._world

    @property
    def source(self) -> Path | None:
        """The user's world file the current world is a working copy of (never written unless asked)."""
        return self._copy.source if self._copy is not None else None

    def reset(self) -> int:
        """Forget every frame; how many were forgotten."""
        with self.lock:
            n = len(self._world.memory)
            self._world.reset()
        return n

    def save(self, path: str | Path, replace: bool = False) -> tuple[int, Path]:
        """(frames, file) after writing the world to a new file, or (replace) over a world file."""
        with self.lock:
            return len(self._world.memory), save_world(self._world, user_path(path), replace)

    def load(self, path: str | Path) -> tuple[int, Path]:
        """Replace the world by a working copy of a world file; (frames, file). A failure changes nothing.

        The copy keeps the RAM budget of the world it replaces. The fit `rtfm fit` left beside
        the file is used; one that cannot be used is logged and the default blend is used.
        """
        source = user_path(path)
        copy = WorkingCopy(source, self._scratch_dir, ram_budget_bytes=self._world.memory.ram_budget_bytes)
        try:
            new = self._world.with_memory(copy.memory)
        except BaseException:
            copy.close()
            raise
        try:
            new.load_fit_beside(source)
        except Exception as e:  # noqa: BLE001 - the world is still good: render it with the default blend
            if self.log is not None:
                self.log.warning(f"not using the fit beside {source}: {e}")
        self.replace(new, copy)
        return len(new.memory), source

    def empty_world(self) -> WorldModel:
        """A new, empty world over this one's core, settings and RAM budget, to be filled without
        the lock (every frame checked as it is added) and then made the world by :meth:`replace`."""
        return self._world.with_memory(FrameMemory(ram_budget_bytes=self._world.memory.ram_budget_bytes))

    def replace(self, new: WorldModel, copy: WorkingCopy | None = None) -> None:
        """Make ``new`` (over ``copy``, when it is a working copy) the world, under the lock; the
        previous world's memory and working copy are closed. Nothing is refused here: whatever could
        fail was done while building ``new``, so a refused input never touches the world."""
        with self.lock:
            old, old_copy = self._world, self._copy
            self._world, self._copy = new, copy
            if old_copy is not None:
                old_copy.close()
            else:
                old.memory.close()

    def add_frame(self, rgb: np.ndarray, T: np.ndarray, camera: PinholeCamera, *, stamp: float | None = None,
                  source: str = "seed", depth: np.ndarray | None = None) -> int:
        """Store a posed frame (a seed or an observed image); its id."""
        with self.lock:
            return self._world.add_frame(rgb, T, camera, depth=depth, stamp=stamp, source=source)

    def close(self) -> None:
        """Close the working copy (its file is deleted); a world not from a file is left open."""
        if self._copy is not None:
            self._copy.close()
            self._copy = None
