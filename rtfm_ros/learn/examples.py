"""Training examples: a target view plus a context set, chosen the way inference chooses it.

The context comes from the same juggling policy the world model uses at render time
(memory.juggling.select_context), plus random extras, so the model trains on the context it
will see. Cases are mixed: interpolation (context on both sides of the target), extrapolation
(context on one side only) and identity (the target itself is in the context: an exact copy
is expected, which is what keeps revisits consistent).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from rtfm_ros.data.clips import Clip
from rtfm_ros.geometry import PinholeCamera
from rtfm_ros.memory.juggling import select_context

CASES = ("interpolation", "extrapolation", "identity")
# One training example: arrays, and numpy scalars for tgt_has_depth and case (stacked by collate).
Example = dict[str, np.ndarray | np.generic]


@dataclass(frozen=True)
class ExampleConfig:
    context: int = 4
    case_weights: tuple[float, float, float] = (0.6, 0.25, 0.15)
    max_gap: int = 4             # frames next to the target that are hidden (1..max_gap)
    extra_probability: float = 0.25  # chance to swap the last pick for a random frame
    depth_known_probability: float = 0.75  # else the model's own predicted depth is used
    photometric: float = 0.0     # chance each context frame gets a random exposure / white balance / noise / blur


def photometric(rgb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A context frame as another camera might have taken it: exposure (x0.7-1.3), gamma
    (0.8-1.25), white balance (+-10 % a channel), sensor noise (sigma <= 2 % of full scale) and,
    a third of the time, a 3x3 blur. Why: real photos differ in all of these between shots, and
    a depth prior that keys on the procedural renderer's exact colours would not transfer."""
    x = (rgb.astype(np.float32) / 255.0) ** rng.uniform(0.8, 1.25)
    x = x * rng.uniform(0.7, 1.3) * rng.uniform(0.9, 1.1, 3).astype(np.float32)
    if rng.random() < 1 / 3:
        p = np.pad(x, ((1, 1), (1, 1), (0, 0)), mode="edge")
        x = sum((p[i: i + x.shape[0], j: j + x.shape[1]] for i in range(3) for j in range(3)), np.zeros_like(x)) / 9.0
    x = x + rng.normal(0.0, rng.uniform(0.0, 0.02), x.shape).astype(np.float32)
    return (np.clip(x, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def _cameras(clip: Clip, idx: np.ndarray) -> list[PinholeCamera]:
    H, W = clip.rgb.shape[1:3]
    return [PinholeCamera(W, H, k[0, 0], k[1, 1], k[0, 2], k[1, 2]) for k in clip.K[idx]]


def sample_example(clip: Clip, rng: np.random.Generator, cfg: ExampleConfig) -> Example:
    """One example from one clip: arrays ready to stack into a batch."""
    n = len(clip.rgb)
    if n < 2:
        raise ValueError("a clip needs at least 2 frames to make training examples")
    case = CASES[rng.choice(3, p=np.asarray(cfg.case_weights) / sum(cfg.case_weights))]
    t = int(rng.integers(n))
    gap = int(rng.integers(1, cfg.max_gap + 1))
    idx = np.arange(n)
    if case == "extrapolation":
        sides = [s for s in (idx[idx <= t - gap], idx[idx >= t + gap]) if len(s)]
        pool = sides[int(rng.integers(len(sides)))] if sides else idx[idx != t]
    else:
        pool = idx[np.abs(idx - t) >= gap]
    if len(pool) == 0:
        pool = idx[idx != t]
    target_cam = _cameras(clip, np.array([t]))[0]
    picks = [int(pool[i]) for i in select_context(clip.T_world_camera[t], target_cam, clip.T_world_camera[pool],
                                                   _cameras(clip, pool), cfg.context)]
    if picks and rng.random() < cfg.extra_probability:
        picks[-1] = int(rng.choice(pool))
    if case == "identity":
        picks = ([t] + picks)[: cfg.context]
    while len(picks) < cfg.context:  # short clips: repeat frames (the model handles duplicates)
        picks.append(picks[len(picks) % max(1, len(picks))] if picks else t)
    ctx = np.asarray(picks)  # best first, as juggling ranks them at inference
    has_depth = clip.depth is not None
    known = (rng.random(cfg.context) < cfg.depth_known_probability) & has_depth
    if case == "identity":
        known[:] = has_depth  # an exact copy needs the frame's own depth
    H, W = clip.rgb.shape[1:3]
    depth = clip.depth if clip.depth is not None else np.zeros((n, H, W), np.float32)
    ctx_rgb = clip.rgb[ctx]
    if cfg.photometric > 0:
        ctx_rgb = np.stack([photometric(f, rng) if rng.random() < cfg.photometric else f for f in ctx_rgb])
    return {
        "ctx_rgb": ctx_rgb, "ctx_depth": depth[ctx], "ctx_K": clip.K[ctx], "ctx_T": clip.T_world_camera[ctx],
        "depth_known": known, "tgt_rgb": clip.rgb[t], "tgt_depth": depth[t], "tgt_has_depth": np.bool_(has_depth),
        "tgt_K": clip.K[t], "tgt_T": clip.T_world_camera[t], "case": np.int64(CASES.index(case)),
    }


class ClipExamples(torch.utils.data.Dataset):
    """Map-style Dataset: item i is a deterministic example (seeded by (seed, i))."""

    def __init__(self, clips: list[Clip], cfg: ExampleConfig, seed: int = 0, length: int = 10**9) -> None:
        if not clips:
            raise ValueError("no clips to sample training examples from")
        self.clips, self.cfg, self.seed, self.length = clips, cfg, seed, length

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i: int) -> Example:
        rng = np.random.default_rng([self.seed, i])
        return sample_example(self.clips[int(rng.integers(len(self.clips)))], rng, self.cfg)


def collate(examples: list[Example]) -> dict[str, torch.Tensor]:
    """Stack examples into model-ready tensors (images as float in [0, 1], channels first)."""
    out: dict[str, torch.Tensor] = {}
    for key in examples[0]:
        arr = np.stack([e[key] for e in examples])
        t = torch.from_numpy(arr)
        if key.endswith("rgb"):
            t = t.float().div_(255.0).movedim(-1, -3)
        elif t.dtype == torch.float64:
            t = t.float()
        out[key] = t
    return out
