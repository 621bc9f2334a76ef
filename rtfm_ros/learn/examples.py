"""Training examples for the depth prior: one posed frame with its depth, drawn from the clips.

Item i is deterministic (seeded by (seed, i)): a clip, a frame of it, and (with probability
``photometric``) a random change of exposure, white balance, noise and blur, so the prior does
not key on the procedural renderer's exact colours. Only clips with depth teach depth.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from rtfm_ros.data.clips import Clip

# One training example: the frame (HxWx3 uint8), its intrinsics (3x3) and its depth (HxW metres).
Example = dict[str, np.ndarray]


@dataclass(frozen=True)
class ExampleConfig:
    photometric: float = 0.0     # chance a frame gets a random exposure / white balance / noise / blur

    def __post_init__(self) -> None:
        if not 0.0 <= self.photometric <= 1.0:
            raise ValueError(f"photometric must be in [0, 1], got {self.photometric}")


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


def sample_example(clip: Clip, rng: np.random.Generator, cfg: ExampleConfig) -> Example:
    """One frame of one clip with its depth, ready to stack into a batch."""
    if clip.depth is None:
        raise ValueError("a clip without depth cannot teach depth")
    i = int(rng.integers(len(clip.rgb)))
    rgb = clip.rgb[i]
    if cfg.photometric > 0 and rng.random() < cfg.photometric:
        rgb = photometric(rgb, rng)
    return {"rgb": np.asarray(rgb), "K": np.asarray(clip.K[i]), "depth": np.asarray(clip.depth[i], np.float32)}


class FrameExamples(torch.utils.data.Dataset[Example]):
    """Map-style Dataset over the clips that have depth: item i is a deterministic example."""

    def __init__(self, clips: list[Clip], cfg: ExampleConfig, seed: int = 0, length: int = 10**9) -> None:
        self.clips = [c for c in clips if c.depth is not None]
        if not self.clips:
            raise ValueError("no clips with depth to sample training examples from")
        self.cfg, self.seed, self.length = cfg, seed, length

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i: int) -> Example:
        rng = np.random.default_rng([self.seed, i])
        return sample_example(self.clips[int(rng.integers(len(self.clips)))], rng, self.cfg)


def collate(examples: list[Example]) -> dict[str, torch.Tensor]:
    """Stack examples into model-ready tensors: rgb Bx3xHxW float in [0, 1], K Bx3x3, depth BxHxW."""
    rgb = torch.from_numpy(np.stack([e["rgb"] for e in examples])).float().div_(255.0).movedim(-1, -3)
    K = torch.from_numpy(np.stack([e["K"] for e in examples])).float()
    depth = torch.from_numpy(np.stack([e["depth"] for e in examples])).float()
    return {"rgb": rgb, "K": K, "depth": depth}
