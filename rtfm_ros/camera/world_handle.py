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
        with a distorted ``lens``, its ideal views are rendered and remapped to what the lens sees."""
        if lens is None:
            self.world.check_camera(camera)
            return self.worker.render_view(T, camera, want_depth=want_depth, remember=remember,
                                           depth_source=depth_source, tolerance=tolerance)
        for v in lens.views:
            self.world.check_camera(v.camera)
        rgbs, depths = [], []
        for v in lens.views:  # one, or a wide fisheye's cube faces (the pose turned by each face's R)
            turned = T.copy()
            turned[:3, :3] = T[:3, :3] @ v.R
            rgb, depth = self.worker.render_view(turned, v.camera, want_depth=want_depth, remember=remember,
                                                 depth_source=depth_source, tolerance=tolerance)
            rgbs.append(rgb)
            depths.append(depth)
        if not want_depth:
            return lens.remap(rgbs), None
        return lens.remap(rgbs), lens.remap_depth([d for d in depths if d is not None])
