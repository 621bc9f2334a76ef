"""Image quality metrics: the one PSNR (and SSIM) behind every reported number.

PSNR is capped at MAX_PSNR (identical images score exactly that) so that averages over a
suite, a flight or a training batch stay finite and comparable: ``psnr`` on uint8 RGB images
(peak 255, evaluation and the demo) and ``psnr_torch`` on batches of [0, 1] tensors (training).
SSIM is scikit-image's (Gaussian-free 7x7 window, per channel, data range 255).
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
    return float(structural_similarity(a, b, channel_axis=-1, data_range=255, win_size=win))
