"""The learned renderer's inference path (render.learned.finish and the kernels it uses) gives
what the training path, ``model(input_planes(...))`` under autocast, gives: the same values
where it only reorders work, float rounding noise where it sums in another order."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from rtfm_ros.render import kernels, learned, warp
from rtfm_ros.render.learned import CANDIDATES, COHERENT_PLANES, SLOT_PLANES, SLOTS, LearnedRenderer
from rtfm_ros.render.warp import COHERENT
from rtfm_ros.runtime import autocast


@pytest.mark.parametrize("seed", range(12))
def test_upsample_bilinear_equals_interpolate_then_crop(seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    N, C = (int(v) for v in torch.randint(1, 4, (2,), generator=g))
    h, w = (int(v) for v in torch.randint(1, 20, (2,), generator=g))
    for scale in (2, 4):
        x = torch.randn(N, C, h, w, generator=g) * 5
        H, W = (int(v) for v in torch.randint(1, scale + 1, (2,), generator=g))
        H, W = h * scale - H + 1, w * scale - W + 1  # crops of up to scale - 1 rows and columns
        ref = F.interpolate(x, scale_factor=scale, mode="bilinear", align_corners=False)[..., :H, :W]
        out = kernels.upsample_bilinear(x, scale, H, W)
        assert out.shape == ref.shape and out.is_contiguous()
        torch.testing.assert_close(out, ref, rtol=1e-6, atol=1e-5)


@pytest.mark.parametrize("seed", range(12))
def test_pool_rows_cols_equals_avg_pool(seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    N, C = (int(v) for v in torch.randint(1, 4, (2,), generator=g))
    for scale in (2, 4):
        H, W = (scale * int(v) for v in torch.randint(1, 20, (2,), generator=g))
        x = torch.rand(N, C, H, W, generator=g) * 10.0 ** float(torch.randn(1, generator=g))
        torch.testing.assert_close(kernels.pool_rows_cols(x, scale), F.avg_pool2d(x, scale), rtol=1e-6, atol=0)


def _stacked_combine(out: torch.Tensor, slots: torch.Tensor, coherent: torch.Tensor,
                     geometric_rgb: torch.Tensor) -> torch.Tensor:
    """combine written plainly: a softmax over stacked candidates."""
    present = torch.cat([slots[:, :, 3:].sum(2) > 0, coherent[:, :, 3] > 0,
                         torch.ones_like(geometric_rgb[:, :1], dtype=torch.bool)], 1)
    weights = out[:, :CANDIDATES].masked_fill(~present, -1e4).softmax(1)
    candidates = torch.cat([slots[:, :, :3], coherent[:, :, :3], geometric_rgb[:, None]], 1)
    return (weights[:, :, None] * candidates).sum(1) + out[:, CANDIDATES:]


def _geometric(seed: int, B: int = 3, H: int = 20, W: int = 28) -> warp.Rendered:
    """A geometric render with slots: absent slots, empty depth, a view with no depth at all."""
    g = torch.Generator().manual_seed(seed)
    slots = torch.rand(B, SLOTS, SLOT_PLANES, H, W, generator=g)
    slots[:, :, 3:][torch.rand(B, SLOTS, 2, H, W, generator=g) < 0.4] = 0
    slots[:, 2, 3:] = 0
    coherent = torch.rand(B, COHERENT, COHERENT_PLANES, H, W, generator=g)
    coherent[:, :, 3] = (coherent[:, :, 3] < 0.7).float()  # inside the best context's image
    coherent[-1] = 0  # no depth: no coherent warp
    inv = torch.rand(B, H, W, generator=g) + 0.1
    inv[torch.rand(B, H, W, generator=g) < 0.3] = 0
    inv[-1] = 0
    seen = torch.rand(B, H, W, generator=g) < 0.8
    rgb = torch.rand(B, 3, H, W, generator=g)
    return warp.Rendered(rgb=rgb, depth=1 / inv, seen=seen, inv_depth=inv, slots=slots, coherent=coherent)


@pytest.mark.parametrize("seed", range(6))
def test_combine_equals_the_stacked_softmax(seed: int) -> None:
    # bit-identical where a plane is a whole number of vectors (64x64 views); elsewhere the
    # stacked sum's vector tail rounds differently
    for (H, W), exact in (((64, 64), True), ((20, 32), True), ((20, 28), False)):
        geo = _geometric(seed, H=H, W=W)
        assert geo.slots is not None and geo.coherent is not None
        out = torch.randn(3, CANDIDATES + 3, H, W, generator=torch.Generator().manual_seed(seed)) * 4
        new = learned.combine(out, geo.slots, geo.coherent, geo.rgb)
        ref = _stacked_combine(out, geo.slots, geo.coherent, geo.rgb)
        if exact:
            assert torch.equal(new, ref)
        else:
            torch.testing.assert_close(new, ref, rtol=0, atol=1e-6)


def _trained_looking(seed: int) -> LearnedRenderer:
    """A renderer whose head is not zero (an untrained one renders the geometric colour)."""
    torch.manual_seed(seed)
    model = LearnedRenderer().eval()
    with torch.no_grad():
        model.head.weight.normal_(0, 0.05)
    return model


@pytest.mark.parametrize(("H", "W"), [(20, 28), (33, 17), (24, 40), (64, 64)])
def test_finish_matches_the_network_on_input_planes(H: int, W: int) -> None:
    model = _trained_looking(0)
    geo = _geometric(1, H=H, W=W)
    with torch.no_grad(), autocast(geo.rgb.device):
        ref = model(learned.input_planes(geo), learned.RENDER_SCALE).float().clamp(0, 1)
    out = learned.finish(model, geo)
    assert out.shape == ref.shape == (3, 3, H, W) and out.dtype == torch.float32
    # the same up to reduced-precision rounding (channels-last convolutions sum in another order)
    assert float((out - ref).abs().max()) < 0.02
    assert float((out - ref).abs().mean()) < 1e-3


def test_inference_copy_follows_the_weights() -> None:
    model = _trained_looking(2)
    dev = torch.device("cpu")
    net = learned.inference_copy(model, dev)
    assert learned.inference_copy(model, dev) is net
    assert all(not p.requires_grad for p in net.parameters())
    geo = _geometric(3)
    before = learned.finish(model, geo)
    bias = model.head.bias
    assert bias is not None
    with torch.no_grad():
        bias[CANDIDATES - 1] -= 20.0  # in place: the geometric candidate loses its lead
    assert learned.inference_copy(model, dev) is not net
    after = learned.finish(model, geo)
    assert float((after - before).abs().max()) > 0.01
    model.load_state_dict(_trained_looking(2).state_dict())
    assert torch.equal(learned.finish(model, geo), before)


def _per_view_rel(inv_depth: torch.Tensor) -> torch.Tensor:
    """The relative log depth plane as input_planes computed it view by view."""
    has = inv_depth > 0
    log_z = torch.where(has, -torch.log(inv_depth.clamp_min(1e-12)), torch.zeros_like(inv_depth))
    rel = torch.zeros_like(log_z)
    for b in range(inv_depth.shape[0]):
        if bool(has[b].any()):
            rel[b] = torch.where(has[b], log_z[b] - log_z[b][has[b]].median(), rel[b])
    return rel.clamp(-learned.LOG_DEPTH_CLAMP, learned.LOG_DEPTH_CLAMP)


@pytest.mark.parametrize("seed", range(10))
def test_relative_depth_plane_equals_the_per_view_median(seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    half = torch.rand(4, 10, 14, generator=g) + 0.05
    half[torch.rand(4, 10, 14, generator=g) < 0.4] = 0
    half[2] = 0  # no depth at all
    half[3, :, :] = 0
    half[3, 0, :2] = torch.tensor([0.5, 0.25])  # an even count: the lower median
    blocky = half.repeat_interleave(2, 1).repeat_interleave(2, 2)  # as target_depth.stacked_depth upsamples
    ragged = blocky.clone()
    ragged[0, 5, 7] = 0.77  # one pixel off its block: every pixel counts
    for inv in (blocky, ragged, blocky[:, :19, :27]):
        geo = _geometric(seed, B=4, H=inv.shape[1], W=inv.shape[2])
        geo.inv_depth = inv
        assert torch.equal(learned.input_planes(geo)[:, -1], _per_view_rel(inv))


def test_channels_last_gelu_equals_gelu_of_the_nchw_tensor() -> None:
    x = torch.randn(3, 16, 9, 7).to(torch.bfloat16)
    out = learned.ChannelsLastGELU()(x.contiguous(memory_format=torch.channels_last))
    assert out.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(out, F.gelu(x)) and torch.equal(learned.ChannelsLastGELU()(x), F.gelu(x))


def test_forward_trains_through_combine() -> None:
    model = _trained_looking(4).train()
    geo = _geometric(5)
    model(learned.input_planes(geo), 2).square().mean().backward()
    assert model.head.weight.grad is not None and float(model.head.weight.grad.abs().sum()) > 0
