"""One world for every tab: a world session (rtfm_ros.world_session: the WorldModel behind a lock,
its working copy, save and load), the state "reset" returns to, the memory map.

The WorldModel is not thread-safe and renders run in worker threads so the event loop stays
free; every method here that touches the model holds ``lock``. Only this class writes to the
memory, so the map can follow it incrementally.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from rtfm_ros.geometry import PinholeCamera
from rtfm_ros.memory import SOURCES
from rtfm_ros.memory.working_copy import WorkingCopy
from rtfm_ros.serve.seeding import SeedError, SeedFrame
from rtfm_ros.world_session import WorldSession

if TYPE_CHECKING:
    from rtfm_ros.render.fit_file import WorldFit
    from rtfm_ros.world import WorldModel

MapRow = tuple[float, float, float, float, int]  # x, y, heading (rad), half horizontal fov (rad), source index


@dataclass(frozen=True)
class Rendered:
    """One rendered view and the world's state right after it."""

    rgb: np.ndarray
    depth: np.ndarray | None
    seconds: float
    frames: int


class SharedWorld:
    """The served world: rendering, reset to the start state, save, seeding, and the top-view map."""

    def __init__(self, wm: WorldModel, camera: PinholeCamera, scratch: Path, save_path: Path | None) -> None:
        self.camera, self.save_path = camera, save_path
        self.session = WorldSession(wm, scratch_dir=scratch)
        self.lock = self.session.lock
        self._scratch = scratch
        self._start_frames: list[SeedFrame] = []
        self._start: WorkingCopy | None = None  # the world file as it was when it was opened
        self._start_sources: list[int] = []
        self._start_fit: WorldFit | None = None  # the start world's fit (rtfm fit), kept across resets
        self.start_pose = np.eye(4)
        self.map_state: tuple[int, list[MapRow]] = (0, [])  # (generation, rows); replaced whole on reset

    @property
    def wm(self) -> WorldModel:
        """The world now (a new one after each reset to a world file)."""
        return self.session.world

    # ------------------------------------------------------------------ start state
    def seed(self, frames: list[SeedFrame]) -> int:
        """Replace the world by these frames; they become what reset returns to. Returns the frame count.

        The new world is built and every frame checked (and resized) without the lock, so other
        tabs keep rendering meanwhile, and a refused frame leaves the world as it was.
        """
        if not frames:
            raise SeedError("no frames to seed the world with")
        new = self.session.empty_world()
        try:
            for f in frames:
                try:
                    new.add_frame(f.rgb, f.T_world_camera, f.camera, depth=f.depth, source=f.source)
                except ValueError as exc:
                    raise SeedError(f"{f.name}: {exc}") from None
        except BaseException:
            new.memory.close()
            raise
        # Keep the frames as stored (model resolution), not the uploads' full-size pixels.
        mem = new.memory
        start = [SeedFrame(g.rgb, g.T_world_camera, g.camera, g.depth, g.source) for g in (mem.get(i) for i in mem)]
        with self.lock:
            self.session.replace(new)
            self._start_frames = start
            self._drop_start()
            self._start_sources = [SOURCES.index(f.source) for f in start]
            self._started()
            return len(mem)

    def open_world(self, path: Path) -> int:
        """Start from a saved world: kept as a private copy, so the file given is never changed."""
        with self.lock:
            start = WorkingCopy(path, self._scratch, ram_budget_bytes=self.wm.memory.ram_budget_bytes)
            sources = [start.memory.source(i) for i in start.memory]
            if not sources:
                start.close()
                raise SeedError(f"world {path} has no frames")
            self._drop_start()
            self._start, self._start_frames = start, []
            self._start_sources = [SOURCES.index(s) for s in sources]
            self._start_fit = None
            self._restore()
            self.wm.load_fit_beside(path)
            self._start_fit = self.wm.fit
            return len(self.wm.memory)

    def reset(self) -> int:
        """Back to the start state (the seeds, or the world file as it was when the server started)."""
        with self.lock:
            self._restore()
            return len(self.wm.memory)

    def _restore(self) -> None:
        if self._start is not None:
            self.session.load(self._start.path)  # a fresh working copy of the start; the previous one goes
            self.wm.fit = self._start_fit
        else:
            self.session.reset()
            for f in self._start_frames:
                self.session.add_frame(f.rgb, f.T_world_camera, f.camera, depth=f.depth, source=f.source)
        self._started()

    def _drop_start(self) -> None:
        if self._start is not None:
            self._start.close()
            self._start = None

    def _started(self) -> None:
        self.start_pose = self.wm.memory.pose(0)
        self.map_state = (self.map_state[0] + 1, [])
        self._extend_map()

    # ------------------------------------------------------------------ serving
    def render(self, T_world_camera: np.ndarray, remember: bool, want_depth: bool) -> Rendered:
        """Render this tab's view (optionally remembered by the world) and grow the map."""
        with self.lock:
            t0 = time.perf_counter()
            depth: np.ndarray | None = None
            if want_depth:
                rgb, depth = self.wm.render(T_world_camera, self.camera, remember=remember, return_depth=True)
            else:
                rgb = self.wm.render(T_world_camera, self.camera, remember=remember)
            seconds = time.perf_counter() - t0
            self._extend_map()
            return Rendered(rgb, depth, seconds, len(self.wm.memory))

    def save(self) -> tuple[Path, int]:
        """Save to the path given at start (the only place the server writes a world)."""
        if self.save_path is None:
            raise SeedError("this server was started without --save: saving is off")
        frames, path = self.session.save(self.save_path, replace=self.save_path.exists())
        return path, frames

    def frames(self) -> int:
        return len(self.wm.memory)

    def _extend_map(self) -> None:
        """Append map rows for frames added since the last call (held lock)."""
        mem, rows = self.wm.memory, self.map_state[1]
        for i in range(len(rows), len(mem)):
            T, cam = mem.pose(i), mem.camera(i)
            src = self._start_sources[i] if i < len(self._start_sources) else SOURCES.index(mem.get(i).source)
            fwd = T[:3, 2]
            rows.append((round(float(T[0, 3]), 3), round(float(T[1, 3]), 3),
                         round(math.atan2(fwd[1], fwd[0]), 4), round(math.atan(cam.width / (2 * cam.fx)), 4), src))

    def close(self) -> None:
        with self.lock:
            self.wm.memory.close()
            self.session.close()
            self._drop_start()
