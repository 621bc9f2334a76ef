"""The learned renderer: a pose-conditioned transformer over posed context frames.

Design (measured choices are recorded in the model card and BENCHMARKS.md):
- Each memory frame is encoded once: patches of (RGB, camera-local ray directions) go through
  a small ViT. The encoding depends on the frame alone, never on the target pose, so it is
  cached with the frame and a new view costs only the target's pass.
- Geometry enters twice, both relative to the target camera (well conditioned however large the
  world): (1) each context token gets a cheap additive encoding of its pixels' Plücker rays
  expressed in the target camera's frame; (2) the context frames are forward-splatted into the
  target view with their depth (stored, or predicted by the encoder's depth head for frames
  without depth); the splat, its holes filled from their neighbours, with its coverage mask
  and depth, is part of the target tokens.
- Target tokens attend to themselves and to all context tokens; the head predicts a colour
  correction on top of the splat (so an identical pose gives an exact copy) plus depth.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from rtfm_ros.learn.config import ModelConfig
from rtfm_ros.render.rays import camera_directions, fill_holes, plucker_rays, splat, unit

# A later-ranked context frame must be >10% closer (per rank) to hide a better-ranked one.
RANK_MARGIN = 0.1


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
    """Pre-norm transformer block; cross-attention to a memory when one is given."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float, cross: bool) -> None:
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.cross = cross
        if cross:
            self.norm_q = nn.LayerNorm(dim)
            self.norm_kv = nn.LayerNorm(dim)
            self.q = nn.Linear(dim, dim)
            self.kv = nn.Linear(dim, 2 * dim)
            self.cproj = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        B, N, D = x.shape
        return x.reshape(B, N, self.heads, D // self.heads).transpose(1, 2)

    def _merge(self, x: torch.Tensor) -> torch.Tensor:
        B, h, N, d = x.shape
        return x.transpose(1, 2).reshape(B, N, h * d)

    def forward(self, x: torch.Tensor, memory: torch.Tensor | None = None) -> torch.Tensor:
        q, k, v = self.qkv(self.norm1(x)).chunk(3, dim=-1)
        x = x + self.proj(self._merge(F.scaled_dot_product_attention(self._heads(q), self._heads(k), self._heads(v))))
        if self.cross and memory is not None:
            q = self._heads(self.q(self.norm_q(x)))
            k, v = self.kv(self.norm_kv(memory)).chunk(2, dim=-1)
            x = x + self.cproj(self._merge(F.scaled_dot_product_attention(q, self._heads(k), self._heads(v))))
        x = x + self.mlp(self.norm2(x))
        return x


@dataclass
class RenderOutput:
    rgb: torch.Tensor      # B x 3 x H x W in [0, 1] (unclamped during training)
    depth: torch.Tensor    # B x H x W metres


class FrameRenderer(nn.Module):
    """Renders target views from posed context frames (see the module docstring)."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = c = config
        pp = c.patch * c.patch
        self.enc_in = nn.Linear(6 * pp, c.dim)
        self.encoder = nn.ModuleList([Block(c.dim, c.heads, c.mlp_ratio, cross=False) for _ in range(c.enc_layers)])
        self.enc_norm = nn.LayerNorm(c.dim)
        self.depth_head = nn.Linear(c.dim, pp)
        self.rel_rays = nn.Linear(6 * pp, c.dim)
        self.tgt_in = nn.Linear(8 * pp, c.dim)
        self.decoder = nn.ModuleList([Block(c.dim, c.heads, c.mlp_ratio, cross=True) for _ in range(c.dec_layers)])
        self.dec_norm = nn.LayerNorm(c.dim)
        self.head = nn.Linear(c.dim, 4 * pp)
        self.apply(self._init)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    @staticmethod
    def _init(m: nn.Module) -> None:
        if isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)

    # depth <-> a bounded, roughly unit-scaled value
    def _encode_depth(self, depth: torch.Tensor) -> torch.Tensor:
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
        """Context encoding of frames: rgb Bx3xHxW in [0,1], K Bx3x3 -> (tokens BxNxD, depth BxHxW).

        Depends only on the frame, so callers cache it with the frame.
        """
        B, _, H, W = rgb.shape
        self._check_size(H, W)
        p = self.config.patch
        with _no_autocast(rgb):
            dirs = camera_directions(K.float(), H, W)
            dirs = unit(dirs)
        x = self.enc_in(patchify(torch.cat([rgb * 2 - 1, dirs], dim=1), p))
        for blk in self.encoder:
            x = blk(x)
        x = self.enc_norm(x)
        depth = self._decode_depth(unpatchify(self.depth_head(x).float(), p, 1, H, W)[:, 0])
        return x, depth

    def render(self, ctx_tokens: torch.Tensor, ctx_rgb: torch.Tensor, ctx_depth: torch.Tensor,
               ctx_K: torch.Tensor, ctx_T: torch.Tensor, tgt_K: torch.Tensor, tgt_T: torch.Tensor,
               height: int, width: int) -> RenderOutput:
        """Render B targets from N cached context frames each.

        ctx_tokens BxNxTxD, ctx_rgb BxNx3xHcxWc, ctx_depth BxNxHcxWc (metres), ctx_K BxNx3x3,
        ctx_T BxNx4x4 (T_world_camera), tgt_K Bx3x3, tgt_T Bx4x4.
        """
        self._check_size(height, width)
        c, p = self.config, self.config.patch
        B, N, _, Hc, Wc = ctx_rgb.shape
        with _no_autocast(ctx_rgb):  # geometry in fp32 even under bf16 autocast
            # Poses relative to the target camera: the frame everything below is expressed in.
            T_rel = (torch.linalg.inv(tgt_T.double())[:, None] @ ctx_T.double()).float()  # T_target_context
            eye = torch.eye(4, device=ctx_rgb.device).expand(B, 4, 4)
            rays = plucker_rays(T_rel.reshape(B * N, 4, 4), ctx_K.reshape(B * N, 3, 3).float(), Hc, Wc)
            # Forward-splat the context into the target view (target pose = identity here).
            # Context comes best first (juggling order): better-ranked frames keep their pixels.
            s_rgb, s_depth, s_mask = splat(ctx_rgb.float(), ctx_depth.float(), ctx_K.float(), T_rel,
                                           tgt_K.float(), eye, height, width, rank_margin=RANK_MARGIN)
            # Holes filled from their neighbours: the model starts from a complete reprojection.
            base = fill_holes(s_rgb, s_mask)
            dirs = camera_directions(tgt_K.float(), height, width)
            dirs = unit(dirs)
            s_d = torch.where(s_mask[:, 0] > 0, self._encode_depth(s_depth.clamp_min(c.min_depth)),
                              torch.zeros_like(s_depth))
        ctx = ctx_tokens + self.rel_rays(patchify(rays, p)).reshape(B, N, -1, c.dim).to(ctx_tokens.dtype)
        ctx = ctx.reshape(B, -1, c.dim)
        x = torch.cat([dirs, base * 2 - 1, s_mask, s_d[:, None]], dim=1)
        x = self.tgt_in(patchify(x, p))
        for blk in self.decoder:
            x = blk(x, ctx)
        out = unpatchify(self.head(self.dec_norm(x)).float(), p, 4, height, width)
        rgb = base + out[:, :3]
        depth_code = torch.where(s_mask[:, 0] > 0, s_d, torch.zeros_like(s_d)) + out[:, 3]
        return RenderOutput(rgb=rgb, depth=self._decode_depth(depth_code))

    def forward(self, ctx_rgb: torch.Tensor, ctx_depth: torch.Tensor | None, ctx_K: torch.Tensor, ctx_T: torch.Tensor,
                tgt_K: torch.Tensor, tgt_T: torch.Tensor, height: int, width: int,
                depth_known: torch.Tensor | None = None) -> tuple[RenderOutput, torch.Tensor]:
        """Encode the context and render (training path). Returns (output, predicted context depth).

        depth_known (BxN bool): where False (or ctx_depth is None) the encoder's predicted depth
        is splatted instead of the given one, as for photos without depth at inference.
        """
        B, N, _, Hc, Wc = ctx_rgb.shape
        tokens, pred_depth = self.encode(ctx_rgb.reshape(B * N, 3, Hc, Wc), ctx_K.reshape(B * N, 3, 3))
        tokens = tokens.reshape(B, N, *tokens.shape[1:])
        pred_depth = pred_depth.reshape(B, N, Hc, Wc)
        use = pred_depth.detach()
        if ctx_depth is not None:
            known = torch.ones(B, N, dtype=torch.bool, device=ctx_rgb.device) if depth_known is None else depth_known
            use = torch.where(known[:, :, None, None], ctx_depth, use)
        return self.render(tokens, ctx_rgb, use, ctx_K, ctx_T, tgt_K, tgt_T, height, width), pred_depth
