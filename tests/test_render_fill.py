"""render.fill's push-pull gives exactly what the plain formulation (avg_pool2d pools and a
``where`` on the way back up) gives, at even and odd sizes."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from rtfm_ros.render import fill


def _plain_push_pull(image: torch.Tensor, known: torch.Tensor) -> torch.Tensor:
    img = image * known[:, None]
    wgt = known[:, None].to(image.dtype)
    levels = []
    while min(img.shape[-2:]) > 1 and not bool((wgt > 0).all()):
        levels.append((img, wgt))
        img = F.avg_pool2d(img, 2, ceil_mode=True)
        wgt = F.avg_pool2d(wgt, 2, ceil_mode=True)
        img = img / wgt.clamp_min(1e-12) * (wgt > 0)
        wgt = (wgt > 0).to(image.dtype)
    filled = torch.where(wgt > 0, img, 0.5)
    for fine, fw in reversed(levels):
        up = F.interpolate(filled, size=fine.shape[-2:], mode="bilinear", align_corners=False)
        filled = torch.where(fw > 0, fine, up)
    return filled


@pytest.mark.parametrize("seed", range(16))
def test_push_pull_equals_the_plain_formulation(seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    B, C = (int(v) for v in torch.randint(1, 5, (2,), generator=g))
    H, W = ((64, 64), (32, 48), (17, 30), (5, 3))[seed % 4]
    image = torch.randn(B, C, H, W, generator=g) * 3
    known = torch.rand(B, H, W, generator=g) < (0.05, 0.5, 0.95)[seed % 3]
    known[0] = False  # one view with nothing known: all mid-grey
    assert torch.equal(fill.push_pull_fill(image, known), _plain_push_pull(image, known))


def test_complete_inverse_depth_keeps_known_pixels() -> None:
    inv = torch.rand(2, 16, 16) + 0.1
    inv[:, 4:9, 3:12] = 0
    out = fill.complete_inverse_depth(inv)
    assert torch.equal(out[inv > 0], inv[inv > 0]) and bool((out > 0).all())


def test_float_masks_equal_the_bool_comparisons() -> None:
    from rtfm_ros.render import kernels

    x = torch.tensor([-float("inf"), -2.0, -0.0, 0.0, 0.5, 1.0, 3.0, float("inf"), float("nan")]).reshape(3, 3)
    for v in (0.0, 1.0, -2.0):
        assert torch.equal(kernels.greater(x, v), (x > v).float())
        assert torch.equal(kernels.less(x, v), (x < v).float())
        assert torch.equal(kernels.at_least(x, v), (x >= v).float())
        assert torch.equal(kernels.at_most(x, v), (x <= v).float())
    m = x > 0.4
    assert torch.equal(kernels.as_float(m), m.float()) and torch.equal(kernels.as_float(m[:, 1]), m[:, 1].float())
    assert kernels.as_float(m, torch.float64).dtype == torch.float64


def test_depth_holes_take_the_farthest_surface_around_them() -> None:
    """A hole beside a near surface (inverse depth 1.0), inside a far one (0.2): background the near
    one hid from the contexts. It is filled farther than push-pull's average of both sides puts
    it, everywhere in the hole (measured: mean 0.43 against 0.52)."""
    inv = torch.full((1, 32, 32), 0.2)
    inv[:, :, :12] = 1.0
    inv[:, 8:24, 12:24] = 0
    out = fill.complete_inverse_depth(inv)
    known = inv > 0
    assert torch.equal(out[known], inv[known]) and bool((out > 0).all())
    smooth = fill.push_pull_fill(inv[:, None], known)[:, 0]
    hole, smooth_hole = out[:, 8:24, 12:24], smooth[:, 8:24, 12:24]
    assert bool((hole <= smooth_hole + 1e-6).all())
    assert float(hole.mean()) < float(smooth_hole.mean()) - 0.05
    assert torch.equal(fill.complete_inverse_depth(torch.zeros(1, 8, 8)), torch.zeros(1, 8, 8))
