"""Test photos for the `rtfm serve` tests."""

from __future__ import annotations

import io

import numpy as np


def photo_png(w: int = 96, h: int = 64, seed: int = 0) -> bytes:
    """A structured test photo (gradients and blocks)."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    img = np.stack([x * 255 // w, y * 255 // h, np.full_like(x, 120)], -1).astype(np.uint8)
    for _ in range(6 if min(w, h) > 16 else 0):
        x0, y0 = rng.integers(0, w - 16), rng.integers(0, h - 16)
        img[y0:y0 + 14, x0:x0 + 14] = rng.integers(0, 255, 3)
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, "PNG")
    return buf.getvalue()
