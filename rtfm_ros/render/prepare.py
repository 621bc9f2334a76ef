"""Memory frames made ready to render from: a depth map with its source, and an image pyramid.

Why a per-frame cache: a frame's depth is estimated once, when it is stored (multi-view stereo
over its posed neighbours costs far more than a render), and its pyramid lets every render
sample the level whose pixels match the target's (a 128-pixel view of a 640-pixel frame reads a
160-pixel level, not an aliased full-size one). Both are cached by the render core the world
renders on (rtfm_ros.render.cache: RAM only, rebuilt on use when dropped), never stored in the
world.

Depth sources, best first:
- ``sensor``: the frame came with depth (RGB-D, a simulator, a rendered view's own depth);
- ``stereo``: plane-sweep photo-consistency over up to MVS_SOURCES real neighbours (render.stereo),
  kept where a neighbour agrees (render.consistency) and its holes completed by planes fitted
  per superpixel where no neighbour sees through them (render.planar);
- ``prior``: the learned monocular depth prior (rtfm_ros.learn.depth_prior), for a frame with
  no usable neighbour (a single photo). Its scale is the training rooms', so it is marked and
  replaced by stereo as soon as neighbours arrive.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from rtfm_ros.geometry import PinholeCamera
from rtfm_ros.learn.depth_prior import DepthPrior
from rtfm_ros.memory import Frame, FrameMemory
from rtfm_ros.render import context, stereo
from rtfm_ros.render.consistency import PosedDepth, consistent_depth
from rtfm_ros.render.planar import completed_depth

MVS_SOURCES = 4            # neighbours a stereo depth is computed from
MAX_NEIGHBOUR_ANGLE = 60.0  # degrees between optical axes for a frame to count as a neighbour
MIN_LEVEL_SIDE = 8          # the pyramid stops before a side gets smaller than this
SENSOR_SHARE = 0.3          # a frame with at least this share of finite depth pixels uses them
EAGER_LEVELS = 2            # pyramid levels built with the frame; coarser ones on first use
_LEVELS_LOCK = threading.Lock()  # one for all frames: building a level on first use is rare


@dataclass
class PreparedFrame:
    """What a frame contributes to renders: its pyramid and where its depth came from."""

    rgb: list[torch.Tensor]    # per level built so far: 3 x h x w uint8 (ensure_level builds more)
    depth: list[torch.Tensor]  # per level built so far: h x w float32 planar z, NaN unknown
    K: list[np.ndarray]        # per level built so far: 3 x 3
    source: str                # "sensor" | "stereo" | "prior" | "flat" (learning off)
    neighbours: int = 0        # sources a stereo depth used
    neighbour_ids: tuple[int, ...] = ()  # the frames a stereo depth came from (its consistency check's too)
    raw_depth: torch.Tensor | None = None  # stereo before the consistency check (what neighbours check against)
    pending_check: bool = False  # stereo whose consistency check has not run yet (render.consistency)
    # Levels of the whole pyramid (0: those given). Most renders read one or two levels of a frame
    # (a view the size of the frames reads levels 0 and 1), so coarser ones are built on first use.
    levels: int = 0
    nbytes: int = field(init=False, default=0)  # of the whole pyramid, built or not: the cache's budget holds
    # Each level's K as a float32 tensor per device, made on first use: a frame serves as context
    # to many renders, and building two small tensors per context per render added up.
    _K_tensors: dict[tuple[str, int], torch.Tensor] = field(init=False, default_factory=dict, repr=False,
                                                            compare=False)

    def __post_init__(self) -> None:
        sizes = _level_sizes(*self.depth[0].shape)
        self.levels = self.levels or len(self.rgb)
        extra = 0 if self.raw_depth is None else self.raw_depth.numel() * self.raw_depth.element_size()
        self.nbytes = extra + sum((3 * self.rgb[0].element_size() + 4) * h * w for h, w in sizes[: self.levels])

    def ensure_level(self, level: int) -> None:
        """Build the pyramid down to ``level`` (the same values as building it all at once)."""
        if level < len(self.rgb):
            return
        with _LEVELS_LOCK:
            img = self.rgb[0].float()  # the frame's pixels are integers: level 0 before rounding
            for _ in range(1, len(self.rgb)):
                img = _pool_image(img)
            while len(self.rgb) <= min(level, self.levels - 1):
                img, d, K = _next_level(img, self.depth[-1], self.K[-1])
                self.rgb.append(img.round().to(torch.uint8))
                self.depth.append(d)
                self.K.append(K)

    def level_for(self, target_fx: float) -> int:
        """The coarsest level that still has at least the target's pixel density."""
        ratio = float(self.K[0][0, 0]) / max(target_fx, 1e-9)
        lvl = int(math.floor(math.log2(ratio))) if ratio >= 2 else 0
        return max(0, min(self.levels - 1, lvl))

    def K_tensor(self, level: int, device: torch.device) -> torch.Tensor:
        """Level ``level``'s K as float32 on ``device`` (shared: never write to it)."""
        key = (str(device), level)
        K = self._K_tensors.get(key)
        if K is None:
            K = self._K_tensors[key] = torch.from_numpy(self.K[level]).to(device).float()
        return K

    def context(self, level: int, T_world_camera: np.ndarray, target: int, rank: int, weight: float,
                device: torch.device, measured: bool = False) -> context.ContextLevel:
        coarse = min(level + 1, self.levels - 1)
        self.ensure_level(coarse)
        return context.ContextLevel(rgb=self.rgb[level].to(device),
                                depth=self.depth[level].to(device), K=self.K_tensor(level, device),
                                T_world_camera=torch.from_numpy(T_world_camera).to(device), target=target,
                                rank=rank, weight=weight, splat_depth=self.depth[coarse].to(device),
                                splat_K=self.K_tensor(coarse, device), measured=measured)


def _level_sizes(h: int, w: int) -> list[tuple[int, int]]:
    """Every pyramid level's (height, width): halved (rounded down) until a side would drop
    below MIN_LEVEL_SIDE."""
    sizes = [(h, w)]
    while min(h, w) >= 2 * MIN_LEVEL_SIDE:
        h, w = h // 2, w // 2
        sizes.append((h, w))
    return sizes


def _pool_image(img: torch.Tensor) -> torch.Tensor:
    return F.avg_pool2d(img[None], 2)[0]


def _next_level(img: torch.Tensor, d: torch.Tensor, K: np.ndarray) -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
    """The next level's float image, depth (mean inverse depth of the known pixels where at
    least 3 of 4 are known) and K."""
    img = _pool_image(img)
    inv = torch.where(d > 0, 1.0 / d, 0.0)  # NaN and -inf fail the test, 1 / inf is 0: only finite depth counts
    h, w = img.shape[-2:]
    pooled = F.avg_pool2d(torch.stack([(inv > 0).float(), inv])[:, : 2 * h, : 2 * w], 2)  # share, mean
    cnt = pooled[0]
    mean_inv = pooled[1] / cnt.clamp_min(1e-6)
    K = K.copy()
    K[:2] *= 0.5
    return img, torch.where(cnt > 0.5, 1.0 / mean_inv.clamp_min(1e-12), float("nan")), K


def _pyramid(rgb: np.ndarray, depth: np.ndarray, K: np.ndarray,
             levels: int | None = EAGER_LEVELS) -> tuple[list[torch.Tensor], list[torch.Tensor], list[np.ndarray], int]:
    """The first ``levels`` levels of the frame's pyramid (None: all), and how many it has."""
    img = torch.from_numpy(np.array(rgb)).permute(2, 0, 1).float()
    d = torch.from_numpy(np.array(depth, dtype=np.float32))
    rgbs, depths, Ks = [img.round().to(torch.uint8)], [d], [K.astype(np.float64)]
    total = len(_level_sizes(*d.shape))
    while len(rgbs) < min(total, levels or total):
        img, d, K = _next_level(img, d, Ks[-1])
        rgbs.append(img.round().to(torch.uint8))
        depths.append(d)
        Ks.append(K)
    return rgbs, depths, Ks, total


def stereo_neighbours(memory: FrameMemory, frame_id: int, k: int = MVS_SOURCES) -> list[int]:
    """Real frames (seeded or observed) that see roughly what ``frame_id`` sees from elsewhere."""
    T = memory.pose(frame_id)
    cand = [i for i in memory.nearest(T[:3, 3], 8 * k + 1) if i != frame_id]
    out = []
    cos_max = math.cos(math.radians(MAX_NEIGHBOUR_ANGLE))
    scored = []
    for i in cand:
        if memory.source(i) == "generated":
            continue
        Ti = memory.pose(i)
        base = float(np.linalg.norm(Ti[:3, 3] - T[:3, 3]))
        cosang = float(np.clip(Ti[:3, 2] @ T[:3, 2], -1, 1))
        if base < 1e-6 or cosang < cos_max:
            continue
        scored.append((base + math.acos(cosang), i))
    for _, i in sorted(scored)[:k]:
        out.append(i)
    return out


def prior_depth(prior: DepthPrior, frame: Frame, device: torch.device) -> np.ndarray:
    """The learned monocular depth prior's guess (training-room metres) at the frame's size."""
    s = prior.config.image_size
    rgb = torch.from_numpy(np.array(frame.rgb)).to(device).permute(2, 0, 1).float()[None] / 255
    small = F.interpolate(rgb, size=(s, s), mode="area")
    K = frame.camera.K.copy()
    K[0] *= s / frame.camera.width
    K[1] *= s / frame.camera.height
    with torch.no_grad():
        depth = prior(small, torch.from_numpy(K).to(device).float()[None])
    d = F.interpolate(depth.float()[:, None], size=frame.rgb.shape[:2], mode="bilinear", align_corners=False)
    return d[0, 0].cpu().numpy().astype(np.float32)


FLAT_DEPTH = 2.0  # the no-prior fallback for a frame alone in its world (scene units)


def flat_depth(memory: FrameMemory, frame: Frame) -> np.ndarray:
    """The no-learning fallback: a plane at the scene distance the cameras imply (FLAT_DEPTH alone)."""
    others = [memory.pose(i) for i in memory.nearest(frame.T_world_camera[:3, 3], 9) if i != frame.id]
    try:
        dist = stereo.scene_distance(frame.T_world_camera, others)
    except stereo.DepthEstimationError:
        dist = FLAT_DEPTH
    return np.full(frame.rgb.shape[:2], dist, np.float32)


def prepare(memory: FrameMemory, frame_id: int, prior: DepthPrior, device: torch.device,
            use_stereo: bool = True, use_prior: bool = True,
            depth_range: tuple[float, float] | None = None, check_consistency: bool = False) -> PreparedFrame:
    """Compute the frame's PreparedFrame now (callers cache it: WorldModel.prepare). With
    ``check_consistency``, stereo depth comes back pending its check against the neighbours'
    (``checked``), which needs their depth first."""
    frame = memory.get(frame_id)
    depth, source, nb = None, "sensor", []
    if frame.depth is not None and float(np.isfinite(frame.depth).mean()) >= SENSOR_SHARE:
        depth = frame.depth
    elif use_stereo:
        nb = stereo_neighbours(memory, frame_id)
        if nb:
            srcs = [memory.get(i) for i in nb]
            try:
                depth, _conf = stereo.estimate_depth(
                    stereo.PosedImage(frame.rgb, frame.camera.K, frame.T_world_camera),
                    [stereo.PosedImage(s.rgb, s.camera.K, s.T_world_camera) for s in srcs],
                    near=None if depth_range is None else depth_range[0],
                    far=None if depth_range is None else depth_range[1])
                source = "stereo"
            except stereo.DepthEstimationError:
                depth, nb = None, []
    if depth is None and use_prior:
        depth, source = prior_depth(prior, frame, device), "prior"
    elif depth is None:
        depth, source = flat_depth(memory, frame), "flat"
    rgbs, depths, Ks, levels = _pyramid(frame.rgb, depth, frame.camera.K)
    if source != "stereo":
        return PreparedFrame(rgbs, depths, Ks, source, levels=levels)
    return PreparedFrame(rgbs, depths, Ks, source, len(nb), tuple(nb), raw_depth=depths[0],
                         pending_check=check_consistency, levels=levels)


def raw_posed_depth(prepared: PreparedFrame, T_world_camera: np.ndarray) -> PosedDepth | None:
    """What a neighbour's consistency check compares against: stereo before its own check, or a
    sensor's depth; None for guesses (prior, flat), which confirm nothing."""
    if prepared.source == "stereo" and prepared.raw_depth is not None:
        return PosedDepth(prepared.raw_depth, prepared.K[0], T_world_camera)
    if prepared.source == "sensor":
        return PosedDepth(prepared.depth[0], prepared.K[0], T_world_camera)
    return None


def checked(prepared: PreparedFrame, frame: Frame, neighbours: Sequence[PosedDepth],
            complete: bool = True) -> PreparedFrame:
    """The frame with its stereo depth kept only where neighbours agree (render.consistency);
    with ``complete``, the holes that leaves are filled by planes fitted per superpixel where
    the depth around them is planar (render.planar)."""
    if prepared.raw_depth is None:
        raise ValueError("only stereo depth has a consistency check")
    depth = consistent_depth(PosedDepth(prepared.raw_depth, prepared.K[0], frame.T_world_camera),
                             neighbours).numpy()
    if complete and neighbours:
        depth = completed_depth(np.asarray(frame.rgb), depth, prepared.K[0], frame.T_world_camera, neighbours)
    rgbs, depths, Ks, levels = _pyramid(frame.rgb, depth, frame.camera.K)
    return PreparedFrame(rgbs, depths, Ks, "stereo", prepared.neighbours, prepared.neighbour_ids,
                         raw_depth=prepared.raw_depth, levels=levels)


def improvable(prepared: PreparedFrame | None) -> bool:
    """Whether a new real neighbour may give this frame better depth: it came from the prior or
    from fewer stereo sources than MVS_SOURCES (a sensor's depth is kept)."""
    return prepared is not None and prepared.source != "sensor" and prepared.neighbours < MVS_SOURCES


def neighbours_to_refresh(memory: FrameMemory, frame_id: int) -> list[int]:
    """Frames whose depth a new real frame ``frame_id`` may improve (candidates for improvable)."""
    return stereo_neighbours(memory, frame_id, k=2 * MVS_SOURCES)


def target_camera_for_memory(camera: PinholeCamera, max_side: int) -> PinholeCamera:
    """The camera a frame is stored with: its own, or scaled so the long side is ``max_side``."""
    long_side = max(camera.width, camera.height)
    if long_side <= max_side:
        return camera
    s = max_side / long_side
    return camera.scaled(max(1, round(camera.width * s)), max(1, round(camera.height * s)))
