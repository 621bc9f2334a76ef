"""One world for every tab: a WorldModel behind a lock, the state "reset" returns to, the memory map.

The WorldModel is not thread-safe and renders run in worker threads so the event loop stays
free; every method here that touches the model holds ``lock``. Only this class writes to the
memory, so the map can follow it incrementally.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from rtfm_ros.geometry import PinholeCamera
from rtfm_ros.memory import SOURCES, FrameMemory, WorldFile
from rtfm_ros.serve.seeding import SeedError, SeedFrame

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
        self.wm, self.camera, self.save_path = wm, camera, save_path
        self.lock = threading.Lock()
        self._scratch = scratch
        self._start_frames: list[SeedFrame] = []
        self._start_file: Path | None = None
        self._start_sources: list[int] = []
        self._start_fit: WorldFit | None = None  # the start world's fit (rtfm fit), kept across resets
        self._copy: Path | None = None
        self._copies = 0
        self.start_pose = np.eye(4)
        self.map_state: tuple[int, list[MapRow]] = (0, [])  # (generation, rows); replaced whole on reset

    # ------------------------------------------------------------------ start state
    def seed(self, frames: list[SeedFrame]) -> int:
        """Replace the world by these frames; they become what reset returns to. Returns the frame count."""
        if not frames:
            raise SeedError("no frames to seed the world with")
        with self.lock:
            self.wm.reset()
            self._drop_copy()
            try:
                for f in frames:
                    self.wm.add_frame(f.rgb, f.T_world_camera, f.camera, depth=f.depth, source=f.source)
            except BaseException:
                if self._start_frames or self._start_file is not None:
                    self._restore()  # a refused frame leaves the world as it started, not half seeded
                raise
            # Keep the frames as stored (model resolution), not the uploads' full-size pixels.
            mem = self.wm.memory
            self._start_frames = [SeedFrame(g.rgb, g.T_world_camera, g.camera, g.depth, g.source)
                                  for g in (mem.get(i) for i in mem)]
            self._start_file = None
            self._start_sources = [SOURCES.index(f.source) for f in self._start_frames]
            self._started()
            return len(mem)

    def open_world(self, path: Path) -> int:
        """Start from a saved world: kept as a private copy, so the file given is never changed."""
        with self.lock:
            start = self._scratch / "start.rtfm"
            with FrameMemory.open(path, writable=False) as mem:
                mem.save(start)
            world = WorldFile.open(start, writable=False)
            try:
                sources = world.read_index()[3]
            finally:
                world.close()
            if not sources:
                raise SeedError(f"world {path} has no frames")
            self._start_file, self._start_frames = start, []
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
        if self._start_file is not None:
            self._copies += 1
            with FrameMemory.open(self._start_file, writable=False) as mem:
                copy = mem.save(self._scratch / f"world-{self._copies}.rtfm")
            old, self.wm = self.wm, self.wm.with_memory(FrameMemory.open(copy), fit=self._start_fit)
            old.memory.close()
            self._drop_copy()
            self._copy = copy
        else:
            self.wm.reset()
            self._drop_copy()
            for f in self._start_frames:
                self.wm.add_frame(f.rgb, f.T_world_camera, f.camera, depth=f.depth, source=f.source)
        self._started()

    def _drop_copy(self) -> None:
        if self._copy is not None and self._copy != self.wm.memory.path:
            self._copy.unlink(missing_ok=True)
            self._copy = None

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
        with self.lock:
            return self.wm.save(self.save_path), len(self.wm.memory)

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
            self._drop_copy()
