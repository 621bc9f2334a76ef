"""One batched call for views of several worlds that share one render core.

``WorldModel.render_batch`` renders N poses of ONE world. A vector env with one world per
sub-env has N worlds over (normally) one RenderCore (``world.with_memory``), so
``render_many`` sends one view per world through it at once, each with context picked from its
own memory; both go through the facade's checks and the same batched core.

Worlds on different cores are grouped, one batched call per core.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal, overload

import numpy as np
import torch

from rtfm_ros.geometry import PinholeCamera
from rtfm_ros.learn.depth_prior import DepthPrior
from rtfm_ros.render.cache import RenderCore
from rtfm_ros.world import WorldModel, render_worlds


class BatchRenderError(ValueError):
    """Inputs render_many cannot use (mismatched lengths, sizes, models)."""


def resolve_world_model(model: Any = None, device: str | torch.device = "auto") -> WorldModel:
    """A WorldModel from a WorldModel (used as is), a DepthPrior, a checkpoint directory or
    None (the bundled default depth prior)."""
    if isinstance(model, WorldModel):
        return model
    if isinstance(model, DepthPrior):
        return WorldModel(RenderCore(model, device=device))
    if model is None or isinstance(model, (str, Path)):
        return WorldModel.load(model, device=device)
    raise BatchRenderError(f"model must be a WorldModel, DepthPrior, checkpoint directory or None, "
                           f"got {type(model).__name__}")


def _cameras(camera: PinholeCamera | Sequence[PinholeCamera], n: int) -> list[PinholeCamera]:
    cams = [camera] * n if isinstance(camera, PinholeCamera) else list(camera)
    if len(cams) != n:
        raise BatchRenderError(f"{len(cams)} cameras for {n} poses")
    if len({(c.width, c.height) for c in cams}) > 1:
        raise BatchRenderError("all views of one render_many call must have the same resolution")
    return cams


@overload
def render_many(world_models: Sequence[WorldModel], poses: np.ndarray, camera: PinholeCamera | Sequence[PinholeCamera],
                *, return_depth: Literal[False] = ...) -> np.ndarray: ...
@overload
def render_many(world_models: Sequence[WorldModel], poses: np.ndarray, camera: PinholeCamera | Sequence[PinholeCamera],
                *, return_depth: Literal[True]) -> tuple[np.ndarray, np.ndarray]: ...
def render_many(world_models: Sequence[WorldModel], poses: np.ndarray,
                camera: PinholeCamera | Sequence[PinholeCamera], *,
                return_depth: bool = False) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Render view i from world_models[i]'s memory at poses[i]: NxHxWx3 uint8 (and NxHxW depth).

    Through the world facade's checked entry point (world.render_worlds): views of world models
    sharing one render core go through it in one batched call. Nothing is remembered: callers
    decide what to store (and with which stamps).
    """
    wms = list(world_models)
    poses = np.asarray(poses, dtype=np.float64)
    if poses.ndim != 3 or poses.shape[1:] != (4, 4):
        raise BatchRenderError(f"poses must be Nx4x4, got {poses.shape}")
    if len(wms) != poses.shape[0] or not wms:
        raise BatchRenderError(f"{len(wms)} world models for {poses.shape[0]} poses")
    cams = _cameras(camera, len(wms))
    images, depths = render_worlds(list(zip(wms, poses, cams)))
    return (images, depths) if return_depth else images
