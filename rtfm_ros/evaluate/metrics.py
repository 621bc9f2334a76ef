"""Image quality metrics: the one PSNR (and SSIM) behind every reported number.

PSNR is capped at MAX_PSNR (identical images score exactly that) so that averages over a
suite, a flight or a training batch stay finite and comparable: ``psnr`` on uint8 RGB images
(peak 255, evaluation and the demo) and ``psnr_torch`` on batches of [0, 1] tensors (training).
SSIM is scikit-image's (Gaussian-free 7x7 window, per channel, data range 255).

Two more say what PSNR misses. ``gmsd``, the gradient magnitude similarity deviation (Xue et
al. 2014): how unevenly the structure (edges) of a render matches the truth's; 0 for the same
structure, larger for fragments, seams and smears. ``patch_swd``: how far the fine detail of a
region is from the truth's as a *distribution* (sliced Wasserstein distance between the 7x7
Laplacian-detail patches of both inside a mask), so an invented texture that is plausible but
not pixel-aligned scores well and a smooth smear scores badly; it judges imagination where
nothing was seen.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    import torch

MAX_PSNR = 100.0  # dB; an MSE of 10^-10 of the peak squared, far below any 8-bit difference


class MetricError(ValueError):
    """Images that cannot be compared."""


def _pair(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a, b = np.asarray(a), np.asarray(b)
    if a.dtype != np.uint8 or b.dtype != np.uint8:
        raise MetricError(f"metrics take uint8 images, got {a.dtype} and {b.dtype}")
    if a.shape != b.shape or a.ndim != 3 or a.shape[-1] != 3:
        raise MetricError(f"metrics take two HxWx3 images of one shape, got {a.shape} and {b.shape}")
    return a, b


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """Peak signal-to-noise ratio in dB (peak 255), capped at MAX_PSNR."""
    a, b = _pair(a, b)
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    if mse == 0.0:
        return MAX_PSNR
    return float(min(MAX_PSNR, 10.0 * np.log10(255.0**2 / mse)))


def psnr_torch(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-item PSNR in dB of two [N, ...] batches in [0, 1] (``a`` clamped first), capped at MAX_PSNR."""
    mse = ((a.clamp(0, 1) - b) ** 2).flatten(1).mean(1).clamp_min(10.0 ** (-MAX_PSNR / 10.0))
    return -10 * mse.log10()


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Mean structural similarity over the image and its three channels."""
    from skimage.metrics import structural_similarity

    a, b = _pair(a, b)
    win = min(7, min(a.shape[:2]) - (1 - min(a.shape[:2]) % 2))  # odd, <= the smaller side
    if win < 3:
        raise MetricError(f"SSIM needs images of at least 3x3 pixels, got {a.shape[1]}x{a.shape[0]}")
    return float(structural_similarity(a, b, channel_axis=-1, data_range=255, win_size=win))  # type: ignore[no-untyped-call]


def _luma(a: np.ndarray) -> np.ndarray:
    y: np.ndarray = a.astype(np.float64) @ np.array([0.299, 0.587, 0.114])
    return y


def gmsd(a: np.ndarray, b: np.ndarray) -> float:
    """Gradient magnitude similarity deviation of two uint8 RGB images (0 = same structure)."""
    from scipy.ndimage import convolve

    a, b = _pair(a, b)
    if min(a.shape[:2]) < 4:
        raise MetricError(f"GMSD needs images of at least 4x4 pixels, got {a.shape[1]}x{a.shape[0]}")
    prewitt = np.array([[1.0, 0.0, -1.0]] * 3) / 3.0

    def magnitude(img: np.ndarray) -> np.ndarray:
        y = _luma(img)
        h, w = (y.shape[0] // 2) * 2, (y.shape[1] // 2) * 2
        y = y[:h, :w].reshape(h // 2, 2, w // 2, 2).mean(axis=(1, 3))  # 2x2 average, downsampled
        gx = convolve(y, prewitt, mode="nearest")
        gy = convolve(y, prewitt.T, mode="nearest")
        out: np.ndarray = np.sqrt(gx * gx + gy * gy)
        return out

    ma, mb = magnitude(a), magnitude(b)
    c = 170.0  # the paper's constant for 0-255 images
    gms = (2 * ma * mb + c) / (ma * ma + mb * mb + c)
    return float(gms.std())


PATCH = 7
SWD_PROJECTIONS = 64


def _detail_patches(img: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """N x (3 * 7 * 7) patches of the image's Laplacian detail (image minus its blur), centred
    at the mask's pixels (those a whole patch fits around)."""
    from scipy.ndimage import gaussian_filter

    x = img.astype(np.float64) / 255.0
    detail = x - gaussian_filter(x, sigma=(1.5, 1.5, 0))
    r = PATCH // 2
    ys, xs = np.nonzero(mask[r: mask.shape[0] - r, r: mask.shape[1] - r])
    windows = np.lib.stride_tricks.sliding_window_view(detail, (PATCH, PATCH), axis=(0, 1))
    patches: np.ndarray = windows[ys, xs].reshape(len(ys), 3 * PATCH * PATCH)
    return patches


def patch_swd(render: np.ndarray, truth: np.ndarray, mask: np.ndarray, *, max_patches: int = 4096,
              seed: int = 0) -> float:
    """Sliced Wasserstein distance between the 7x7 detail patches of ``render`` and ``truth`` at
    the pixels of ``mask`` (H x W bool); NaN when the mask holds no whole patch."""
    render, truth = _pair(render, truth)
    mask = np.asarray(mask, dtype=bool)
    if mask.shape != render.shape[:2]:
        raise MetricError(f"mask {mask.shape} does not match the images {render.shape[:2]}")
    pa, pb = _detail_patches(render, mask), _detail_patches(truth, mask)
    if len(pa) == 0:
        return float("nan")
    rng = np.random.default_rng(seed)
    if len(pa) > max_patches:
        pick = rng.choice(len(pa), max_patches, replace=False)
        pa, pb = pa[pick], pb[pick]
    dirs = rng.normal(size=(pa.shape[1], SWD_PROJECTIONS))
    dirs /= np.linalg.norm(dirs, axis=0, keepdims=True)
    qa, qb = np.sort(pa @ dirs, axis=0), np.sort(pb @ dirs, axis=0)
    return float(np.sqrt(((qa - qb) ** 2).mean(axis=0)).mean())
