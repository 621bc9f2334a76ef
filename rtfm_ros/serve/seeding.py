"""Where a served world starts: the demo room, photos on disk, or photos uploaded from the page.

Every photo, from disk or from a browser, goes through :func:`decode_photo` (format, size and
decoding checked before anything uses it) and :func:`frames_from_photos`; a transforms.json is
parsed by the dataset importer's own parser. Uploaded names are only keys that match photos to
transforms.json entries: they never reach the file system.
"""

from __future__ import annotations

import io
import json
import math
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np

from rtfm_ros.geometry import MAX_RESOLUTION, PinholeCamera, look_at

PHOTO_FORMATS = ("JPEG", "PNG", "WEBP")
MIN_SIDE = 8
MAX_PHOTOS = 256
ORIGIN_POSE = look_at([0.0, 0.0, 1.0], [1.0, 0.0, 1.0])  # 1 m up, looking along +x (as `rtfm demo`)


class SeedError(ValueError):
    """Photos or a transforms.json that cannot seed a world."""


@dataclass(frozen=True)
class SeedFrame:
    """One posed frame to put in an empty world (pixels as given; the world resizes them)."""

    rgb: np.ndarray
    T_world_camera: np.ndarray
    camera: PinholeCamera
    depth: np.ndarray | None = None
    source: str = "seed"


def decode_photo(data: bytes, name: str) -> np.ndarray:
    """HxWx3 uint8 from JPEG / PNG / WebP bytes; the size is checked before the pixels are decoded."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as im:
            if im.format not in PHOTO_FORMATS:
                raise SeedError(f"{name}: not a {' / '.join(PHOTO_FORMATS)} image (got {im.format})")
            w, h = im.size
            if not (MIN_SIDE <= w <= MAX_RESOLUTION and MIN_SIDE <= h <= MAX_RESOLUTION):
                raise SeedError(f"{name}: {w}x{h} pixels; each side must be {MIN_SIDE}..{MAX_RESOLUTION}")
            rgb = np.asarray(im.convert("RGB"), dtype=np.uint8)
    except SeedError:
        raise
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise SeedError(f"{name}: not a readable image ({exc})") from None
    return rgb


def frames_from_photos(photos: dict[str, bytes], transforms: bytes | None, fov_deg: float) -> list[SeedFrame]:
    """One photo at the origin (horizontal ``fov_deg``), or several placed by a transforms.json.

    ``photos`` maps a file name (any folders are dropped) to its bytes.
    """
    from rtfm_ros.data.importers import transforms_frames

    if not photos:
        raise SeedError("no photos given")
    if len(photos) > MAX_PHOTOS:
        raise SeedError(f"{len(photos)} photos; at most {MAX_PHOTOS}")
    by_name = {PurePosixPath(n.replace("\\", "/")).name: data for n, data in photos.items()}
    if transforms is None:
        if len(by_name) != 1:
            raise SeedError(f"{len(by_name)} photos but no transforms.json: give one photo, "
                            "or a transforms.json that places each photo")
        if not 0.0 < fov_deg < 180.0 or not math.isfinite(fov_deg):
            raise SeedError(f"field of view must be in (0, 180) degrees, got {fov_deg}")
        (name, data), = by_name.items()
        rgb = decode_photo(data, name)
        return [SeedFrame(rgb, ORIGIN_POSE, PinholeCamera.from_fov(rgb.shape[1], rgb.shape[0], fov_deg))]
    try:
        spec = json.loads(transforms.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SeedError(f"transforms.json is not valid JSON: {exc}") from None

    def load(file_path: str) -> np.ndarray:
        name = PurePosixPath(file_path.replace("\\", "/")).name
        data = by_name.get(name)
        if data is None:  # NeRF-synthetic style paths omit the extension
            data = next((d for n, d in by_name.items() if PurePosixPath(n).stem == name), None)
        if data is None:
            raise SeedError(f"transforms.json names {file_path!r}, which is not among the photos")
        return decode_photo(data, name)

    try:
        rows = transforms_frames(spec, load, "transforms.json", max_frames=MAX_PHOTOS)
    except SeedError:
        raise
    except ValueError as exc:  # the importer's ImportDataError and geometry errors
        raise SeedError(str(exc)) from None
    return [SeedFrame(rgb, T, cam) for _, rgb, T, cam in rows]


def frames_from_paths(paths: list[str], fov_deg: float) -> list[SeedFrame]:
    """`--seed-images`: one photo, photos plus their transforms.json, or a transforms.json folder."""
    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            if not (p / "transforms.json").is_file():
                raise FileNotFoundError(f"{p} is a folder without a transforms.json")
            spec = json.loads((p / "transforms.json").read_text())
            files.append(p / "transforms.json")
            files += [p / str(fr.get("file_path", "")) for fr in spec.get("frames", []) if isinstance(fr, dict)]
        elif p.is_file():
            files.append(p)
        else:
            raise FileNotFoundError(f"seed image {p} not found")
    jsons = [f for f in files if f.suffix == ".json"]
    if len(jsons) > 1:
        raise SeedError(f"more than one transforms.json: {', '.join(map(str, jsons))}")
    photos = {}
    for f in files:
        if f.suffix != ".json":
            if not f.is_file() and not f.suffix and f.with_suffix(".png").is_file():
                f = f.with_suffix(".png")
            photos[f.name] = f.read_bytes()
    return frames_from_photos(photos, jsons[0].read_bytes() if jsons else None, fov_deg)


def demo_frames(seed: int, camera: PinholeCamera) -> list[SeedFrame]:
    """A procedural MuJoCo room seen by ``camera``: a turn on the spot at the start, a few views along a loop."""
    from rtfm_ros.geometry import compose, level_turn, make_transform
    from rtfm_ros.sim.renderer import WorldRenderer
    from rtfm_ros.sim.trajectories import make_trajectory
    from rtfm_ros.sim.worlds import make_world

    world = make_world(seed, "room")
    traj = make_trajectory(world, "loop", 64, seed).T_world_camera

    turns = [compose(traj[0], make_transform(level_turn(a))) for a in np.radians(np.arange(0, 360, 30))]
    poses = turns + list(traj[8:32:8])  # a level camera turning on the spot, then along the loop
    frames = []
    with WorldRenderer(world, camera) as gt:
        for T in poses:
            rgb, depth = gt.render(T)
            frames.append(SeedFrame(rgb, T, camera, depth))
    return frames
