"""Memory frames made ready to render from: a depth map with its source, and an image pyramid.

Why a per-frame cache: a frame's depth is estimated once, when it is stored (multi-view stereo
over its posed neighbours costs far more than a render), and its pyramid lets every render
sample the level whose pixels match the target's (a 128-pixel view of a 640-pixel frame reads a
160-pixel level, not an aliased full-size one). Both are cached by the render core the world
renders on (rtfm_ros.render.cache: RAM only, rebuilt on use when dropped), never stored in the
world.

Depth sources, best first:
- ``sensor``: the frame came with depth (RGB-D, a simulator, a rendered view's own depth);
- ``stereo``: plane-sweep photo-consistency over up to MVS_SOURCES real neighbours (render.stereo);
- ``prior``: the learned monocular depth prior (rtfm_ros.learn.depth_prior), for a frame with
  no usable neighbour (a single photo). Its scale is the training rooms', so it is marked and
  replaced by stereo as soon as neighbours arrive.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from rtfm_ros.geometry import PinholeCamera
from rtfm_ros.learn.depth_prior import DepthPrior
from rtfm_ros.memory import Frame, FrameMemory
from rtfm_ros.render import stereo, warp
from rtfm_ros.render.consistency import PosedDepth, consistent_depth

MVS_SOURCES = 4            # neighbours a stereo depth is computed from
MAX_NEIGHBOUR_ANGLE = 60.0  # degrees between optical axes for a frame to count as a neighbour
MIN_LEVEL_SIDE = 8          # the pyramid stops before a side gets smaller than this
SENSOR_SHARE = 0.3          # a frame with at least this share of finite depth pixels uses them


@dataclass
class PreparedFrame:
    """What a frame contributes to renders: its pyramid and where its depth came from."""

    rgb: list[torch.Tensor]    # per level: 3 x h x w uint8
    depth: list[torch.Tensor]  # per level: h x w float32 planar z, NaN unknown
    K: list[np.ndarray]        # per level: 3 x 3
    source: str                # "sensor" | "stereo" | "prior" | "flat" (learning off)
    neighbours: int = 0        # sources a stereo depth used
    neighbour_ids: tuple[int, ...] = ()  # the frames a stereo depth came from (its consistency check's too)
    raw_depth: torch.Tensor | None = None  # stereo before the consistency check (what neighbours check against)
    pending_check: bool = False  # stereo whose consistency check has not run yet (render.consistency)
    nbytes: int = field(init=False, default=0)

    def __post_init__(self) -> None:
        extra = [] if self.raw_depth is None else [self.raw_depth]
        self.nbytes = sum(t.numel() * t.element_size() for t in self.rgb + self.depth + extra)

    def level_for(self, target_fx: float) -> int:
        """The coarsest level that still has at least the target's pixel density."""
        ratio = float(self.K[0][0, 0]) / max(target_fx, 1e-9)
        lvl = int(math.floor(math.log2(ratio))) if ratio >= 2 else 0
        return max(0, min(len(self.rgb) - 1, lvl))

    def context(self, level: int, T_world_camera: np.ndarray, target: int, rank: int, weight: float,
                device: torch.device) -> warp.ContextLevel:
        coarse = min(level + 1, len(self.rgb) - 1)
        return warp.ContextLevel(rgb=self.rgb[level].to(device, torch.float32).mul_(1.0 / 255.0),
                                depth=self.depth[level].to(device),
                                K=torch.from_numpy(self.K[level]).to(device).float(),
                                T_world_camera=torch.from_numpy(T_world_camera).to(device), target=target,
                                rank=rank, weight=weight, splat_depth=self.depth[coarse].to(device),
                                splat_K=torch.from_numpy(self.K[coarse]).to(device).float())


def _pyramid(rgb: np.ndarray, depth: np.ndarray,
             K: np.ndarray) -> tuple[list[torch.Tensor], list[torch.Tensor], list[np.ndarray]]:
    img = torch.from_numpy(np.array(rgb)).permute(2, 0, 1).float()
    d = torch.from_numpy(np.array(depth, dtype=np.float32))
    rgbs, depths, Ks = [img.round().to(torch.uint8)], [d], [K.astype(np.float64)]
    while min(img.shape[-2:]) >= 2 * MIN_LEVEL_SIDE:
        img = F.avg_pool2d(img[None], 2)[0]
        inv = torch.where(torch.isfinite(d) & (d > 0), 1.0 / d, torch.zeros_like(d))
        h, w = img.shape[-2:]
        inv = inv[: 2 * h, : 2 * w]
        cnt = F.avg_pool2d((inv > 0).float()[None, None], 2)[0, 0]
        mean_inv = F.avg_pool2d(inv[None, None], 2)[0, 0] / cnt.clamp_min(1e-6)
        d = torch.where(cnt > 0.5, 1.0 / mean_inv.clamp_min(1e-12), torch.full_like(mean_inv, float("nan")))
        K = Ks[-1].copy()
        K[:2] *= 0.5
        rgbs.append(img.round().to(torch.uint8))
        depths.append(d)
        Ks.append(K)
    return rgbs, depths, Ks


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
    rgbs, depths, Ks = _pyramid(frame.rgb, depth, frame.camera.K)
    if source != "stereo":
        return PreparedFrame(rgbs, depths, Ks, source)
    return PreparedFrame(rgbs, depths, Ks, source, len(nb), tuple(nb), raw_depth=depths[0],
                         pending_check=check_consistency)


def raw_posed_depth(prepared: PreparedFrame, T_world_camera: np.ndarray) -> PosedDepth | None:
    """What a neighbour's consistency check compares against: stereo before its own check, or a
    sensor's depth; None for guesses (prior, flat), which confirm nothing."""
    if prepared.source == "stereo" and prepared.raw_depth is not None:
        return PosedDepth(prepared.raw_depth, prepared.K[0], T_world_camera)
    if prepared.source == "sensor":
        return PosedDepth(prepared.depth[0], prepared.K[0], T_world_camera)
    return None


def checked(prepared: PreparedFrame, frame: Frame, neighbours: Sequence[PosedDepth]) -> PreparedFrame:
    """The frame with its stereo depth kept only where neighbours agree (render.consistency)."""
    if prepared.raw_depth is None:
        raise ValueError("only stereo depth has a consistency check")
    depth = consistent_depth(PosedDepth(prepared.raw_depth, prepared.K[0], frame.T_world_camera), neighbours)
    rgbs, depths, Ks = _pyramid(frame.rgb, depth.numpy(), frame.camera.K)
    return PreparedFrame(rgbs, depths, Ks, "stereo", prepared.neighbours, prepared.neighbour_ids,
                         raw_depth=prepared.raw_depth)


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
