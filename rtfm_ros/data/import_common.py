"""What every importer shares: its error, the square crop of `--res`, and frames made into a clip."""

from __future__ import annotations

from typing import Any

import numpy as np

from rtfm_ros.data.clips import Clip
from rtfm_ros.data.depth_maps import stack_depths
from rtfm_ros.geometry import PinholeCamera
from rtfm_ros.images import resize_image


class ImportDataError(ValueError):
    """Input that cannot be imported (missing topics or frames, unsupported encodings, bad JSON)."""


def fit_image(image: np.ndarray, camera: PinholeCamera, res: int | None) -> tuple[np.ndarray, PinholeCamera]:
    """Centre-crop to a square and resize to res x res (None: unchanged), adjusting intrinsics."""
    if res is None:
        return image, camera
    if isinstance(res, bool) or int(res) != res or not 0 < res <= 4096:
        raise ImportDataError(f"target resolution must be an integer in 1..4096, got {res}")
    h, w = image.shape[:2]
    s = min(h, w)
    y0, x0 = (h - s) // 2, (w - s) // 2
    crop = PinholeCamera(s, s, camera.fx, camera.fy, camera.cx - x0, camera.cy - y0)
    img = resize_image(np.ascontiguousarray(image[y0: y0 + s, x0: x0 + s], dtype=np.uint8), res, res)
    return img, crop.scaled(res, res)


def assemble(frames: list[tuple[float, np.ndarray, np.ndarray, PinholeCamera]], meta: dict[str, Any],
              depths: list[np.ndarray | None] | None = None) -> Clip:
    sizes = {f[1].shape[:2] for f in frames}
    if len(sizes) != 1:
        raise ImportDataError(f"images have different sizes {sorted(sizes)}; pass a target resolution (--res)")
    h, w = frames[0][1].shape[:2]
    return Clip(rgb=np.stack([f[1] for f in frames]), T_world_camera=np.stack([f[2] for f in frames]),
                K=np.stack([f[3].K for f in frames]), stamps=np.array([f[0] for f in frames]),
                depth=stack_depths(depths or [None] * len(frames), h, w), meta=meta)
