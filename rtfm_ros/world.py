"""WorldModel: the one facade the node, bag replay, Gym envs and the demo use.

A world is a FrameMemory (posed frames) plus a renderer. Rendering a pose picks context frames
by juggling, reuses each frame's cached encoding (computed once per frame), renders, and by
default remembers the view when it shows a place the memory does not hold yet.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from rtfm_ros.geometry import GeometryError, PinholeCamera, validate_transform
from rtfm_ros.memory import Frame, FrameMemory
from rtfm_ros.model.checkpoint import DEFAULT_CHECKPOINT, load_checkpoint
from rtfm_ros.model.renderer import ContextEncoding, FrameRenderer
from rtfm_ros.runtime import autocast, autocast_dtype, pick_device


# Generated views feed back into later renders; real (seeded, observed) frames are trusted more
# so errors do not compound, except at a generated view's exact pose (revisits).
GENERATED_PRIOR = 0.5
ENCODE_CHUNK = 64  # frames per encoder call (bounds peak memory when many frames are new at once)


class EmptyWorldError(RuntimeError):
    """Rendering was asked of a world with no frames."""


def _resize(img: np.ndarray, width: int, height: int, mode: str) -> np.ndarray:
    """Resize HxWxC (or HxW) with torch: 'area' for images, 'nearest' for depth."""
    if img.shape[1] == width and img.shape[0] == height:
        return img
    t = torch.from_numpy(np.array(img, dtype=np.float32))
    t = t[None, None] if t.ndim == 2 else t.permute(2, 0, 1)[None]
    out = F.interpolate(t, size=(height, width), mode=mode)[0]
    out = out[0] if img.ndim == 2 else out.permute(1, 2, 0)
    return out.round().clamp(0, 255).to(torch.uint8).numpy() if img.dtype == np.uint8 else out.numpy().astype(img.dtype)


class WorldModel:
    """Posed-frame memory + learned renderer. See README for the API tour."""

    def __init__(self, model: FrameRenderer, memory: FrameMemory | None = None, *,
                 device: str | torch.device = "auto", checkpoint_info: dict | None = None) -> None:
        self.device = pick_device(device)
        self.model = model.to(self.device).eval()
        self.config = model.config
        self.memory = memory if memory is not None else FrameMemory()
        self.checkpoint_info = checkpoint_info or {}
        self.amp = autocast_dtype(self.device)
        self.context_size = self.config.context
        self.last_render_seconds = 0.0

    @classmethod
    def load(cls, checkpoint: str | Path | None = None, *, world: str | Path | None = None,
             device: str | torch.device = "auto", ram_budget_bytes: int | None = None) -> "WorldModel":
        """The bundled default model (or ``checkpoint``), with an empty memory or a saved world."""
        dev = pick_device(device)
        model, meta = load_checkpoint(checkpoint if checkpoint is not None else DEFAULT_CHECKPOINT, dev)
        memory = FrameMemory.open(world, ram_budget_bytes=ram_budget_bytes) if world is not None \
            else FrameMemory(ram_budget_bytes=ram_budget_bytes)
        return cls(model, memory, device=dev, checkpoint_info=meta)

    @property
    def memory_camera_size(self) -> int:
        """Frames are stored at the model's native resolution (square, intrinsics rescaled)."""
        return self.config.image_size

    def _to_memory(self, image: np.ndarray, camera: PinholeCamera, depth: np.ndarray | None):
        s = self.memory_camera_size
        cam = camera.scaled(s, s)
        img = _resize(image, s, s, "area")
        d = None if depth is None else _resize(depth.astype(np.float32), s, s, "nearest")
        return img, cam, d

    def check_camera(self, camera: PinholeCamera) -> None:
        p = self.config.patch
        if camera.width % p or camera.height % p:
            raise GeometryError(f"this model renders sizes that are multiples of {p} pixels; "
                                f"got {camera.width}x{camera.height}")

    def add_frame(self, image: np.ndarray, T_world_camera: np.ndarray, camera: PinholeCamera, *,
                  depth: np.ndarray | None = None, stamp: float | None = None, source: str = "seed") -> int:
        """Store a posed frame (HxWx3 uint8, optical-axes T_world_camera); returns its id."""
        image = np.asarray(image)
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"image must be HxWx3 uint8, got {image.dtype} {image.shape}")
        if image.shape[:2] != (camera.height, camera.width):
            raise ValueError(f"image is {image.shape[1]}x{image.shape[0]} but the camera is "
                             f"{camera.width}x{camera.height}")
        T = validate_transform(T_world_camera, "T_world_camera")
        if depth is not None and np.asarray(depth).shape != image.shape[:2]:
            raise ValueError(f"depth shape {np.asarray(depth).shape} does not match the image {image.shape[:2]}")
        img, cam, d = self._to_memory(image, camera, depth)
        return self.memory.add(img, T, cam, stamp=time.time() if stamp is None else stamp, source=source, depth=d)

    def autocast(self):
        """The autocast context for this model's device (a no-op where fp32 is used)."""
        return autocast(self.device, self.amp)

    def _cameras(self, camera: PinholeCamera | Sequence[PinholeCamera], n: int) -> list[PinholeCamera]:
        cams = [camera] * n if isinstance(camera, PinholeCamera) else list(camera)
        if len(cams) != n:
            raise ValueError(f"{len(cams)} cameras for {n} poses")
        for c in cams:
            self.check_camera(c)
        if len({(c.width, c.height) for c in cams}) > 1:
            raise ValueError("all views of one render_batch call must have the same resolution")
        return cams

    @torch.no_grad()
    def render_batch(self, T_stack: np.ndarray, camera: PinholeCamera | Sequence[PinholeCamera], *,
                     remember: bool = True, return_depth: bool = False):
        """Render N poses in one batched model call: Nx4x4 -> NxHxWx3 uint8 (and NxHxW depth)."""
        if len(self.memory) == 0:
            raise EmptyWorldError("the world is empty: seed the world first (add_frame or a saved world)")
        T_stack = np.asarray(T_stack, dtype=np.float64)
        if T_stack.ndim != 3 or T_stack.shape[1:] != (4, 4):
            raise ValueError(f"poses must be Nx4x4, got {T_stack.shape}")
        Ts = [validate_transform(T, "T_world_camera") for T in T_stack]
        cams = self._cameras(camera, len(Ts))
        t0 = time.perf_counter()
        images, depths = render_views([(self, T, c) for T, c in zip(Ts, cams)])
        self.last_render_seconds = time.perf_counter() - t0
        if remember:
            for img, d, T, c in zip(images, depths, Ts, cams):
                # Judged at the memory's resolution, where the view would be stored.
                s = self.memory_camera_size
                if self.memory.should_remember(T, c.scaled(s, s)):
                    m_img, m_cam, m_d = self._to_memory(img, c, d)
                    self.memory.add(m_img, T, m_cam, stamp=time.time(), source="generated", depth=m_d)
        return (images, depths) if return_depth else images

    def render(self, T_world_camera: np.ndarray, camera: PinholeCamera, *, remember: bool = True,
               return_depth: bool = False):
        """Render one pose: HxWx3 uint8 (and HxW depth in metres with return_depth)."""
        out = self.render_batch(np.asarray(T_world_camera, dtype=np.float64)[None], camera, remember=remember,
                                return_depth=return_depth)
        return (out[0][0], out[1][0]) if return_depth else out[0]

    def save(self, path: str | Path) -> Path:
        """Save the world (frames + poses) to a world directory; the model is not copied."""
        return self.memory.save(path, meta={"model": self.checkpoint_info.get("model", {}).get("name", "")})

    def reset(self) -> None:
        """Forget every frame."""
        self.memory.clear()


# ---------------------------------------------------------------------------------------------
# The batched core: shared by WorldModel.render_batch (N views of one memory) and
# envs.batching.render_many (one view per memory, many memories sharing one network).

@torch.no_grad()
def encode_missing(lead: WorldModel, items: Sequence[tuple[WorldModel, int]]) -> dict[tuple[int, int], ContextEncoding]:
    """Encodings of (world model, frame id) pairs, computing the uncached ones in batched calls.

    Every world model must share ``lead``'s network. Returns {(id(world model), frame id):
    encoding}; new encodings are cached in each memory (a frame is encoded once, ever).
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
    dev = lead.device
    for keys in by_shape.values():
        for s in range(0, len(keys), ENCODE_CHUNK):
            chunk = keys[s: s + ENCODE_CHUNK]
            frames = [todo[k][1] for k in chunk]
            rgb = torch.from_numpy(np.stack([f.rgb for f in frames])).to(dev).permute(0, 3, 1, 2).float() / 255
            K = torch.from_numpy(np.stack([f.camera.K for f in frames])).to(dev).float()
            with lead.autocast():
                tokens, depth = lead.model.encode(rgb, K)
            for j, k in enumerate(chunk):
                enc = ContextEncoding(tokens=tokens[j].clone(), depth=depth[j].float().clone())
                wm, frame = todo[k]
                wm.memory.set_encoding(frame.id, enc)
                out[k] = enc
    return out


@torch.no_grad()
def render_views(views: Sequence[tuple[WorldModel, np.ndarray, PinholeCamera]]) -> tuple[np.ndarray, np.ndarray]:
    """One model call for views (world model, T_world_camera, camera) of one size, each from its
    own world model's memory; all share the first one's network. -> (NxHxWx3 uint8, NxHxW depth).

    Poses and cameras must already be validated (render_batch / render_many do it).
    """
    lead = views[0][0]
    k = lead.context_size
    rows: list[list[int]] = []
    for wm, T, cam in views:
        if len(wm.memory) == 0:
            raise EmptyWorldError("the world is empty: seed the world first (add_frame or a saved world)")
        ids = wm.memory.select_context(T, cam, k, generated_prior=GENERATED_PRIOR)
        if not ids:
            raise EmptyWorldError("context selection found no frame to render from")
        rows.append((ids * k)[:k])  # pad short lists by repetition
    pairs = [(wm, i) for (wm, _, _), row in zip(views, rows) for i in row]
    enc = encode_missing(lead, pairs)
    frames = [wm.memory.get(i) for wm, i in pairs]
    encs = [enc[(id(wm), i)] for wm, i in pairs]
    dev, B = lead.device, len(rows)

    def per_view(t: torch.Tensor) -> torch.Tensor:  # (B*k, ...) -> (B, k, ...)
        return t.reshape(B, k, *t.shape[1:])

    # Stacked in numpy and moved once (not frame by frame): this is per-view overhead.
    tokens = per_view(torch.stack([e.tokens for e in encs]).to(dev, lead.model.enc_in.weight.dtype))
    rgb = per_view(torch.from_numpy(np.stack([f.rgb for f in frames])).to(dev).permute(0, 3, 1, 2).float() / 255)
    # Stored depth where the frame has it (NaN = unknown pixel), the encoder's prediction elsewhere.
    pred = torch.stack([e.depth for e in encs]).to(dev, torch.float32)
    nan = np.full(pred.shape[1:], np.nan, np.float32)
    stored = torch.from_numpy(np.stack([nan if f.depth is None else f.depth for f in frames])).to(dev)
    depth = per_view(torch.where(torch.isfinite(stored), stored, pred))
    ctx_K = per_view(torch.from_numpy(np.stack([f.camera.K for f in frames])).to(dev, torch.float32))
    ctx_T = per_view(torch.from_numpy(np.stack([f.T_world_camera for f in frames])).to(dev, torch.float64))
    cams = [cam for _, _, cam in views]
    tgt_K = torch.from_numpy(np.stack([c.K for c in cams])).to(dev, torch.float32)
    tgt_T = torch.from_numpy(np.stack([T for _, T, _ in views])).to(dev, torch.float64)
    with lead.autocast():
        out = lead.model.render(tokens, rgb, depth, ctx_K, ctx_T, tgt_K, tgt_T, cams[0].height, cams[0].width)
    images = (out.rgb.float().clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
    return images, out.depth.float().cpu().numpy()
