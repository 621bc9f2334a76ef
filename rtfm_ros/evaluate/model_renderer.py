"""The learned renderer behind the evaluation suite's renderer signature.

``render(context, T_world_camera, camera) -> rgb`` with the suite's context views, so the model
is scored on exactly the context the baselines get. With ``use_depth`` the context views'
depth is splatted (as for seeds rendered with depth, or generated views); without it the model
predicts every context frame's depth itself (as for photos).
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import torch

from rtfm_ros.evaluate.baselines import ContextView
from rtfm_ros.geometry import PinholeCamera
from rtfm_ros.model.checkpoint import load_checkpoint
from rtfm_ros.runtime import autocast, autocast_dtype, pick_device


def model_renderer(checkpoint: str | None = None, device: str = "auto",
                   use_depth: bool = True) -> Callable[[Sequence[ContextView], np.ndarray, PinholeCamera], np.ndarray]:
    dev = pick_device(device)
    model, _ = load_checkpoint(checkpoint, dev)
    amp = autocast_dtype(dev)  # once, not per view

    @torch.no_grad()
    def render(context: Sequence[ContextView], T_world_camera: np.ndarray, camera: PinholeCamera) -> np.ndarray:
        rgb = torch.from_numpy(np.stack([c.rgb for c in context])).to(dev).permute(0, 3, 1, 2).float() / 255
        K = torch.from_numpy(np.stack([c.camera.K for c in context])).to(dev).float()
        T = torch.from_numpy(np.stack([c.T_world_camera for c in context])).to(dev)
        with autocast(dev, amp):
            tokens, predicted = model.encode(rgb, K)
            depth = predicted.float()
            if use_depth:
                given = [torch.from_numpy(np.asarray(c.depth, np.float32)) if c.depth is not None else None
                         for c in context]
                depth = torch.stack([g.to(dev) if g is not None else p for g, p in zip(given, depth)])
            out = model.render(tokens[None], rgb[None], depth[None], K[None], T[None],
                               torch.from_numpy(camera.K).to(dev)[None].float(),
                               torch.from_numpy(np.asarray(T_world_camera)).to(dev)[None], camera.height, camera.width)
        return (out.rgb[0].float().clamp(0, 1) * 255).round().byte().permute(1, 2, 0).cpu().numpy()

    return render
