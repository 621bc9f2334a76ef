"""Where a served world starts: the demo room, photos on disk, or photos uploaded from the page.

A transforms.json may name each frame's depth map (``depth_file_path``: 16-bit PNG or .npy,
``depth_unit_scale_factor``), uploaded or on disk beside the photos, as `rtfm data import`
reads it: the world is then seeded with that depth (an RGB-D capture) instead of stereo's.

Every photo, from disk or from a browser, is decoded by rtfm_ros.photo (format, size and a
JPEG's scans checked before a pixel is decoded) through :class:`PhotoBudget`: an upload names
each photo as often as it likes, but each is decoded once, and the pixels decoded for one
upload are bounded (a few KB of PNG can hold a 4096x4096 image, and a transforms.json may name
it hundreds of times). A transforms.json is parsed by the dataset importer's own parser.
Uploaded names are only keys that match photos to transforms.json entries: they never reach
the file system. Photo files are read by rtfm_ros.photo.read_photo, as `rtfm data import` reads
them (regular files of bounded size only).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np

from rtfm_ros.geometry import PinholeCamera, look_at
from rtfm_ros.photo import PhotoError, decode_photo, read_photo

MIN_SIDE = 8
MAX_PHOTOS = 256
MAX_UPLOAD_PIXELS = 1 << 26  # decoded pixels per upload (~200 MB as RGB): four 4096x4096 photos
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
    name: str = "seed frame"  # what an error about this frame names


class PhotoBudget:
    """Decodes an upload's photos, each once, refusing more than ``max_pixels`` decoded in all."""

    def __init__(self, photos: dict[str, bytes], max_pixels: int = MAX_UPLOAD_PIXELS) -> None:
        self.photos, self.max_pixels = photos, max_pixels
        self._decoded: dict[str, np.ndarray] = {}
        self._pixels = 0

    def __call__(self, name: str) -> np.ndarray:
        if name in self._decoded:
            return self._decoded[name]
        try:
            rgb = decode_photo(self.photos[name], name, min_side=MIN_SIDE)
        except PhotoError as exc:
            raise SeedError(str(exc)) from None
        self._pixels += rgb.shape[0] * rgb.shape[1]
        if self._pixels > self.max_pixels:
            raise SeedError(f"the photos hold more than {self.max_pixels} pixels in all; seed from fewer or "
                            "smaller photos")
        self._decoded[name] = rgb
        return rgb

    def depth(self, name: str, scale: float) -> np.ndarray:
        """The depth map uploaded as ``name`` (16-bit PNG or .npy, depth_maps.decode_depth), its
        pixels counted against the same budget."""
        from rtfm_ros.data.depth_maps import decode_depth

        depth = decode_depth(self.photos[name], name, scale)
        self._pixels += depth.size
        if self._pixels > self.max_pixels:
            raise SeedError(f"the photos and depth maps hold more than {self.max_pixels} pixels in all; seed from "
                            "fewer or smaller ones")
        return depth


def frames_from_photos(photos: dict[str, bytes], transforms: bytes | None, fov_deg: float,
                       max_pixels: int = MAX_UPLOAD_PIXELS) -> list[SeedFrame]:
    """One photo at the origin (horizontal ``fov_deg``), or several placed by a transforms.json.

    ``photos`` maps a file name (any folders are dropped) to its bytes, the depth maps a
    transforms.json names (``depth_file_path``, as `rtfm data import` reads them) among them;
    at most ``max_pixels`` are decoded.
    """
    from rtfm_ros.data.importers import frame_depth, parse_transforms, transforms_frames

    if not photos:
        raise SeedError("no photos given")
    if len(photos) > 2 * MAX_PHOTOS:
        raise SeedError(f"{len(photos)} files; at most {2 * MAX_PHOTOS} (a photo and a depth map each for "
                        f"{MAX_PHOTOS} frames)")
    decode = PhotoBudget({PurePosixPath(n.replace("\\", "/")).name: d for n, d in photos.items()}, max_pixels)
    by_name = decode.photos
    if transforms is None:
        if len(by_name) != 1:
            raise SeedError(f"{len(by_name)} photos but no transforms.json: give one photo, "
                            "or a transforms.json that places each photo")
        if not 0.0 < fov_deg < 180.0 or not math.isfinite(fov_deg):
            raise SeedError(f"field of view must be in (0, 180) degrees, got {fov_deg}")
        (name, _), = by_name.items()
        rgb = decode(name)
        return [SeedFrame(rgb, ORIGIN_POSE, PinholeCamera.from_fov(rgb.shape[1], rgb.shape[0], fov_deg), name=name)]

    def load(file_path: str) -> np.ndarray:
        name = PurePosixPath(file_path.replace("\\", "/")).name
        if name not in by_name:  # NeRF-synthetic style paths omit the extension
            name = next((n for n in by_name if PurePosixPath(n).stem == name), name)
        if name not in by_name:
            raise SeedError(f"transforms.json names {file_path!r}, which is not among the photos")
        return decode(name)

    def load_depth(depth_path: str, scale: float) -> np.ndarray:
        name = PurePosixPath(depth_path.replace("\\", "/")).name
        if name not in by_name:
            raise SeedError(f"transforms.json names the depth map {depth_path!r}, which is not among the files")
        return decode.depth(name, scale)

    try:
        spec = parse_transforms(transforms, "transforms.json")
        rows = transforms_frames(spec, load, "transforms.json", max_frames=MAX_PHOTOS)
        depths = [frame_depth(spec, fr, (rgb.shape[1], rgb.shape[0]), load_depth, f"transforms.json frame {i}")
                  for i, (fr, (_, rgb, _, _)) in enumerate(zip(spec["frames"], rows))]
    except SeedError:
        raise
    except ValueError as exc:  # the importer's ImportDataError and geometry errors
        raise SeedError(str(exc)) from None
    files = [str(fr.get("file_path")) for fr in spec["frames"]]
    return [SeedFrame(rgb, T, cam, depth, name=f"transforms.json frame {i} ({files[i]})")
            for i, ((_, rgb, T, cam), depth) in enumerate(zip(rows, depths))]


def frames_from_paths(paths: list[str], fov_deg: float) -> list[SeedFrame]:
    """`--seed-images`: one photo, photos plus their transforms.json, or a transforms.json folder."""
    from rtfm_ros.data.importers import MAX_TRANSFORMS_BYTES, image_path, parse_transforms

    files: list[Path] = []
    try:
        for p in map(Path, paths):
            if p.is_dir():
                spec_file = p / "transforms.json"
                spec = parse_transforms(read_photo(spec_file, MAX_TRANSFORMS_BYTES), str(spec_file))
                files.append(spec_file)
                frames = spec.get("frames") if isinstance(spec, dict) else None
                files += [image_path(spec_file, str(fr.get("file_path", ""))) for fr in frames or []
                          if isinstance(fr, dict)]
                files += [p / str(fr["depth_file_path"]) for fr in frames or []
                          if isinstance(fr, dict) and "depth_file_path" in fr]
            else:
                files.append(p)
        jsons = [f for f in files if f.suffix == ".json"]
        if len(jsons) > 1:
            raise SeedError(f"more than one transforms.json: {', '.join(map(str, jsons))}")
        photos = {f.name: read_photo(f) for f in files if f.suffix != ".json"}
        transforms = read_photo(jsons[0], MAX_TRANSFORMS_BYTES) if jsons else None
    except PhotoError as exc:
        raise SeedError(f"seed images: {exc}") from None
    return frames_from_photos(photos, transforms, fov_deg)


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
