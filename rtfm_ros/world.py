"""WorldModel: the one facade the node, bag replay, Gym envs and the demo use.

A world is a FrameMemory (posed frames, each at its own resolution up to the RenderConfig's
``max_frame_side``) rendered over a RenderCore that many worlds may share (rtfm_ros.render.cache).
Each frame gets a depth once, when it is stored (its own, multi-view stereo over its posed
neighbours, or the learned monocular depth prior: rtfm_ros.render.prepare); rendering a pose picks
context frames by juggling and warps them into the view (rtfm_ros.render.warp). By default the
view is remembered when it shows a place the memory does not hold yet.
"""

from __future__ import annotations

import logging
import time
import weakref
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal, overload

import numpy as np
import torch

from rtfm_ros.geometry import (
    GeometryError,
    PinholeCamera,
    check_pixel_budget,
    validate_pose,
    validate_poses,
)
from rtfm_ros.images import resize_depth, resize_image
from rtfm_ros.learn.depth_prior import DepthPrior
from rtfm_ros.memory import FrameMemory
from rtfm_ros.render import prepare as ctxprep
from rtfm_ros.render import stored_depth
from rtfm_ros.render.cache import DEFAULT_CACHE_BYTES, RenderCore
from rtfm_ros.render.config import RenderConfig
from rtfm_ros.render.fit_file import WorldFit, fit_path, load_fit
from rtfm_ros.render.views import EmptyWorldError, render_views

_log = logging.getLogger(__name__)




class WorldModel:
    """One world (a FrameMemory and how it is rendered) over a RenderCore it may share.

    ``core`` is a RenderCore (shared with other worlds) or a DepthPrior (which gets a core of its
    own); ``config`` says how this world renders (RenderConfig). The memory belongs to this world
    for its lifetime: a different memory is a different world (:meth:`with_memory`), so nothing
    swaps it from outside.
    """

    def __init__(self, core: RenderCore | DepthPrior, memory: FrameMemory | None = None, *,
                 config: RenderConfig | None = None, device: str | torch.device = "auto",
                 checkpoint_info: dict[str, Any] | None = None) -> None:
        if isinstance(core, DepthPrior):
            core = RenderCore(core, device=device, checkpoint_info=checkpoint_info)
        elif not isinstance(core, RenderCore):
            raise TypeError(f"core must be a RenderCore or DepthPrior, got {type(core).__name__}")
        if config is not None and not isinstance(config, RenderConfig):
            raise TypeError(f"config must be a RenderConfig, got {type(config).__name__}")
        self.core = core
        self.config = config if config is not None else RenderConfig()
        self._memory = memory if memory is not None else FrameMemory()
        self._key = core.new_world_key()
        weakref.finalize(self, core.cache.drop_world, self._key)  # its prepared frames go with it
        self.fit: WorldFit | None = None  # per-world fitted blend parameters (rtfm fit)
        self.last_render_seconds = 0.0
        self.remember_failures = 0  # views rendered and returned but not stored (memory write failed)

    @classmethod
    def load(cls, checkpoint: str | Path | None = None, *, world: str | Path | None = None,
             device: str | torch.device = "auto", ram_budget_bytes: int | None = None,
             fit: bool = True, config: RenderConfig | None = None) -> WorldModel:
        """The bundled default depth prior (or ``checkpoint``), with an empty memory or a saved world
        (and, with ``fit``, the world's fitted parameters when `rtfm fit` left them beside it).
        ``ram_budget_bytes`` bounds the memory's resident pixels and, apart from them, the
        core's prepared frames (each rebuilt on use when dropped)."""
        core = RenderCore.load(checkpoint, device=device,
                               cache_bytes=DEFAULT_CACHE_BYTES if ram_budget_bytes is None else ram_budget_bytes)
        memory = FrameMemory.open(world, ram_budget_bytes=ram_budget_bytes) if world is not None \
            else FrameMemory(ram_budget_bytes=ram_budget_bytes)
        wm = cls(core, memory, config=config)
        if world is not None and fit:
            wm.load_fit_beside(world)
        return wm

    def with_memory(self, memory: FrameMemory, *, fit: WorldFit | None = None) -> WorldModel:
        """A new world over ``memory`` that shares this one's core and settings (the fit is
        per world: give the new memory's own, e.g. from load_fit_beside on the result)."""
        wm = WorldModel(self.core, memory, config=self.config)
        if fit is not None and not 0 < fit.frames <= len(memory):  # as load_fit: the world may have grown
            raise ValueError(f"the fit is for {fit.frames} frames but the memory holds {len(memory)}")
        wm.fit = fit
        return wm

    @property
    def memory(self) -> FrameMemory:
        """This world's frames (read-only attribute: another memory is another world)."""
        return self._memory

    @property
    def device(self) -> torch.device:
        return self.core.device

    @property
    def checkpoint_info(self) -> dict[str, Any]:
        return self.core.checkpoint_info

    def load_fit_beside(self, world_path: str | Path) -> bool:
        """Use the fit `rtfm fit` left beside ``world_path`` (after the memory came from that
        file, e.g. as a working copy); no fit there clears any previous one."""
        p = fit_path(world_path)
        self.fit = load_fit(p, len(self.memory)) if p.exists() else None
        return self.fit is not None

    def load_fit(self, path: str | Path) -> None:
        """Use a world's fitted blend parameters (rtfm fit); a fit that does not match is refused."""
        self.fit = load_fit(path, len(self.memory))

    def memory_camera(self, camera: PinholeCamera) -> PinholeCamera:
        """The camera a view of ``camera`` is stored with: its own, long side capped at max_frame_side."""
        return ctxprep.target_camera_for_memory(camera, self.config.max_frame_side)

    def _to_memory(self, image: np.ndarray, camera: PinholeCamera,
                   depth: np.ndarray | None) -> tuple[np.ndarray, PinholeCamera, np.ndarray | None]:
        cam = self.memory_camera(camera)
        img = resize_image(image, cam.width, cam.height)
        d = None if depth is None else resize_depth(depth.astype(np.float32), cam.width, cam.height)
        return img, cam, d

    def check_camera(self, camera: PinholeCamera) -> None:
        """Any positive size renders; the pixel budget (geometry.check_pixel_budget) bounds it."""
        if not isinstance(camera, PinholeCamera):
            raise GeometryError(f"camera must be a PinholeCamera, got {type(camera).__name__}")

    def _store(self, image: np.ndarray, T_world_camera: np.ndarray, camera: PinholeCamera,
               depth: np.ndarray | None, stamp: float | None, source: str) -> int:
        """Check one posed frame, store it at the memory's size; its id. Depth is not estimated here."""
        image = np.asarray(image)
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"image must be HxWx3 uint8, got {image.dtype} {image.shape}")
        if image.shape[:2] != (camera.height, camera.width):
            raise ValueError(f"image is {image.shape[1]}x{image.shape[0]} but the camera is "
                             f"{camera.width}x{camera.height}")
        T = validate_pose(T_world_camera, "T_world_camera")
        if depth is not None and np.asarray(depth).shape != image.shape[:2]:
            raise ValueError(f"depth shape {np.asarray(depth).shape} does not match the image {image.shape[:2]}")
        img, cam, d = self._to_memory(image, camera, depth)
        fid = self.memory.add(img, T, cam, stamp=time.time() if stamp is None else stamp, source=source, depth=d)
        if source != "generated":  # neighbours whose depth was worse get another go on their next use
            for i in ctxprep.neighbours_to_refresh(self.memory, fid):
                if ctxprep.improvable(self.core.cache.get((self._key, i), touch=False)):
                    self.core.cache.drop((self._key, i))
        return fid

    def add_frame(self, image: np.ndarray, T_world_camera: np.ndarray, camera: PinholeCamera, *,
                  depth: np.ndarray | None = None, stamp: float | None = None, source: str = "seed",
                  defer_depth: bool = False) -> int:
        """Store a posed frame (HxWx3 uint8, optical-axes T_world_camera); returns its id.

        Its depth is estimated now, once; with ``defer_depth`` on first use (or by ``prepare``)
        instead, so a stream of seed frames (a bag) gets stereo with all its neighbours known,
        like add_frames, without holding the full-size images until the end."""
        fid = self._store(image, T_world_camera, camera, depth, stamp, source)
        if source != "generated" and not defer_depth:
            self.prepare(fid)
        return fid

    def add_frames(self, frames: Sequence[tuple[np.ndarray, np.ndarray, PinholeCamera]], *,
                   depths: Sequence[np.ndarray | None] | None = None, source: str = "seed",
                   progress: bool = False) -> list[int]:
        """Store many posed frames (image, T_world_camera, camera), then estimate their depth with
        all of them as neighbours (better than one at a time, when each only sees those before it)."""
        from tqdm import tqdm

        depths = list(depths) if depths is not None else [None] * len(frames)
        if len(depths) != len(frames):
            raise ValueError(f"{len(depths)} depth maps for {len(frames)} frames")
        ids = [self._store(image, T, cam, d, None, source) for (image, T, cam), d in zip(frames, depths)]
        for fid in tqdm(ids, desc="estimating depth", unit="frame", disable=not progress):
            self.prepare(fid)
        return ids

    def prepare(self, frame_id: int) -> ctxprep.PreparedFrame:
        """The frame's depth and pyramid (from the core's cache, or computed and cached now)."""
        prepared = self._prepared(int(frame_id))
        if prepared.pending_check:
            # Stereo is checked against the neighbours' own unchecked depth, so the order frames
            # are prepared in does not matter (render.consistency).
            others = [ctxprep.raw_posed_depth(self._prepared(j), self.memory.pose(j))
                      for j in prepared.neighbour_ids if j in self.memory]
            prepared = ctxprep.checked(prepared, self.memory.get(frame_id),
                                       [o for o in others if o is not None], complete=self.config.complete_depth)
            self.core.cache.put((self._key, int(frame_id)), prepared)
        return prepared

    def _prepared(self, frame_id: int) -> ctxprep.PreparedFrame:
        """The cached prepared frame, or one computed now (its stereo maybe still pending its check)."""
        key = (self._key, frame_id)
        prepared = self.core.cache.get(key)
        if prepared is None:
            cfg = self.config
            prepared = ctxprep.prepare(self.memory, frame_id, self.core.depth_prior, self.device,
                                       use_stereo=cfg.use_stereo, use_prior=cfg.use_prior, depth_range=cfg.depth_range,
                                       check_consistency=cfg.check_depth)
            self.core.cache.put(key, prepared)
        return prepared

    def depth_sources(self) -> dict[str, int]:
        """How many frames' depth comes from each source (sensor, stereo, prior), for reports."""
        out: dict[str, int] = {}
        for i in self.memory:
            src = self.prepare(i).source
            out[src] = out.get(src, 0) + 1
        return out

    def _cameras(self, camera: PinholeCamera | Sequence[PinholeCamera], n: int) -> list[PinholeCamera]:
        cams = [camera] * n if isinstance(camera, PinholeCamera) else list(camera)
        if len(cams) != n:
            raise ValueError(f"{len(cams)} cameras for {n} poses")
        for c in cams:
            self.check_camera(c)
        if len({(c.width, c.height) for c in cams}) > 1:
            raise ValueError("all views of one render_batch call must have the same resolution")
        return cams

    @overload
    def render_batch(self, T_stack: np.ndarray, camera: PinholeCamera | Sequence[PinholeCamera], *,
                     remember: bool = ..., return_depth: Literal[False] = ...,
                     context_camera: PinholeCamera | None = ...) -> np.ndarray: ...
    @overload
    def render_batch(self, T_stack: np.ndarray, camera: PinholeCamera | Sequence[PinholeCamera], *,
                     remember: bool = ..., return_depth: Literal[True],
                     context_camera: PinholeCamera | None = ...) -> tuple[np.ndarray, np.ndarray]: ...
    @overload
    def render_batch(self, T_stack: np.ndarray, camera: PinholeCamera | Sequence[PinholeCamera], *,
                     remember: bool = ..., return_depth: bool,
                     context_camera: PinholeCamera | None = ...) -> np.ndarray | tuple[np.ndarray, np.ndarray]: ...

    def render_batch(self, T_stack: np.ndarray, camera: PinholeCamera | Sequence[PinholeCamera], *,
                     remember: bool = True, return_depth: bool = False,
                     context_camera: PinholeCamera | None = None) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
        """Render N poses in one batched model call: Nx4x4 -> NxHxWx3 uint8 (and NxHxW depth).

        ``context_camera``: pick the context frames as for this camera instead of each view's own,
        e.g. the whole view when ``camera`` is one tile of it, so every tile blends the same frames
        (256-pixel tiles then match the whole view in all but ~5 % of pixels, by ~1/255 at seams)."""
        if len(self.memory) == 0:
            raise EmptyWorldError("the world is empty: seed the world first (add_frame or a saved world)")
        T_stack = np.asarray(T_stack, dtype=np.float64)
        if T_stack.ndim != 3 or T_stack.shape[1:] != (4, 4):
            raise ValueError(f"poses must be Nx4x4, got {T_stack.shape}")
        Ts = list(validate_poses(T_stack, "T_world_camera"))
        cams = self._cameras(camera, len(Ts)) if Ts else []
        check_pixel_budget(len(Ts), *((cams[0].width, cams[0].height) if cams else (0, 0)),
                           view_budget=self.config.max_view_pixels, call_budget=self.config.max_pixels_per_call)
        t0 = time.perf_counter()
        with torch.no_grad():
            if context_camera is not None:
                self.check_camera(context_camera)
            picks = None if context_camera is None else [context_camera] * len(Ts)
            images, depths = render_views([(self, T, c) for T, c in zip(Ts, cams)], context_cameras=picks)
        self.last_render_seconds = time.perf_counter() - t0
        if remember:
            for img, d, T, c in zip(images, depths, Ts, cams):
                self.remember_view(img, T, c, d)
        return (images, depths) if return_depth else images

    def view_depth(self, depth: np.ndarray, T_world_camera: np.ndarray, camera: PinholeCamera, *,
                   policy: str | None = None, tolerance: float | None = None) -> np.ndarray | None:
        """A rendered view's depth as the policy takes it (render.stored_depth: checked, rendered or
        none; by default the config's ``stored_depth`` and ``depth_tolerance``): what callers
        publish, and what a remembered view keeps."""
        policy = self.config.stored_depth if policy is None else policy
        tolerance = self.config.depth_tolerance if tolerance is None else tolerance
        return stored_depth.view_depth(policy, depth, T_world_camera, camera, self, tolerance)

    def remember_view(self, image: np.ndarray, T_world_camera: np.ndarray, camera: PinholeCamera,
                      depth: np.ndarray, *, policy: str | None = None, tolerance: float | None = None,
                      stamp: float | None = None, strict: bool = False) -> bool:
        """Store a rendered view (source "generated") when it shows a place the memory lacks, with
        its rendered ``depth`` as :meth:`view_depth` takes it; whether it was stored. A failed
        write (disk full, read-only file) is counted in ``remember_failures`` and logged, never
        losing the rendered view; ``strict`` raises it instead, for callers that count their own."""
        T = validate_pose(T_world_camera, "T_world_camera")
        # Judged at the memory's resolution, where the view would be stored.
        if not self.memory.should_remember(T, self.memory_camera(camera)):
            return False
        kept = self.view_depth(depth, T, camera, policy=policy, tolerance=tolerance)
        try:
            self._store(image, T, camera, kept, stamp, "generated")
        except Exception as exc:  # a failed store must not lose the rendered view (strict: the caller's)
            if strict:
                raise
            self.remember_failures += 1
            if self.remember_failures & (self.remember_failures - 1) == 0:  # 1st, 2nd, 4th, ...
                _log.warning("rendered view not remembered (%d so far): %s", self.remember_failures, exc)
            return False
        return True

    @overload
    def render(self, T_world_camera: np.ndarray, camera: PinholeCamera, *, remember: bool = ...,
               return_depth: Literal[False] = ..., context_camera: PinholeCamera | None = ...) -> np.ndarray: ...
    @overload
    def render(self, T_world_camera: np.ndarray, camera: PinholeCamera, *, remember: bool = ...,
               return_depth: Literal[True],
               context_camera: PinholeCamera | None = ...) -> tuple[np.ndarray, np.ndarray]: ...
    @overload
    def render(self, T_world_camera: np.ndarray, camera: PinholeCamera, *, remember: bool = ...,
               return_depth: bool,
               context_camera: PinholeCamera | None = ...) -> np.ndarray | tuple[np.ndarray, np.ndarray]: ...

    def render(self, T_world_camera: np.ndarray, camera: PinholeCamera, *, remember: bool = True,
               return_depth: bool = False,
               context_camera: PinholeCamera | None = None) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
        """Render one pose: HxWx3 uint8 (and HxW planar depth with return_depth, NaN where no
        frame saw the place); ``context_camera`` as in render_batch."""
        images, depths = self.render_batch(np.asarray(T_world_camera, dtype=np.float64)[None], camera,
                                           remember=remember, return_depth=True, context_camera=context_camera)
        return (images[0], depths[0]) if return_depth else images[0]

    def save(self, path: str | Path) -> Path:
        """Save the world (frames + poses) to a world file; the depth prior is not copied."""
        return self.memory.save(path, meta={"model": self.core.name})

    def reset(self) -> None:
        """Forget every frame (and the fit and prepared frames that belonged to them)."""
        self.memory.clear()
        self.core.cache.drop_world(self._key)
        self.fit = None


def render_worlds(views: Sequence[tuple[WorldModel, np.ndarray, PinholeCamera]]) -> tuple[np.ndarray, np.ndarray]:
    """One view per (world, T_world_camera, camera), each from its own world's memory, with the
    checks every render gets (pose and position bound, camera, one size, each world's pixel
    budget): N x H x W x 3 uint8 and N x H x W depth. Worlds on one render core go through it in
    one batched call; nothing is remembered (callers decide what to store)."""
    if not views:
        raise ValueError("no views to render")
    for wm, _, cam in views:
        if len(wm.memory) == 0:
            raise EmptyWorldError("the world is empty: seed the world first (add_frame or a saved world)")
        wm.check_camera(cam)
    poses = [np.asarray(T, dtype=np.float64) for _, T, _ in views]
    for T in poses:
        if T.shape != (4, 4):
            validate_pose(T, "T_world_camera")  # its error
    Ts = validate_poses(np.stack(poses), "T_world_camera")
    checked = [(wm, T, cam) for (wm, _, cam), T in zip(views, Ts)]
    if len({(c.width, c.height) for _, _, c in checked}) > 1:
        raise ValueError("all views of one call must have the same resolution")
    W, H = checked[0][2].width, checked[0][2].height
    cores: dict[int, list[int]] = {}
    for i, (wm, _, _) in enumerate(checked):
        cores.setdefault(id(wm.core), []).append(i)
    for idx in cores.values():
        cfg = checked[idx[0]][0].config
        check_pixel_budget(len(idx), W, H, view_budget=cfg.max_view_pixels, call_budget=cfg.max_pixels_per_call)
    images = np.empty((len(checked), H, W, 3), np.uint8)
    depths = np.empty((len(checked), H, W), np.float32)
    with torch.no_grad():
        for idx in cores.values():
            images[idx], depths[idx] = render_views([checked[i] for i in idx])
    return images, depths
