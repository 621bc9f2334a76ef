"""Depth maps that come with posed images: files a transforms.json names, and a bag's depth topic.

Why: an RGB-D camera's depth (or a capture app's) is measured where stereo from the images
guesses, and a world seeded with it renders from it (render.prepare takes a frame's own depth
first). Importers read it here so a clip carries it (Clip.depth) to `rtfm eval --holdout`, to
datasets and to worlds.

Conventions:
- transforms.json (nerfstudio's): a frame's ``depth_file_path`` is a 16-bit PNG (or a 2-D .npy
  array) of planar z in units of ``depth_unit_scale_factor`` (per frame or for the file; default
  0.001, millimetres) of the poses' unit; 0 = unknown.
- a bag's depth topic: sensor_msgs/Image 16UC1 (mm, 0 = unknown) or 32FC1 (m), registered to
  the colour camera (as RGB-D drivers' ``aligned_depth_to_color`` topics are), matched to each
  colour image by header stamp within DEPTH_SYNC_NS.
A depth map of another size than its image (the same aspect) is resized at the nearest pixel,
so depths are never averaged across an edge.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from rtfm_ros.geometry import MAX_RESOLUTION
from rtfm_ros.images import resize_depth
from rtfm_ros.photo import MAX_PHOTO_BYTES, PhotoError, read_photo

DEFAULT_DEPTH_SCALE = 1e-3   # nerfstudio's default: 16-bit millimetres
DEPTH_SYNC_NS = 20_000_000   # a depth image pairs with a colour image this close in stamp (20 ms)
ASPECT_TOLERANCE = 0.02


class DepthMapError(ValueError):
    """A depth map that cannot be used: unreadable, not a depth image, or not matching its image."""


def load_depth_file(path: str | Path, scale: float = DEFAULT_DEPTH_SCALE) -> np.ndarray:
    """HxW float32 planar z (``scale`` x the stored values; NaN where unknown) from a 16-bit PNG
    or a .npy file; 8-bit and colour images are refused (they are not depth)."""
    try:
        data = read_photo(path, MAX_PHOTO_BYTES)
    except PhotoError as exc:
        raise DepthMapError(str(exc)) from None
    return decode_depth(data, path, scale)


def decode_depth(data: bytes, path: str | Path, scale: float = DEFAULT_DEPTH_SCALE) -> np.ndarray:
    """load_depth_file's map from the file's bytes (``path`` names it: its suffix picks .npy or
    PNG, and errors name it), for depth maps that arrive as bytes (an upload to `rtfm serve`)."""
    if not (np.isfinite(scale) and scale > 0):
        raise DepthMapError(f"depth scale must be a positive number, got {scale!r}")
    raw = _decode_npy(data, path) if Path(path).suffix.lower() == ".npy" else _decode_png(data, path)
    if raw.ndim != 2 or min(raw.shape) < 1 or max(raw.shape) > MAX_RESOLUTION:
        raise DepthMapError(f"{path}: a depth map must be a 2-D array of 1..{MAX_RESOLUTION} a side, "
                            f"got shape {raw.shape}")
    with np.errstate(invalid="ignore", over="ignore"):
        z = raw.astype(np.float32) * np.float32(scale)
        return np.where(np.isfinite(z) & (z > 0), z, np.nan).astype(np.float32)


def _decode_npy(data: bytes, path: str | Path) -> np.ndarray:
    try:
        arr = np.load(io.BytesIO(data), allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise DepthMapError(f"{path}: not a readable .npy array ({str(exc)[:120]})") from None
    if not isinstance(arr, np.ndarray) or arr.dtype.kind not in "uif":
        raise DepthMapError(f"{path}: a depth .npy must hold numbers, got {getattr(arr, 'dtype', type(arr))}")
    return arr


def _decode_png(data: bytes, path: str | Path) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as im:
            if im.format != "PNG":
                raise DepthMapError(f"{path}: a depth map must be a 16-bit PNG or a .npy, got {im.format}")
            w, h = im.size
            if max(w, h) > MAX_RESOLUTION:
                raise DepthMapError(f"{path}: depth map is {w}x{h}, larger than {MAX_RESOLUTION} pixels a side")
            if im.mode not in ("I;16", "I;16B", "I;16L", "I"):
                raise DepthMapError(f"{path}: a {im.mode} PNG is not a depth map (a 16-bit single-channel PNG is)")
            return np.asarray(im)
    except DepthMapError:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError) as exc:
        raise DepthMapError(f"{path}: not a readable depth image ({str(exc)[:120]})") from None


def match_image(depth: np.ndarray, width: int, height: int, where: str) -> np.ndarray:
    """The depth map at its image's size: resized at the nearest pixel when only the resolution
    differs; a different aspect is refused (the map is then not registered to the image)."""
    h, w = depth.shape
    if (w, h) == (width, height):
        return depth
    if abs(w / h - width / height) > ASPECT_TOLERANCE * width / height:
        raise DepthMapError(f"{where}: depth map is {w}x{h} but its image is {width}x{height} (another aspect: "
                            "not registered to the colour camera)")
    return resize_depth(depth, width, height)


def crop_square(depth: np.ndarray, res: int | None) -> np.ndarray:
    """The depth map cut and resized as importers.fit_image cuts its image: the centre square at
    res x res (None: unchanged)."""
    if res is None:
        return depth
    h, w = depth.shape
    s = min(h, w)
    y0, x0 = (h - s) // 2, (w - s) // 2
    return resize_depth(np.ascontiguousarray(depth[y0: y0 + s, x0: x0 + s]), res, res)


def stack_depths(depths: list[np.ndarray | None], height: int, width: int) -> np.ndarray | None:
    """N x H x W float32 (all NaN for a frame without depth), or None when no frame has any."""
    if all(d is None for d in depths):
        return None
    out = np.full((len(depths), height, width), np.nan, np.float32)
    for i, d in enumerate(depths):
        if d is not None:
            out[i] = d
    return out


def nearest_stamp(stamps: np.ndarray, stamp_ns: int) -> int | None:
    """Index of the stamp within DEPTH_SYNC_NS of ``stamp_ns`` (the closest), or None."""
    if not len(stamps):
        return None
    k = int(np.argmin(np.abs(stamps - stamp_ns)))
    return k if abs(int(stamps[k]) - stamp_ns) <= DEPTH_SYNC_NS else None
