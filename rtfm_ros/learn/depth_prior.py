"""The monocular depth prior: a small ViT over (RGB, camera ray directions) with a per-pixel depth head.

The renderer is geometric (rtfm_ros.render): a frame's depth comes from its own sensor or from
multi-view stereo over its posed neighbours. This network is the one learned part on the render
path: the depth of a frame that has no usable neighbour yet (a single photo), marked ``prior``
and replaced by stereo as soon as neighbours arrive (rtfm_ros.render.prepare).

Design: patches of (RGB, unit camera-local ray directions) go through ``layers`` pre-norm
transformer blocks; a linear head gives each patch's pixels a depth code in [-1.5, 1.5], mapped
log-uniformly onto [min_depth, max_depth] (metres of the training rooms). The ray directions make
the prediction aware of the field of view; any size whose sides are multiples of ``patch`` runs.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from rtfm_ros.learn.config import DepthPriorConfig
from rtfm_ros.render.rays import camera_directions, unit


def _no_autocast(like: torch.Tensor) -> torch.autocast:
    return torch.autocast(like.device.type, enabled=False)


def patchify(x: torch.Tensor, p: int) -> torch.Tensor:
    """BxCxHxW -> Bx(H/p*W/p)x(C*p*p)."""
    B, C, H, W = x.shape
    x = x.reshape(B, C, H // p, p, W // p, p).permute(0, 2, 4, 1, 3, 5)
    return x.reshape(B, (H // p) * (W // p), C * p * p)


def unpatchify(x: torch.Tensor, p: int, C: int, H: int, W: int) -> torch.Tensor:
    """Inverse of patchify."""
    B = x.shape[0]
    x = x.reshape(B, H // p, W // p, C, p, p).permute(0, 3, 1, 4, 2, 5)
    return x.reshape(B, C, H, W)


class Block(nn.Module):
    """Pre-norm transformer block: self-attention, then an MLP."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float) -> None:
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        B, N, D = x.shape
        return x.reshape(B, N, self.heads, D // self.heads).transpose(1, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = self.qkv(self.norm1(x)).chunk(3, dim=-1)
        att = F.scaled_dot_product_attention(self._heads(q), self._heads(k), self._heads(v))
        B, h, N, d = att.shape
        x = x + self.proj(att.transpose(1, 2).reshape(B, N, h * d))
        x = x + self.mlp(self.norm2(x))
        return x


class DepthPrior(nn.Module):
    """Per-pixel depth (metres) of one image from its pixels and its intrinsics (module docstring)."""

    def __init__(self, config: DepthPriorConfig) -> None:
        super().__init__()
        self.config = c = config
        pp = c.patch * c.patch
        self.enc_in = nn.Linear(6 * pp, c.dim)
        self.encoder = nn.ModuleList([Block(c.dim, c.heads, c.mlp_ratio) for _ in range(c.layers)])
        self.enc_norm = nn.LayerNorm(c.dim)
        self.depth_head = nn.Linear(c.dim, pp)
        self.apply(self._init)

    @staticmethod
    def _init(m: nn.Module) -> None:
        if isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)

    def depth_code(self, depth: torch.Tensor) -> torch.Tensor:
        """Depth (metres) -> the bounded code the head predicts (log-uniform, [-1, 1] over the range):
        the space the training loss compares depths in."""
        c = self.config
        d = depth.clamp(c.min_depth, c.max_depth)
        return torch.log(d / c.min_depth) / math.log(c.max_depth / c.min_depth) * 2 - 1

    def _decode_depth(self, x: torch.Tensor) -> torch.Tensor:
        c = self.config
        return c.min_depth * torch.exp((x.clamp(-1.5, 1.5) + 1) / 2 * math.log(c.max_depth / c.min_depth))

    def _check_size(self, H: int, W: int) -> None:
        p = self.config.patch
        if H % p or W % p:
            raise ValueError(f"image size {W}x{H} is not a multiple of the model's patch size {p}")

    def encode(self, rgb: torch.Tensor, K: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """rgb Bx3xHxW in [0,1], K Bx3x3 -> (patch features BxNxD, depth BxHxW metres)."""
        B, _, H, W = rgb.shape
        self._check_size(H, W)
        p = self.config.patch
        with _no_autocast(rgb):
            dirs = unit(camera_directions(K.float(), H, W))
        x = self.enc_in(patchify(torch.cat([rgb * 2 - 1, dirs], dim=1), p))
        for blk in self.encoder:
            x = blk(x)
        x = self.enc_norm(x)
        depth = self._decode_depth(unpatchify(self.depth_head(x).float(), p, 1, H, W)[:, 0])
        return x, depth

    def forward(self, rgb: torch.Tensor, K: torch.Tensor) -> torch.Tensor:
        """rgb Bx3xHxW in [0,1], K Bx3x3 -> depth BxHxW (metres)."""
        return self.encode(rgb, K)[1]
