"""One batched model call for views of several worlds that share one renderer.

``WorldModel.render_batch`` renders N poses of ONE memory. A vector env with one world per
sub-env has N memories but (normally) one network, so ``render_many`` does what render_batch
does with WorldModel's public pieces (memory.select_context with the same GENERATED_PRIOR,
model.encode/render, device, autocast dtype), picking each view's context from that view's own memory, and sends every view
through the network at once. Frames that have no cached encoding yet (typically a fresh
episode's seed frames) are also encoded together in one call instead of one by one.

World models that hold different networks are grouped, one batched call per network.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from rtfm_ros.geometry import PinholeCamera, validate_transform
from rtfm_ros.memory import Frame
from rtfm_ros.model.renderer import ContextEncoding, FrameRenderer
from rtfm_ros.world import GENERATED_PRIOR, EmptyWorldError, WorldModel

ENCODE_CHUNK = 64  # frames per encoder call (bounds peak memory when many worlds are seeded at once)


class BatchRenderError(ValueError):
    """Inputs render_many cannot use (mismatched lengths, sizes, models)."""


def resolve_world_model(model: Any = None, device: str | torch.device = "auto") -> WorldModel:
    """A WorldModel from a WorldModel (used as is), a FrameRenderer, a checkpoint directory or
    None (the bundled default model)."""
    if isinstance(model, WorldModel):
        return model
    if isinstance(model, FrameRenderer):
        return WorldModel(model, device=device)
    if model is None or isinstance(model, (str, Path)):
        return WorldModel.load(model, device=device)
    raise BatchRenderError(f"model must be a WorldModel, FrameRenderer, checkpoint directory or None, "
                           f"got {type(model).__name__}")


def sibling(world_model: WorldModel) -> WorldModel:
    """A WorldModel with its own empty memory that shares ``world_model``'s network (no copy)."""
    return WorldModel(world_model.model, device=world_model.device, checkpoint_info=world_model.checkpoint_info)


def _autocast(wm: WorldModel):
    return torch.autocast(wm.device.type, dtype=wm.amp or torch.float32, enabled=wm.amp is not None)


@torch.no_grad()
def encode_missing(world_model: WorldModel, items: Sequence[tuple[WorldModel, int]]) -> dict[tuple[int, int], ContextEncoding]:
    """Encodings of (world model, frame id) pairs, computing the uncached ones in batched calls.

    Returns {(id(world model), frame id): encoding}; new encodings are cached in each memory.
    """
    out: dict[tuple[int, int], ContextEncoding] = {}
    todo: dict[tuple[int, int], tuple[WorldModel, Frame]] = {}
    for wm, fid in items:
        key = (id(wm), int(fid))
        if key in out or key in todo:
            continue
        frame = wm.memory.get(fid)
        if frame.encoding is not None:
            out[key] = frame.encoding
        else:
            todo[key] = (wm, frame)
    by_shape: dict[tuple[int, int], list[tuple[int, int]]] = {}
    for key, (_, frame) in todo.items():
        by_shape.setdefault(frame.rgb.shape[:2], []).append(key)
    dev, model = world_model.device, world_model.model
    for keys in by_shape.values():
        for s in range(0, len(keys), ENCODE_CHUNK):
            chunk = keys[s: s + ENCODE_CHUNK]
            frames = [todo[k][1] for k in chunk]
            rgb = torch.from_numpy(np.stack([f.rgb for f in frames])).to(dev).permute(0, 3, 1, 2).float() / 255
            K = torch.from_numpy(np.stack([f.camera.K for f in frames])).to(dev).float()
            with _autocast(world_model):
                tokens, depth = model.encode(rgb, K)
            for j, k in enumerate(chunk):
                enc = ContextEncoding(tokens=tokens[j].clone(), depth=depth[j].float().clone())
                wm, frame = todo[k]
                wm.memory.set_encoding(frame.id, enc)
                out[k] = enc
    return out


def _cameras(camera: PinholeCamera | Sequence[PinholeCamera], n: int) -> list[PinholeCamera]:
    cams = [camera] * n if isinstance(camera, PinholeCamera) else list(camera)
    if len(cams) != n:
        raise BatchRenderError(f"{len(cams)} cameras for {n} poses")
    if len({(c.width, c.height) for c in cams}) > 1:
        raise BatchRenderError("all views of one render_many call must have the same resolution")
    return cams


@torch.no_grad()
def _render_group(wms: list[WorldModel], Ts: list[np.ndarray], cams: list[PinholeCamera]):
    lead = wms[0]
    k = lead.context_size
    rows: list[list[int]] = []
    for wm, T, cam in zip(wms, Ts, cams):
        if len(wm.memory) == 0:
            raise EmptyWorldError("the world is empty: seed the world first (add_frame or a saved world)")
        wm.check_camera(cam)
        ids = wm.memory.select_context(T, cam, k, generated_prior=GENERATED_PRIOR)
        if not ids:
            raise EmptyWorldError("context selection found no frame to render from")
        rows.append((ids * k)[:k])  # pad short lists by repetition, as render_batch does
    enc = encode_missing(lead, [(wm, i) for wm, row in zip(wms, rows) for i in row])
    frames = [wm.memory.get(i) for wm, row in zip(wms, rows) for i in row]
    encs = [enc[(id(wm), i)] for wm, row in zip(wms, rows) for i in row]
    dev, B = lead.device, len(rows)

    def per_view(t: torch.Tensor) -> torch.Tensor:  # (B*k, ...) -> (B, k, ...)
        return t.reshape(B, k, *t.shape[1:])

    # Stacked in numpy and moved once (not frame by frame): this is per-step overhead in an env.
    tokens = per_view(torch.stack([e.tokens for e in encs]).to(dev, lead.model.enc_in.weight.dtype))
    rgb = per_view(torch.from_numpy(np.stack([f.rgb for f in frames])).to(dev).permute(0, 3, 1, 2).float() / 255)
    # Stored depth where the frame has it (NaN = unknown pixel), the encoder's prediction elsewhere.
    pred = torch.stack([e.depth for e in encs]).to(dev, torch.float32)
    nan = np.full(pred.shape[1:], np.nan, np.float32)
    stored = torch.from_numpy(np.stack([nan if f.depth is None else f.depth for f in frames])).to(dev)
    depth = per_view(torch.where(torch.isfinite(stored), stored, pred))
    ctx_K = per_view(torch.from_numpy(np.stack([f.camera.K for f in frames])).to(dev, torch.float32))
    ctx_T = per_view(torch.from_numpy(np.stack([f.T_world_camera for f in frames])).to(dev, torch.float64))
    tgt_K = torch.from_numpy(np.stack([c.K for c in cams])).to(dev, torch.float32)
    tgt_T = torch.from_numpy(np.stack(Ts)).to(dev, torch.float64)
    H, W = cams[0].height, cams[0].width
    with _autocast(lead):
        out = lead.model.render(tokens, rgb, depth, ctx_K, ctx_T, tgt_K, tgt_T, H, W)
    images = (out.rgb.float().clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
    return images, out.depth.float().cpu().numpy()


def render_many(world_models: Sequence[WorldModel], poses: np.ndarray,
                camera: PinholeCamera | Sequence[PinholeCamera], *, return_depth: bool = False):
    """Render view i from world_models[i]'s memory at poses[i]: NxHxWx3 uint8 (and NxHxW depth).

    Views of world models sharing one network go through it in one batched call. Nothing is
    remembered: callers decide what to store (and with which stamps).
    """
    wms = list(world_models)
    poses = np.asarray(poses, dtype=np.float64)
    if poses.ndim != 3 or poses.shape[1:] != (4, 4):
        raise BatchRenderError(f"poses must be Nx4x4, got {poses.shape}")
    if len(wms) != poses.shape[0] or not wms:
        raise BatchRenderError(f"{len(wms)} world models for {poses.shape[0]} poses")
    Ts = [validate_transform(T, "T_world_camera") for T in poses]
    cams = _cameras(camera, len(Ts))
    groups: dict[int, list[int]] = {}
    for i, wm in enumerate(wms):
        groups.setdefault(id(wm.model), []).append(i)
    H, W = cams[0].height, cams[0].width
    images = np.empty((len(wms), H, W, 3), np.uint8)
    depths = np.empty((len(wms), H, W), np.float32)
    for idx in groups.values():
        img, dep = _render_group([wms[i] for i in idx], [Ts[i] for i in idx], [cams[i] for i in idx])
        images[idx], depths[idx] = img, dep
    return (images, depths) if return_depth else images
