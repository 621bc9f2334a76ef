"""The clip dataset format: posed image sequences in checksummed safetensors shards.

A dataset is a directory::

    index.json            {"format": "rtfm-clips", "version": 1, "resolution": [H, W],
                           "shards": [{"file", "sha256", "bytes", "clips", "frames": [N, ...]}],
                           "num_clips", "num_frames", "info": {generator settings, seeds, ...}}
    shard-00000.safetensors   clip0000/rgb (N,H,W,3 uint8), clip0000/T_world_camera (N,4,4 f64),
                              clip0000/K (N,3,3 f64), clip0000/stamps (N f64),
                              clip0000/depth (N,H,W f32, only when present), clip0001/...
                              metadata: {"rtfm_clips": JSON {"format", "version", "clips",
                                                             "meta": [per-clip meta, ...]}}

Why this shape: safetensors holds raw arrays with a JSON header (no pickle, zero-copy reads),
shards keep file counts low while allowing random access to a clip, and the sha256 per shard
catches truncated or corrupt copies before training silently eats garbage. Shards and the
index are written to a temporary name and renamed, so a crash never leaves a half-written file
under a real name; index.json is written last, so a dataset without it is incomplete.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from safetensors import safe_open
from safetensors.numpy import save_file

from rtfm_ros.atomic import atomic_path, write_text_atomic
from rtfm_ros.checksum import file_sha256
from rtfm_ros.geometry import PinholeCamera

FORMAT = "rtfm-clips"
VERSION = 1
INDEX = "index.json"
META_KEY = "rtfm_clips"
ARRAYS = ("rgb", "T_world_camera", "K", "stamps", "depth")


class DatasetError(ValueError):
    """A clip or dataset that is malformed, corrupt or incomplete."""


@dataclass
class Clip:
    """One posed image sequence. Poses are T_world_camera with optical axes."""

    rgb: np.ndarray  # N,H,W,3 uint8
    T_world_camera: np.ndarray  # N,4,4 float64
    K: np.ndarray  # N,3,3 float64 per-frame intrinsics
    stamps: np.ndarray  # N float64 seconds
    depth: np.ndarray | None = None  # N,H,W float32 planar z metres (None for photos)
    meta: dict[str, Any] = field(default_factory=dict[str, Any])  # JSON-able

    def __post_init__(self) -> None:
        self.rgb = np.asarray(self.rgb)
        if self.rgb.dtype != np.uint8 or self.rgb.ndim != 4 or self.rgb.shape[-1] != 3:
            raise DatasetError(f"clip rgb must be N,H,W,3 uint8, got {self.rgb.shape} {self.rgb.dtype}")
        n, h, w = self.rgb.shape[:3]
        if n < 1:
            raise DatasetError("a clip needs at least one frame")
        self.T_world_camera = np.asarray(self.T_world_camera, dtype=np.float64)
        self.K = np.asarray(self.K, dtype=np.float64)
        self.stamps = np.asarray(self.stamps, dtype=np.float64)
        for name, arr, shape in (("T_world_camera", self.T_world_camera, (n, 4, 4)), ("K", self.K, (n, 3, 3)),
                                 ("stamps", self.stamps, (n,))):
            if arr.shape != shape:
                raise DatasetError(f"clip {name} must have shape {shape}, got {arr.shape}")
            if not np.all(np.isfinite(arr)):
                raise DatasetError(f"clip {name} has non-finite values")
        if self.depth is not None:
            self.depth = np.asarray(self.depth, dtype=np.float32)
            if self.depth.shape != (n, h, w):
                raise DatasetError(f"clip depth must have shape {(n, h, w)}, got {self.depth.shape}")
        try:
            json.dumps(self.meta, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise DatasetError(f"clip meta must be JSON-able: {exc}") from exc

    def __len__(self) -> int:
        return int(self.rgb.shape[0])

    @property
    def resolution(self) -> tuple[int, int]:
        """(height, width)."""
        return int(self.rgb.shape[1]), int(self.rgb.shape[2])

    def camera(self, i: int) -> PinholeCamera:
        """Frame i's intrinsics as a PinholeCamera."""
        h, w = self.resolution
        K = self.K[i]
        return PinholeCamera(w, h, K[0, 0], K[1, 1], K[0, 2], K[1, 2])


def shard_name(index: int) -> str:
    return f"shard-{index:05d}.safetensors"


def write_shard(path: str | Path, clips: Sequence[Clip]) -> dict[str, Any]:
    """Write clips to one safetensors shard atomically; returns its index.json entry."""
    path = Path(path)
    if not clips:
        raise DatasetError(f"refusing to write an empty shard {path}")
    tensors: dict[str, np.ndarray] = {}
    for j, clip in enumerate(clips):
        for name in ARRAYS:
            arr = getattr(clip, name)
            if arr is not None:
                tensors[f"clip{j:04d}/{name}"] = np.ascontiguousarray(arr)
    # One metadata entry: safetensors writes several in hash order, which would make the bytes
    # (and the checksum) differ between identical runs.
    header = {"format": FORMAT, "version": VERSION, "clips": len(clips), "meta": [c.meta for c in clips]}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={META_KEY: json.dumps(header, sort_keys=True)})
    return {"file": path.name, "sha256": file_sha256(path), "bytes": path.stat().st_size,
            "clips": len(clips), "frames": [len(c) for c in clips]}


def write_index(out_dir: str | Path, shards: list[dict[str, Any]], *, resolution: tuple[int, int],
                info: dict[str, Any]) -> Path:
    """Write index.json (last step of a dataset write); returns the dataset directory."""
    out = Path(out_dir)
    index = {"format": FORMAT, "version": VERSION, "resolution": [int(resolution[0]), int(resolution[1])],
             "num_clips": sum(s["clips"] for s in shards), "num_frames": sum(sum(s["frames"]) for s in shards),
             "shards": shards, "info": info}
    try:
        text = json.dumps(index, indent=1, sort_keys=True, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise DatasetError(f"dataset info must be JSON-able: {exc}") from exc
    write_text_atomic(out / INDEX, text)
    return out


def prepare_output(out_dir: str | Path, overwrite: bool = False) -> Path:
    """Create the output directory; refuse to clobber an existing dataset unless asked."""
    out = Path(out_dir)
    if (out / INDEX).exists():
        if not overwrite:
            raise DatasetError(f"{out} already holds a dataset ({INDEX} exists); choose another directory")
        (out / INDEX).unlink()  # the dataset is incomplete until the new index lands
        for old in out.glob("shard-*.safetensors"):
            old.unlink()
    out.mkdir(parents=True, exist_ok=True)
    return out


def write_dataset(out_dir: str | Path, clips_iterable: Iterable[Clip], *, clips_per_shard: int = 16,
                  info: dict[str, Any], overwrite: bool = False) -> Path:
    """Write clips as a sharded dataset; all clips must share one resolution. Returns the directory."""
    if clips_per_shard < 1:
        raise DatasetError(f"clips_per_shard must be >= 1, got {clips_per_shard}")
    out = prepare_output(out_dir, overwrite)
    shards: list[dict[str, Any]] = []
    buf: list[Clip] = []
    resolution: tuple[int, int] | None = None
    for clip in clips_iterable:
        if not isinstance(clip, Clip):
            raise DatasetError(f"expected Clip objects, got {type(clip).__name__}")
        if resolution is None:
            resolution = clip.resolution
        elif clip.resolution != resolution:
            raise DatasetError(f"all clips of a dataset share one resolution: {clip.resolution} != {resolution}")
        buf.append(clip)
        if len(buf) == clips_per_shard:
            shards.append(write_shard(out / shard_name(len(shards)), buf))
            buf = []
    if buf:
        shards.append(write_shard(out / shard_name(len(shards)), buf))
    if resolution is None:
        raise DatasetError(f"no clips to write to {out}")
    return write_index(out, shards, resolution=resolution, info=info)


class ClipDataset:
    """Read access to a verified dataset directory: len, resolution, clip(i), iteration."""

    def __init__(self, root: str | Path, verify: bool = True) -> None:
        self.root = Path(root)
        path = self.root / INDEX
        if not path.is_file():
            raise DatasetError(f"{path} not found: not a clip dataset (or an incomplete one)")
        try:
            self.index = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise DatasetError(f"{path} is not valid JSON: {exc}") from exc
        if not isinstance(self.index, dict) or self.index.get("format") != FORMAT:
            raise DatasetError(f"{path} is not an {FORMAT} index")
        if self.index.get("version") != VERSION:
            raise DatasetError(f"{path} has format version {self.index.get('version')}, this code reads {VERSION}")
        self.shards: list[dict[str, Any]] = self.index["shards"]
        self._where: list[tuple[int, int]] = []
        self._meta: list[list[dict[str, Any]]] = []
        for s, shard in enumerate(self.shards):
            self._check_shard(shard, verify)
            self._where.extend((s, j) for j in range(int(shard["clips"])))

    def _check_shard(self, shard: dict[str, Any], verify: bool) -> None:
        path = self.root / shard["file"]
        if not path.is_file():
            raise DatasetError(f"shard {path} is missing")
        if path.stat().st_size != shard["bytes"]:
            raise DatasetError(f"shard {path} has {path.stat().st_size} bytes, index says {shard['bytes']} "
                               "(truncated?)")
        if verify and file_sha256(path) != shard["sha256"]:
            raise DatasetError(f"shard {path} fails its sha256 check (corrupt)")
        try:
            with safe_open(str(path), framework="numpy") as f:
                header = json.loads((f.metadata() or {})[META_KEY])
        except Exception as exc:  # safetensors raises its own error types for bad headers
            raise DatasetError(f"shard {path} has a bad safetensors header: {exc}") from exc
        if header.get("format") != FORMAT or header.get("clips") != shard["clips"]:
            raise DatasetError(f"shard {path} metadata does not match the index")
        self._meta.append(header["meta"])

    def __len__(self) -> int:
        return len(self._where)

    @property
    def resolution(self) -> tuple[int, int]:
        """(height, width) shared by every clip."""
        h, w = self.index["resolution"]
        return int(h), int(w)

    @property
    def info(self) -> dict[str, Any]:
        info: dict[str, Any] = self.index.get("info", {})
        return info

    @property
    def clip_lengths(self) -> list[int]:
        """Frames per clip, in clip order (no shard reads)."""
        return [n for s in self.shards for n in s["frames"]]

    @property
    def num_frames(self) -> int:
        return int(self.index["num_frames"])

    def clip(self, i: int, frames: slice | Sequence[int] | np.ndarray | None = None) -> Clip:
        """Clip i (negative indices count from the end); ``frames`` loads only some frames."""
        n = len(self)
        if not -n <= i < n:
            raise IndexError(f"clip index {i} out of range for {n} clips")
        s, j = self._where[i]
        path = self.root / self.shards[s]["file"]
        key = f"clip{j:04d}"
        sel: slice | np.ndarray | None = None
        if isinstance(frames, slice):
            sel = frames
        elif frames is not None:
            idx = np.asarray(frames, dtype=np.int64).reshape(-1)
            sel = idx
        try:
            with safe_open(str(path), framework="numpy") as f:
                keys = set(f.keys())
                out = {}
                for name in ARRAYS:
                    full = f"{key}/{name}"
                    if full not in keys:
                        continue
                    if sel is None:
                        out[name] = f.get_tensor(full)
                    elif isinstance(sel, slice):
                        out[name] = f.get_slice(full)[sel]
                    else:
                        lo, hi = int(sel.min()), int(sel.max()) + 1
                        out[name] = f.get_slice(full)[lo:hi][sel - lo]
        except Exception as exc:
            raise DatasetError(f"cannot read {key} from shard {path}: {exc}") from exc
        if "rgb" not in out:
            raise DatasetError(f"shard {path} lacks {key}/rgb")
        return Clip(rgb=out["rgb"], T_world_camera=out["T_world_camera"], K=out["K"], stamps=out["stamps"],
                    depth=out.get("depth"), meta=copy.deepcopy(self._meta[s][j]))

    def __getitem__(self, i: int) -> Clip:
        return self.clip(i)

    def __iter__(self) -> Iterator[Clip]:
        for i in range(len(self)):
            yield self.clip(i)


def open_dataset(path: str | Path, verify: bool = True) -> ClipDataset:
    """Open and verify (sizes, sha256, headers) a clip dataset directory."""
    return ClipDataset(path, verify=verify)
