"""Image quality metrics on uint8 RGB images (the numbers reported for every renderer).

PSNR of identical images is capped at MAX_PSNR so that averages over a suite stay finite.
SSIM is scikit-image's (Gaussian-free 7x7 window, per channel, data range 255).
"""

from __future__ import annotations

import numpy as np
from skimage.metrics import structural_similarity

MAX_PSNR = 100.0


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


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Mean structural similarity over the image and its three channels."""
    a, b = _pair(a, b)
    win = min(7, min(a.shape[:2]) - (1 - min(a.shape[:2]) % 2))  # odd, <= the smaller side
    if win < 3:
        raise MetricError(f"SSIM needs images of at least 3x3 pixels, got {a.shape[1]}x{a.shape[0]}")
    return float(structural_similarity(a, b, channel_axis=-1, data_range=255, win_size=win))
