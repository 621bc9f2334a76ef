"""The learned renderer: context frames warped into the view -> the finished image.

Why this shape (after Deep Blending and Free View Synthesis): geometry does what it does well,
putting each context frame's pixels where they land in the target; what it does badly is
deciding, per pixel, which of several imperfect warps to trust where depth is wrong, missing or
occluded, and it leaves seams, fragments and smears. A small U-Net sees all of it at once:

- the best-ranked SLOTS context frames warped one by one with a *completed* target depth (holes
  in it filled from around them, so every pixel gets candidates), each with its blend weight and
  whether its own depth confirms the point (render.warp.Rendered.slots);
- the best-ranked context warped with two coherent depths (smoothed, and one plane: see
  render.warp), whole where stereo is broken, and whether each lands inside that frame;
- the geometric render itself (the hand-designed blend + push-pull fill), where it saw the
  place, and where the target had depth, and the target's log depth relative to its median.

It outputs per-pixel weights over these CANDIDATES (a softmax, so colours come from real
pixels) plus a small colour correction. Its last layer starts at zero
with the geometric render's weight high, so an untrained network renders what the pipeline
renders; training only moves it where that helps. It is trained at half the view's resolution
and renders at a quarter (RENDER_SCALE): its per-pixel weights are upsampled and applied to the
full-resolution warps, so detail comes from the frames, and what it decides (which warp to trust
where) varies slowly across the image. The quarter grid scores the same as the half one on the
procedural suite at 64x64 and 128x128 and on the held-out photos at width 320 (BENCHMARKS.md)
at a third of the network's cost. Any view size works (padded inside); bf16 where the CPU has it.
"""

from __future__ import annotations

import json
import threading
import weakref
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from rtfm_ros.render import kernels, warp
from rtfm_ros.render.warp import COHERENT

SLOTS = 4
SLOT_PLANES = 5                              # colour 3, weight share 1, confirmed 1
COHERENT_PLANES = 4                          # colour 3, inside 1 (warp.COHERENT of them)
CANDIDATES = SLOTS + COHERENT + 1            # ... and the geometric render
GEOMETRIC_AT = SLOTS * SLOT_PLANES + COHERENT * COHERENT_PLANES  # the geometric colour's first plane
IN_CHANNELS = GEOMETRIC_AT + 6               # + geometric colour 3, seen 1, has depth 1, log depth 1
FORMAT = "rtfm_ros.learned_renderer/2"       # /1: without the coherent candidates
LOG_DEPTH_CLAMP = 3.0
RENDERER_FILE = "renderer.safetensors"     # beside the depth prior in a checkpoint folder
TRAIN_SCALE = 2                              # the network's grid while training: half the view's resolution
RENDER_SCALE = 4                             # ... and while rendering: a quarter


@dataclass(frozen=True)
class LearnedRendererConfig:
    widths: tuple[int, ...] = (16, 32, 48, 64)   # channels per U-Net level (1/2, 1/4, 1/8, 1/16 resolution)

    def __post_init__(self) -> None:
        if not self.widths or any(not isinstance(w, int) or isinstance(w, bool) or not 1 <= w <= 1024
                                  for w in self.widths):
            raise ValueError(f"learned renderer widths must be integers in 1..1024, got {self.widths!r}")

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> LearnedRendererConfig:
        data = json.loads(text)
        if not isinstance(data, dict) or set(data) != {"widths"} or not isinstance(data["widths"], list):
            raise ValueError(f"not a learned renderer config: {text[:200]!r}")
        return cls(widths=tuple(data["widths"]))


def _block(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1), nn.GELU(),
                         nn.Conv2d(c_out, c_out, 3, padding=1), nn.GELU())


class LearnedRenderer(nn.Module):
    """planes (B x IN_CHANNELS x H x W) -> colour (B x 3 x H x W, [0, 1] up to the correction)."""

    def __init__(self, config: LearnedRendererConfig | None = None) -> None:
        super().__init__()
        self.config = config or LearnedRendererConfig()
        ch = self.config.widths
        self.down = nn.ModuleList(_block(c_in, c) for c_in, c in zip((IN_CHANNELS, *ch[:-1]), ch))
        self.up = nn.ModuleList(_block(a + b, a) for a, b in zip(reversed(ch[:-1]), reversed(ch[1:])))
        self.head = nn.Conv2d(ch[0], CANDIDATES + 3, 3, padding=1)
        bias = torch.zeros(CANDIDATES + 3)
        bias[CANDIDATES - 1] = 8.0  # untrained: the geometric render, as the pipeline without learning
        with torch.no_grad():
            self.head.weight.zero_()
            self.head.bias = nn.Parameter(bias)

    def forward(self, planes: torch.Tensor, scale: int = TRAIN_SCALE) -> torch.Tensor:
        H, W = planes.shape[-2:]
        # The network works at 1/scale resolution; its per-pixel weights are upsampled and
        # applied to the full-resolution warps, so detail comes from the frames.
        low = self.decide(kernels.pad_pool(planes, 8 * scale, scale))
        out = F.interpolate(low, scale_factor=scale, mode="bilinear", align_corners=False)[..., :H, :W].float()
        B = planes.shape[0]
        slots = planes[:, : SLOTS * SLOT_PLANES].reshape(B, SLOTS, SLOT_PLANES, H, W)
        coherent = planes[:, SLOTS * SLOT_PLANES: GEOMETRIC_AT].reshape(B, COHERENT, COHERENT_PLANES, H, W)
        return combine(out, slots, coherent, planes[:, GEOMETRIC_AT: GEOMETRIC_AT + 3])

    def decide(self, x: torch.Tensor) -> torch.Tensor:
        """Planes pooled to 1/scale (sides a multiple of 8) -> B x (CANDIDATES + 3) x h x w at that
        resolution: the candidates' logits and the colour correction."""
        skips = []
        for i, block in enumerate(self.down):
            x = block(F.avg_pool2d(x, 2) if i else x)
            skips.append(x)
        for block, skip in zip(self.up, reversed(skips[:-1])):
            x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            x = block(torch.cat([x, skip], 1))
        out: torch.Tensor = self.head(x)
        return out


class ChannelsLastGELU(nn.Module):
    """GELU of a channels-last activation as of the plain contiguous tensor its memory is: the
    same values as GELU of the NCHW tensor (what autocast's network computes), at about half
    the cost of PyTorch's channels-last elementwise path, which also rounds differently."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last):
            return F.gelu(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        return F.gelu(x)


def combine(out: torch.Tensor, slots: torch.Tensor, coherent: torch.Tensor,
            geometric_rgb: torch.Tensor) -> torch.Tensor:
    """The finished colour: a softmax over the present candidates' colours (slots, coherent
    warps, the geometric colour) plus the correction (``out`` from LearnedRenderer.decide,
    ``slots`` B x SLOTS x 5 x H x W, ``coherent`` B x COHERENT x 4 x H x W). Written as a
    running sum over the candidates instead of a stacked product and a sum over them (the same
    values in the same order, without two B x CANDIDATES x 3 x H x W copies)."""
    present = torch.cat([kernels.greater(slots[:, :, 3] + slots[:, :, 4], 0),  # a weight share or a confirmation
                         coherent[:, :, 3]], 1)                                  # inside (0/1)
    n = SLOTS + COHERENT
    logits = out[:, :CANDIDATES].clone()
    # masked_fill(~present, -1e4) as x * present + (1 - present) * -1e4 (the logits are finite;
    # masked_fill and bool masks are several times slower here)
    logits[:, :n].mul_(present).add_((1 - present).mul_(-1e4))  # present stays: mul_'s gradient
    weights = logits.softmax(1)
    rgb = slots[:, 0, :3] * weights[:, :1]
    for k in range(1, SLOTS):
        rgb = rgb + slots[:, k, :3] * weights[:, k: k + 1]
    for k in range(COHERENT):
        rgb = rgb + coherent[:, k, :3] * weights[:, SLOTS + k: SLOTS + k + 1]
    return rgb + geometric_rgb * weights[:, n: n + 1] + out[:, CANDIDATES:]


def input_planes(geometric: warp.Rendered) -> torch.Tensor:
    """What the learned renderer sees (module docstring): B x IN_CHANNELS x H x W, from a
    geometric render made with ``slots=SLOTS``."""
    return torch.cat(_input_parts(geometric), 1)


def _input_parts(geometric: warp.Rendered) -> list[torch.Tensor]:
    """input_planes' channels in four B x c x H x W parts (finish pools them before joining)."""
    slots, coherent = geometric.slots, geometric.coherent
    if slots is None or slots.shape[1] != SLOTS or coherent is None:
        raise ValueError(f"the learned renderer needs a geometric render with slots={SLOTS}")
    inv_depth = geometric.inv_depth
    B, H, W = inv_depth.shape
    has = inv_depth > 0
    has_f = kernels.as_float(has, inv_depth.dtype)
    # where(has, ..., 0) as products with the 0/1 mask (the values are finite; + 0.0 turns the
    # -0.0 of a negative times 0 into the 0.0 where gives)
    log_z = torch.log(inv_depth.clamp_min(1e-12)).neg_().mul_(has_f)
    rel = (log_z - _median_log_depth(inv_depth, log_z, has)[:, None, None]).mul_(has_f).add_(0.0)
    extra = torch.stack([kernels.as_float(geometric.seen, inv_depth.dtype), has_f,
                         rel.clamp(-LOG_DEPTH_CLAMP, LOG_DEPTH_CLAMP)], 1)
    return [slots.reshape(B, SLOTS * SLOT_PLANES, H, W), coherent.reshape(B, COHERENT * COHERENT_PLANES, H, W),
            geometric.rgb, extra]


def _median_log_depth(inv_depth: torch.Tensor, log_z: torch.Tensor, has: torch.Tensor) -> torch.Tensor:
    """B: each view's (lower) median log depth over its pixels with depth (0 for a view with none).

    The target depth is splatted at half resolution and repeated 2x2 (render.target_depth.stacked_depth), so
    when every 2x2 block holds one value the median is taken over one pixel per block: with
    every value present 4 times, the lower median of the 4m values (sorted index 2m - 1) is the
    lower median of the m (index (m - 1) // 2). The same value at a quarter of the cost (the
    masked selection dominates it); any other map takes every pixel."""
    B, H, W = inv_depth.shape
    if H % 2 == 0 and W % 2 == 0:
        corner = inv_depth[:, ::2, ::2]
        if all(torch.equal(corner, inv_depth[:, i::2, j::2]) for i, j in ((0, 1), (1, 0), (1, 1))):
            log_z, has = log_z[:, ::2, ::2], has[:, ::2, ::2]
    flat, valid = log_z.reshape(B, -1), has.reshape(B, -1)
    counts = valid.sum(1).tolist()
    zero = log_z.new_zeros(())
    return torch.stack([flat[b][valid[b]].median() if n else zero for b, n in enumerate(counts)])


def _digest(tensors: dict[str, torch.Tensor]) -> str:
    """SHA-256 over the tensors' names, shapes and bytes (a flipped bit anywhere is caught)."""
    import hashlib

    h = hashlib.sha256()
    for k in sorted(tensors):
        t = tensors[k].detach().cpu().contiguous()
        h.update(f"{k}:{t.dtype}:{tuple(t.shape)};".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def save_weights(model: LearnedRenderer, path: str | Path) -> None:
    """The weights as safetensors with the config and a checksum in its metadata (atomic)."""
    from safetensors.torch import save

    from rtfm_ros.atomic import write_bytes_atomic

    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    write_bytes_atomic(Path(path), save(tensors, metadata={"config": model.config.to_json(), "sha256": _digest(tensors),
                                                           "format": FORMAT}))


def load_weights(path: str | Path, device: torch.device | str = "cpu") -> LearnedRenderer:
    """A LearnedRenderer from ``save_weights``' file; a file that is not one is refused."""
    from safetensors import SafetensorError, safe_open
    from safetensors.torch import load_file

    path = Path(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
        if meta.get("format") != FORMAT:
            raise ValueError(f"{path}: not a learned renderer file of this version (format {meta.get('format')!r}, "
                             f"expected {FORMAT!r}): retrain it (rtfm renderer data, rtfm renderer train)")
        model = LearnedRenderer(LearnedRendererConfig.from_json(meta.get("config", "")))
        tensors = load_file(str(path))
        if meta.get("sha256") != _digest(tensors):
            raise ValueError(f"{path}: the learned renderer's weights do not match their checksum (damaged file)")
        model.load_state_dict(tensors)
    except (OSError, RuntimeError, KeyError, json.JSONDecodeError, SafetensorError) as exc:
        raise ValueError(f"{path}: cannot load the learned renderer: {exc}") from exc
    return model.to(device).eval()


def finish(model: LearnedRenderer, geometric: warp.Rendered) -> torch.Tensor:
    """The finished colour (B x 3 x H x W in [0, 1]) of targets the geometry rendered (with slots).

    The same computation as ``model(input_planes(geometric), RENDER_SCALE)`` under autocast, arranged
    for inference: the input parts are pooled (kernels.pool_rows_cols) before they are joined
    (the full-resolution planes are never built), the network runs as inference_copy's
    reduced-precision, channels-last copy, its output is upsampled by kernels.upsample_bilinear
    and the candidates are blended by combine. Per 16 views at 64x64 (1 thread) that took the
    whole step from ~20 to ~16 ms; the images differ from forward's by reduced-precision noise
    (one uint8 level at ~0.005 % of values over 16 steps of the env benchmark)."""
    parts = _input_parts(geometric)
    H, W = parts[0].shape[-2:]
    pad = (0, (-W) % (8 * RENDER_SCALE), 0, (-H) % (8 * RENDER_SCALE))
    x = torch.cat([kernels.pool_rows_cols(F.pad(p, pad, mode="replicate") if any(pad) else p, RENDER_SCALE)
                   for p in parts], 1)
    net = inference_copy(model, x.device)
    slots = parts[0].reshape(x.shape[0], SLOTS, SLOT_PLANES, H, W)
    coherent = parts[1].reshape(x.shape[0], COHERENT, COHERENT_PLANES, H, W)
    with torch.no_grad():
        low = net.decide(x.to(next(net.parameters()).dtype).contiguous(memory_format=torch.channels_last))
        # rounded to the network's dtype, as its own upsampling (forward) rounds its output
        out = kernels.upsample_bilinear(low.float(), RENDER_SCALE, H, W).to(low.dtype).float()
        rgb = combine(out, slots, coherent, geometric.rgb)
    return rgb.clamp(0, 1)


_COPIES: weakref.WeakKeyDictionary[LearnedRenderer, tuple[tuple[object, ...], LearnedRenderer]] = (
    weakref.WeakKeyDictionary())
_COPIES_LOCK = threading.Lock()


def inference_copy(model: LearnedRenderer, device: torch.device) -> LearnedRenderer:
    """``model``'s weights in the autocast dtype (bf16 where the CPU has it, else float32) and
    channels-last layout, kept until the weights change (their storage or version: training
    and load_state_dict bump it). Why: autocast casts every convolution's weights on every call,
    and NCHW activations make mkldnn reorder around each convolution and upsampling; at 64x64
    views that was ~4 of the network's ~15 ms per 16 views. channels-last convolutions sum in
    another order, so the output differs from the autocast one by reduced-precision noise."""
    from rtfm_ros.runtime import autocast_dtype

    dtype = autocast_dtype(device) or torch.float32
    key = (dtype, device, *((p.data_ptr(), p._version) for p in model.parameters()))
    with _COPIES_LOCK:
        hit = _COPIES.get(model)
        if hit is not None and hit[0] == key:
            return hit[1]
        net = LearnedRenderer(model.config)
        net.load_state_dict(model.state_dict())
        net.to(device=device, dtype=dtype).eval().requires_grad_(False)
        for p in net.parameters():
            if p.dim() == 4:
                p.data = p.data.contiguous(memory_format=torch.channels_last)
        for block in (*net.down, *net.up):
            for i, layer in enumerate(block):
                if isinstance(layer, nn.GELU):
                    block[i] = ChannelsLastGELU()
        _COPIES[model] = (key, net)
        return net
