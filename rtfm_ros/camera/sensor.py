"""What turns a render into a sensor's output: exposure, gain, noise; how far published depth is off.

ROS-free (numpy), shared by the node and the benchmarks. Which depth is published (checked
against real frames, or as rendered) is the core's one policy: rtfm_ros.render.stored_depth.
"""

from __future__ import annotations

import numpy as np


def expose(rgb: np.ndarray, exposure: float = 1.0, gain_db: float = 0.0, noise_stddev: float = 0.0,
           rng: np.random.Generator | None = None) -> np.ndarray:
    """A sensor's response: light x exposure (linear), read noise (stddev, fraction of full scale), x gain.

    The render is taken as the scene at exposure 1 and gain 0 dB; noise is added before the
    gain, so gain amplifies it as on a real sensor. Identity (no copy) at the defaults.
    """
    if exposure == 1.0 and gain_db == 0.0 and noise_stddev == 0.0:
        return rgb
    linear = (rgb.astype(np.float32) / 255.0) ** 2.2 * exposure
    if noise_stddev > 0:
        rng = rng if rng is not None else np.random.default_rng()
        linear = linear + rng.normal(0.0, noise_stddev, size=linear.shape).astype(np.float32)
    linear = np.clip(linear * 10.0 ** (gain_db / 20.0), 0.0, 1.0)
    out: np.ndarray = np.round(255.0 * linear ** (1 / 2.2)).astype(np.uint8)
    return out


def phantom_near_share(depth: np.ndarray, truth: np.ndarray, margin: float = 0.2) -> tuple[float, float]:
    """(share of published pixels >= margin too near vs ground truth, share of pixels published)."""
    pub = np.isfinite(depth) & np.isfinite(truth) & (truth > 0)
    n = int(pub.sum())
    near = int((depth[pub] < (1.0 - margin) * truth[pub]).sum()) if n else 0
    return (near / n if n else 0.0), n / depth.size

