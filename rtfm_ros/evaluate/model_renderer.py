"""The world model behind the evaluation suite's renderer signature.

``render(context, T_world_camera, camera) -> rgb`` with the suite's context views, so the model
is scored on exactly the context the baselines get: a fresh world is seeded with those views
(sharing one loaded network) and the target rendered with ``remember=False``. With
``use_depth`` the views' depth is given (RGB-D seeds, simulators, generated views); without it
each view's depth comes from stereo over the other context views, as for photos. With
``learned=False`` the learned renderer and the monocular prior are off (the no-learning
ablation); ``check_depth=False`` also drops stereo's consistency check (the pipeline before it).
With ``depth_noise`` the views' depth is first measured as that depth camera would (the RGB-D
case: noise growing with z^2, disparity steps, dropouts at depth edges), the same for every row.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Sequence

import numpy as np

from rtfm_ros.camera.sensor import DepthNoise
from rtfm_ros.evaluate.baselines import ContextView
from rtfm_ros.geometry import PinholeCamera


def model_renderer(checkpoint: str | None = None, device: str = "auto", use_depth: bool = True,
                   learned: bool = True, check_depth: bool = True,
                   depth_noise: DepthNoise | None = None) -> Callable[[Sequence[ContextView], np.ndarray,
                                                                       PinholeCamera], np.ndarray]:
    from rtfm_ros.render.cache import RenderCore
    from rtfm_ros.render.config import RenderConfig
    from rtfm_ros.world import WorldModel

    core = RenderCore.load(checkpoint, device=device)
    config = RenderConfig(use_prior=learned, use_learned=learned, check_depth=check_depth)

    def measured(view: ContextView) -> np.ndarray | None:
        if view.depth is None or depth_noise is None:
            return view.depth
        # the same view gets the same noise in every row and run
        rng = np.random.default_rng(zlib.crc32(np.ascontiguousarray(view.depth).tobytes()))
        return depth_noise.at_width(view.rgb.shape[1]).apply(view.depth, float(view.camera.K[0, 0]), rng)

    def render(context: Sequence[ContextView], T_world_camera: np.ndarray, camera: PinholeCamera) -> np.ndarray:
        wm = WorldModel(core, config=config)
        wm.add_frames([(c.rgb, c.T_world_camera, c.camera) for c in context],
                      depths=[measured(c) if use_depth else None for c in context])
        return wm.render(T_world_camera, camera, remember=False)

    return render
