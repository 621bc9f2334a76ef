"""The node's world session: reset, save, load (rtfm_ros.world_session) and views rendered on request.

Services get this handle, never the node. Its RenderWorker renders the stream and long requests
from the session's world under the session's lock. ROS-free.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from rtfm_ros.camera.lens import Lens
from rtfm_ros.camera.worker import RenderWorker
from rtfm_ros.geometry import PinholeCamera
from rtfm_ros.memory.working_copy import WorkingCopy
from rtfm_ros.world import WorldModel
from rtfm_ros.world_session import WorldSession


class WorldHandle(WorldSession):
    """The camera's world session and the RenderWorker that renders from it."""

    def __init__(self, world: WorldModel, log: Any, copy: WorkingCopy | None = None,
                 scratch_dir: str | Path = "") -> None:
        super().__init__(world, copy=copy, scratch_dir=scratch_dir, log=log)
        self.worker = RenderWorker(self)

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
