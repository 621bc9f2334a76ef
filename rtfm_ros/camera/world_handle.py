"""The node's current world: the one place it is reset, saved, replaced and rendered on request.

Services get this handle, never the node. A world is never changed from outside by swapping its
memory: loading a world file builds a new WorldModel over a working copy (sharing the network,
world_files.open_copy), makes it the render worker's world under the render lock, then closes
the previous working copy. ROS-free.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from rtfm_ros.camera.lens import Lens
from rtfm_ros.camera.worker import RenderWorker, WorldGate
from rtfm_ros.camera.world_files import ScratchWorld, open_copy, save_world, user_path
from rtfm_ros.geometry import PinholeCamera

if TYPE_CHECKING:  # pragma: no cover
    from rtfm_ros.world import WorldModel


class WorldHandle:
    """The world a RenderWorker renders, its working copy (if it came from a file) and a logger."""

    def __init__(self, worker: RenderWorker, log: Any, scratch: ScratchWorld | None = None,
                 scratch_dir: str = "") -> None:
        self.worker = worker
        self.log = log  # logging-like: info, warning, error
        self._scratch = scratch
        self._scratch_dir = scratch_dir

    @property
    def world(self) -> WorldModel:
        """The world now (read without the lock: it may be replaced right after)."""
        return self.worker.world

    @property
    def lock(self) -> WorldGate:
        """The lock renders, services and seeds take around the world."""
        return self.worker.gate

    @property
    def source(self) -> Path | None:
        """The user's world file the current world is a working copy of (never written unless asked)."""
        return self._scratch.source if self._scratch is not None else None

    def reset(self) -> int:
        """Forget every frame; how many were forgotten."""
        with self.lock:
            n = len(self.world.memory)
            self.world.reset()
        return n

    def save(self, path: str, replace: bool = False) -> tuple[int, Path]:
        """(frames, file) after writing the world to a new file, or (replace) over a world file."""
        with self.lock:
            return len(self.world.memory), save_world(self.world, user_path(path), replace)

    def load(self, path: str) -> tuple[int, Path]:
        """Replace the world by a working copy of a world file; (frames, file). A failure changes nothing.

        A fit beside the file that cannot be used is logged and the default blend is used.
        """
        source = user_path(path)
        new, scratch = open_copy(self.world, source, self._scratch_dir)
        try:
            new.load_fit_beside(source)
        except Exception as e:  # noqa: BLE001 - the world is still good: render it with the default blend
            self.log.warning(f"not using the fit beside {source}: {e}")
        with self.lock:
            old, old_scratch = self.worker.swap_world(new), self._scratch
            self._scratch = scratch
            if old_scratch is not None:
                old_scratch.close()
            else:
                old.memory.close()
        return len(new.memory), source

    def render_view(self, T: np.ndarray, camera: PinholeCamera, *, want_depth: bool, remember: bool,
                    depth_source: str, tolerance: float,
                    lens: Lens | None = None) -> tuple[np.ndarray, np.ndarray | None]:
        """A view of any size within the budget, rendered in tiles between the stream's renders;
        with a distorted ``lens``, its ideal view is rendered and remapped to what the lens sees."""
        ideal = lens.render_camera if lens is not None else camera
        self.world.check_camera(ideal)
        rgb, depth = self.worker.render_view(T, ideal, want_depth=want_depth, remember=remember,
                                             depth_source=depth_source, tolerance=tolerance)
        if lens is None:
            return rgb, depth
        return lens.remap(rgb), None if depth is None else lens.remap_depth(depth)

    def add_frame(self, rgb: np.ndarray, T: np.ndarray, camera: PinholeCamera, *, stamp: float, source: str) -> int:
        """Store a posed frame (a seed or an observed image); its id."""
        with self.lock:
            return self.world.add_frame(rgb, T, camera, stamp=stamp, source=source)

    def close(self) -> None:
        """Close the working copy (its file is deleted); a world not from a file is left open."""
        if self._scratch is not None:
            self._scratch.close()
            self._scratch = None
