"""Reading and decoding photos: one way for every image that comes from outside.

Uploads to `rtfm serve`, `--seed-images`, the node's ``seed_images``, transforms.json imports,
CompressedImage messages in bags and the pixels stored in world files all come through here, so
every one gets the same bounds before a pixel is decoded:

- a file is read only when it is a regular file and at most MAX_PHOTO_BYTES long (a FIFO would
  block the reader forever, /dev/zero would fill the memory);
- the header's size is checked first (each side 1..MAX_RESOLUTION): a 100k x 100k PNG header
  is refused in microseconds, not decoded into tens of gigabytes;
- a JPEG's scans are counted before decoding: decoding work is pixels times scans, and a
  progressive JPEG of a few hundred KB that repeats one scan thousands of times takes tens of
  seconds to decode (a normal progressive JPEG has about ten scans).
"""

from __future__ import annotations

import io
import re
from pathlib import Path

import numpy as np

from rtfm_ros.checksum import open_regular
from rtfm_ros.geometry import MAX_RESOLUTION

PHOTO_FORMATS = ("JPEG", "PNG", "WEBP")
MAX_PHOTO_BYTES = 64 << 20   # a 4096x4096 photo is at most ~50 MB as PNG
MAX_JPEG_SCANS = 100         # libjpeg writes 10 for a progressive colour JPEG, mozjpeg ~20
_MARKER = re.compile(rb"\xff(?=[^\x00\xd0-\xd7\xff])")  # a marker, not stuffed data, a restart or fill


class PhotoError(ValueError):
    """A photo that cannot be used: not a readable file, not an image, too large, too costly to decode."""


def read_photo(path: str | Path, max_bytes: int = MAX_PHOTO_BYTES) -> bytes:
    """The bytes of a photo file: only a regular file (never blocks on a FIFO) of at most ``max_bytes``."""
    try:
        with open_regular(path) as f:
            data = f.read(max_bytes + 1)
    except FileNotFoundError:
        raise PhotoError(f"{path} not found") from None
    except OSError as exc:  # SpecialFileError (FIFO, device, directory), permissions, symlink loops
        raise PhotoError(f"cannot read {path}: {exc.strerror or exc}") from None
    if len(data) > max_bytes:
        raise PhotoError(f"{path} is larger than {max_bytes} bytes: not a photo")
    return data


def jpeg_scans(data: bytes, stop_after: int = MAX_JPEG_SCANS) -> int:
    """How many scans (SOS segments) a JPEG stream holds, counting at most ``stop_after`` + 1.

    Walks the segments by their lengths and skips each scan's entropy-coded data to the next
    marker, so bytes inside other segments (an EXIF thumbnail) are not counted.
    """
    i, n, scans = 2, len(data), 0
    while i + 4 <= n and scans <= stop_after:
        if data[i] != 0xFF:
            break
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker == 0xD9:  # end of image
            break
        if marker == 0x01 or 0xD0 <= marker <= 0xD8:  # no length
            i += 2
            continue
        i += 2 + int.from_bytes(data[i + 2: i + 4], "big")
        if marker == 0xDA:
            scans += 1
            m = _MARKER.search(data, i)
            if m is None:
                break
            i = m.start()
    return scans


def decode_photo(data: bytes, name: str, *, formats: tuple[str, ...] = PHOTO_FORMATS, min_side: int = 1,
                 size: tuple[int, int] | None = None, draft: tuple[int, int] | None = None) -> np.ndarray:
    """HxWx3 uint8 RGB from encoded bytes, checked before its pixels are decoded.

    ``formats``: Pillow format names accepted; ``min_side``: the smallest side accepted;
    ``size``: the (width, height) the image must have; ``draft``: a (width, height) a JPEG may
    be decoded down to (at least that size), when it is only going to be shrunk.
    """
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as im:
            if im.format not in formats:
                raise PhotoError(f"{name}: not a {' / '.join(formats)} image (got {im.format})")
            w, h = im.size
            if size is not None and (w, h) != size:
                raise PhotoError(f"{name}: image is {w}x{h}, expected {size[0]}x{size[1]}")
            if max(w, h) > MAX_RESOLUTION:
                raise PhotoError(f"{name}: image is {w}x{h}, larger than {MAX_RESOLUTION} pixels a side")
            if min(w, h) < min_side:
                raise PhotoError(f"{name}: image is {w}x{h}; each side must be at least {min_side} pixels")
            if im.format == "JPEG" and jpeg_scans(data) > MAX_JPEG_SCANS:
                raise PhotoError(f"{name}: a JPEG of more than {MAX_JPEG_SCANS} scans (a photo has about ten); "
                                 "decoding it would take too long")
            if draft is not None:
                im.draft("RGB", draft)
            rgb = np.asarray(im.convert("RGB"), dtype=np.uint8)
    except PhotoError:
        raise
    except UnidentifiedImageError:
        raise PhotoError(f"{name}: not a readable image (no {' / '.join(formats)} header)") from None
    except (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError) as exc:
        raise PhotoError(f"{name}: not a readable image ({exc})") from None
    return rgb


def load_photo(path: str | Path, *, min_side: int = 1) -> np.ndarray:
    """read_photo then decode_photo: a photo file as HxWx3 uint8, every check applied."""
    return decode_photo(read_photo(path), str(path), min_side=min_side)
