"""How a frame's pixels are stored inside a world file: image and depth codecs.

PNG is lossless and the default; WebP/JPEG trade exactness for size with a quality setting.
Depth is a compressed npz (float32 or float16, never pickled) or a 16-bit PNG in millimetres.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from rtfm_ros.memory.errors import WorldFileError
from rtfm_ros.photo import PhotoError, decode_photo

IMAGE_FORMATS = ("png", "webp", "jpeg")
DEPTH_FORMATS = ("npz32", "npz16", "png16mm")


def encode_image(rgb: np.ndarray, fmt: str = "png", quality: int = 95) -> bytes:
    """HxWx3 uint8 -> bytes. PNG is lossless; WebP/JPEG use ``quality`` (1..100)."""
    buf = io.BytesIO()
    img = Image.fromarray(rgb, "RGB")
    if fmt == "png":
        img.save(buf, format="PNG", compress_level=6)
    elif fmt == "webp":
        img.save(buf, format="WEBP", quality=int(quality), method=4)
    elif fmt == "jpeg":
        img.save(buf, format="JPEG", quality=int(quality))
    else:
        raise WorldFileError(f"image format must be one of {IMAGE_FORMATS}, got {fmt!r}")
    return buf.getvalue()


def decode_image(data: bytes, width: int, height: int) -> np.ndarray:
    """bytes -> HxWx3 uint8; the size (and a JPEG's scans) checked from the header before any pixel is decoded."""
    try:
        rgb = decode_photo(data, "stored image", size=(width, height))
    except PhotoError as exc:
        raise WorldFileError(str(exc)) from None
    if rgb.shape != (height, width, 3):
        raise WorldFileError(f"stored image is {rgb.shape}, expected ({height}, {width}, 3)")
    return rgb


def encode_depth(depth: np.ndarray, fmt: str = "npz32") -> bytes:
    """HxW float32 metres -> bytes. png16mm rounds to millimetres; NaN and > 65.535 m become 0."""
    buf = io.BytesIO()
    if fmt in ("npz32", "npz16"):
        np.savez_compressed(buf, depth=depth.astype(np.float32 if fmt == "npz32" else np.float16))
    elif fmt == "png16mm":
        with np.errstate(invalid="ignore"):
            mm = np.where(np.isfinite(depth) & (depth <= 65.535), np.round(depth * 1000.0), 0.0)
        Image.fromarray(mm.astype(np.uint16)).save(buf, format="PNG")
    else:
        raise WorldFileError(f"depth format must be one of {DEPTH_FORMATS}, got {fmt!r}")
    return buf.getvalue()


def decode_depth(data: bytes, fmt: str | None, width: int, height: int) -> np.ndarray:
    """HxW float32 metres from stored bytes; a format that is unknown (or missing) is a WorldFileError."""
    depth: np.ndarray
    if fmt in ("npz32", "npz16"):
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            depth = z["depth"].astype(np.float32)
    elif fmt == "png16mm":
        with Image.open(io.BytesIO(data)) as img:
            if img.size != (width, height):
                raise WorldFileError(f"stored depth is {img.size[0]}x{img.size[1]}, expected {width}x{height}")
            mm = np.asarray(img).astype(np.float32)
        depth = np.where(mm > 0, mm / 1000.0, np.nan).astype(np.float32)
    else:
        raise WorldFileError(f"unknown stored depth format {fmt!r}")
    if depth.shape != (height, width):
        raise WorldFileError(f"stored depth is {depth.shape}, expected ({height}, {width})")
    return depth
