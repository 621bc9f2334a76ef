"""Reference renderers that every learned renderer is compared with.

All renderers share one signature, ``render(context, T_world_camera, camera) -> rgb uint8``:
``context`` is a list of ContextView (posed images, with depth when known), the pose is the
target's T_world_camera (optical axes), ``camera`` the target's intrinsics.

- ``nearest_frame``: copies the context image whose pose is closest (metres + ROT_WEIGHT metres
  per radian). The floor any model must beat: it is perfect exactly when nothing moved.
- ``oracle_reprojection``: forward-splats every context view with its ground-truth depth into
  the target (z-buffered, rtfm_ros.render.rays.splat) and fills the holes. It knows the true geometry,
  so it bounds what copying pixels through geometry can do; it cannot paint unseen areas.
- ``ranked_reprojection``: the same, with the context ranked best first as the network's
  forward pass ranks it: that pass's starting point without any learned weight.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from rtfm_ros.geometry import PinholeCamera, pose_distance, validate_transform
from rtfm_ros.images import resize_image

ROT_WEIGHT = 1.0  # metres of translation worth one radian of rotation when comparing poses


class BaselineError(ValueError):
    """Context a baseline cannot use."""


@dataclass(frozen=True)
class ContextView:
    """One posed context image."""

    rgb: np.ndarray  # HxWx3 uint8
    T_world_camera: np.ndarray  # 4x4 optical
    camera: PinholeCamera
    depth: np.ndarray | None = None  # HxW planar z metres


Renderer = Callable[[Sequence[ContextView], np.ndarray, PinholeCamera], np.ndarray]


def _check(context: Sequence[ContextView], T: np.ndarray, camera: PinholeCamera) -> np.ndarray:
    if not context:
        raise BaselineError("a baseline needs at least one context view")
    if not isinstance(camera, PinholeCamera):
        raise BaselineError(f"camera must be a PinholeCamera, got {type(camera).__name__}")
    return validate_transform(T, "T_world_camera")


def _resize(rgb: np.ndarray, camera: PinholeCamera) -> np.ndarray:
    if rgb.shape[:2] == (camera.height, camera.width):
        return rgb.copy()
    return resize_image(rgb, camera.width, camera.height)


def pose_score(T_a: np.ndarray, T_b: np.ndarray, rot_weight: float = ROT_WEIGHT) -> float:
    """Translation distance plus rot_weight x rotation angle (smaller = closer)."""
    dt, da = pose_distance(T_a, T_b)
    return dt + rot_weight * da


def nearest_frame(context: Sequence[ContextView], T_world_camera: np.ndarray, camera: PinholeCamera) -> np.ndarray:
    """The context image closest in pose, resized to the target camera if needed."""
    T = _check(context, T_world_camera, camera)
    best = min(context, key=lambda v: pose_score(v.T_world_camera, T))
    return _resize(np.asarray(best.rgb, dtype=np.uint8), camera)


def oracle_reprojection(context: Sequence[ContextView], T_world_camera: np.ndarray, camera: PinholeCamera,
                        fill_iterations: int = 64, rank_margin: float = 0.0) -> np.ndarray:
    """Splat all context views (with ground-truth depth) into the target, then fill holes.

    rank_margin > 0 ranks the views in the order given (see rays.splat), as the model does.
    """
    import torch

    from rtfm_ros.render.rays import fill_holes, splat

    T = _check(context, T_world_camera, camera)
    views = [v for v in context if v.depth is not None]
    if not views:
        raise BaselineError("oracle_reprojection needs context views with depth")
    shapes = {v.rgb.shape[:2] for v in views}
    if len(shapes) != 1:
        raise BaselineError(f"oracle_reprojection needs context views of one size, got {sorted(shapes)}")
    with torch.no_grad():
        colors = torch.from_numpy(np.stack([v.rgb for v in views])).permute(0, 3, 1, 2).float()[None] / 255.0
        depth = torch.from_numpy(np.stack([np.asarray(v.depth, np.float32) for v in views]))[None]
        K_src = torch.from_numpy(np.stack([v.camera.K for v in views]))[None]
        T_src = torch.from_numpy(np.stack([np.asarray(v.T_world_camera, np.float64) for v in views]))[None]
        K_dst = torch.from_numpy(camera.K)[None]
        T_dst = torch.from_numpy(T)[None]
        image, _z, mask = splat(colors, depth, K_src.float(), T_src.float(), K_dst.float(), T_dst.float(),
                                camera.height, camera.width, rank_margin=rank_margin)
        image = fill_holes(image, mask, iterations=fill_iterations)
    out = (image[0].permute(1, 2, 0).clamp(0, 1) * 255.0).round().to(torch.uint8).numpy()
    return np.ascontiguousarray(out)


# A later-ranked context frame must be >10% closer (per rank) to hide a better-ranked one.
RANK_MARGIN = 0.1


def ranked_reprojection(context: Sequence[ContextView], T_world_camera: np.ndarray,
                        camera: PinholeCamera) -> np.ndarray:
    """Oracle reprojection with the context ranked best first: a later-ranked frame must be
    RANK_MARGIN closer (per rank) to hide a better-ranked one; the same hole filling."""
    return oracle_reprojection(context, T_world_camera, camera, rank_margin=RANK_MARGIN)


BASELINES: dict[str, Renderer] = {"nearest_frame": nearest_frame, "oracle_reprojection": oracle_reprojection,
                                  "ranked_reprojection": ranked_reprojection}
