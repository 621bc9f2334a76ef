"""Resizing images and depth maps: one way for the whole project.

Colour is area-averaged (a box filter: each output pixel the mean of the input pixels it
covers, the right filter for the downscaling done here: frames stored at the memory's size,
photos imported at a dataset's size); depth is sampled at the nearest pixel, since averaging
depth across an edge invents surfaces between the two.
"""

from __future__ import annotations

import numpy as np

from rtfm_ros.geometry import PinholeCamera


def _resized(img: np.ndarray, width: int, height: int, mode: str) -> np.ndarray:
    import torch  # here, so importing this module stays light (bag and dataset tools)
    import torch.nn.functional as F

    t = torch.from_numpy(np.array(img, dtype=np.float32))
    t = t[None, None] if t.ndim == 2 else t.permute(2, 0, 1)[None]
    out = F.interpolate(t, size=(height, width), mode=mode)[0]
    out = out[0] if img.ndim == 2 else out.permute(1, 2, 0)
    if img.dtype == np.uint8:
        result: np.ndarray = out.round().clamp(0, 255).to(torch.uint8).numpy()
        return result
    return out.numpy().astype(img.dtype)


def resize_image(img: np.ndarray, width: int, height: int) -> np.ndarray:
    """HxWxC (or HxW) resized to width x height by area (dtype kept; the input itself when the size matches)."""
    if img.shape[1] == width and img.shape[0] == height:
        return img
    return _resized(img, width, height, "area")


def resize_depth(depth: np.ndarray, width: int, height: int) -> np.ndarray:
    """HxW depth resized to width x height at the nearest pixel (NaN kept; the input when the size matches)."""
    if depth.shape[1] == width and depth.shape[0] == height:
        return depth
    return _resized(depth, width, height, "nearest")


def crop_to(image: np.ndarray, camera: PinholeCamera, width: int, height: int) -> tuple[np.ndarray, PinholeCamera]:
    """Centre-crop to the aspect width:height, then resize (area) to width x height, the camera to match:
    a photo made into a target of another size, as evaluation and training examples take it."""
    H, W = image.shape[:2]
    if W * height > H * width:  # too wide
        cw, ch = round(H * width / height), H
    else:
        cw, ch = W, round(W * height / width)
    x0, y0 = (W - cw) // 2, (H - ch) // 2
    cam = PinholeCamera(cw, ch, camera.fx, camera.fy, camera.cx - x0, camera.cy - y0).scaled(width, height)
    return resize_image(np.ascontiguousarray(image[y0: y0 + ch, x0: x0 + cw]), width, height), cam
