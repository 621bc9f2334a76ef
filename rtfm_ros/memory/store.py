"""FrameMemory: the world as a growing set of posed frames, in RAM and (optionally) on disk.

Poses, intrinsics, stamps and sources always stay in RAM (about 200 bytes a frame), so spatial
queries and context juggling never touch the disk. Pixels live in an LRU cache bounded by
``ram_budget_bytes``; frames beyond it stay only in the attached world file and are paged back
in by :meth:`FrameMemory.get`. A memory with a budget but no world file spills to a private
temporary world file (deleted on close) the first time the budget overflows. Every added
frame is appended to the attached world file in its own transaction, so a crash loses at most
the frame being added.

Clock policy: a frame's ``stamp`` is when its pixels were captured, in seconds on the clock of
whoever supplied them (message time for topics and bags, simulation time for envs, the wall
clock when none is given). Stamps are recorded and saved, never compared across sources: how
recent a frame is (context juggling's tie-break towards newer frames) is its insertion order.
"""

from __future__ import annotations

import dataclasses
import logging
import shutil
import tempfile
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from rtfm_ros.geometry import MAX_POSITION_M, PinholeCamera
from rtfm_ros.memory import juggling
from rtfm_ros.memory.errors import WorldFileError
from rtfm_ros.memory.frame import SOURCES, Frame, FrameError, check_frame, readonly
from rtfm_ros.memory.spatial_index import SpatialIndex
from rtfm_ros.memory.world_file import WorldFile, save_world
from rtfm_ros.memory.world_schema import FrameRecord, StorageFormats, encode_record

_log = logging.getLogger(__name__)


class FrameMemory:
    """Posed frames with spatial queries, context selection, RAM budget and world-file backing.

    ``FrameMemory()`` lives in RAM only; ``FrameMemory(path)`` starts a new world file at
    ``path``; :meth:`open` resumes an existing one. Frame ids are 0, 1, 2, ... in insertion order.
    """

    def __init__(self, path: str | Path | None = None, ram_budget_bytes: int | None = None, *,
                 model: str | None = None, meta: dict[str, Any] | None = None, image_format: str = "png",
                 image_quality: int = 95, depth_format: str = "npz32") -> None:
        if ram_budget_bytes is not None and ram_budget_bytes < 0:
            raise FrameError(f"ram_budget_bytes must be >= 0, got {ram_budget_bytes}")
        self.ram_budget_bytes = ram_budget_bytes
        self._formats = StorageFormats(image_format=image_format, image_quality=image_quality,
                                       depth_format=depth_format)
        self._model, self._meta = model, dict(meta or {})
        self._lock = threading.RLock()
        self._world: WorldFile | None = None
        self._spill_dir: str | None = None
        self.last_save_skipped: list[int] = []
        self._reset()
        if path is not None:
            self._world = WorldFile.create(path, model=model, meta=self._meta, **self._formats)

    def _reset(self) -> None:
        self._n = 0
        self._poses = np.empty((256, 4, 4))
        self._intr = np.empty((256, 6))
        self._stamps = np.empty(256)
        self._sources = np.empty(256, dtype=np.uint8)
        self._cameras: list[PinholeCamera] = []
        self._pixels: OrderedDict[int, tuple[np.ndarray, np.ndarray | None]] = OrderedDict()
        self._pixel_bytes = 0
        self._index = SpatialIndex()
        self._unusable = np.empty(0, dtype=np.int64)  # loaded frames whose pose no view can use

    # ---------------------------------------------------------------- opening / saving
    @classmethod
    def open(cls, path: str | Path, ram_budget_bytes: int | None = None, *, writable: bool = True,
             check: str = "quick") -> FrameMemory:
        """Resume a world file: index (poses etc.) loaded and verified now, pixels paged in on use.

        With ``writable`` (default) frames added later are appended to the file; a read-only
        memory refuses add(). ``check`` is passed to WorldFile.open ('quick', 'full' or 'none').
        """
        world = WorldFile.open(path, writable=writable, check=check)
        try:
            poses, intr, stamps, sources = world.read_index()
            mem = cls(None, ram_budget_bytes, model=world.meta.get("model"), meta=world.meta.get("user"),
                      image_format=world.meta["image_format"], image_quality=world.meta["image_quality"],
                      depth_format=world.meta["depth_format"])
            mem._load_index(poses, intr, stamps, sources)
        except BaseException:
            world.close()
            raise
        mem._world = world
        return mem

    def _load_index(self, poses: np.ndarray, intr: np.ndarray, stamps: np.ndarray, sources: list[str]) -> None:
        n = poses.shape[0]
        self._grow(n)
        self._poses[:n], self._intr[:n], self._stamps[:n] = poses, intr, stamps
        codes = {s: i for i, s in enumerate(SOURCES)}
        try:
            self._sources[:n] = [codes[s] for s in sources]
        except KeyError as exc:
            raise WorldFileError(f"world has a frame with unknown source {exc}") from None
        cams: dict[tuple[float, ...], PinholeCamera] = {}
        for row in map(tuple, intr):
            if row not in cams:
                cams[row] = PinholeCamera(int(row[0]), int(row[1]), *row[2:])
            self._cameras.append(cams[row])
        self._n = n
        self._index.extend(poses[:, :3, 3])
        self._index.rebuild()
        # Written before positions were bounded: kept in the world, never used as context.
        self._unusable = np.flatnonzero(np.abs(poses[:, :3, 3]).max(axis=1, initial=0.0) > MAX_POSITION_M)
        if self._unusable.size:
            _log.warning("%d frame(s) of this world lie beyond %g m and are ignored: ids %s",
                         self._unusable.size, MAX_POSITION_M, self._unusable[:10].tolist())

    @property
    def unusable_frames(self) -> list[int]:
        """Ids of loaded frames whose pose is out of range (kept in the world, never rendered from)."""
        return self._unusable.tolist()

    @property
    def path(self) -> Path | None:
        """The attached world file, if any (None for a private spill file)."""
        return None if self._world is None or self._spill_dir else self._world.path

    @property
    def meta(self) -> dict[str, Any]:
        """Caller metadata saved with the world (JSON values)."""
        return dict(self._meta)

    def save(self, path: str | Path, *, meta: dict[str, Any] | None = None,
             progress: Callable[[int], None] | None = None) -> Path:
        """Write every frame to a new world file at ``path`` atomically (the old file survives a failed save).

        Frames already in the attached world are copied as stored (no re-encoding). A frame
        whose stored pixels are corrupt is re-encoded from RAM if it is resident, else left out
        (logged, ids in :attr:`last_save_skipped`; later frames move down one id) so one bad
        frame never makes the rest unsaveable. Saving to the attached path itself only updates
        the metadata.
        """
        with self._lock:
            if meta is not None:
                self._meta = dict(meta)
            if self._world is not None and Path(path).resolve() == self._world.path.resolve():
                self._world.set_meta(user=self._meta, model=self._model)
                return self._world.path
            self.last_save_skipped = []
            saved = save_world(path, self._records(self.last_save_skipped), model=self._model, meta=self._meta,
                               progress=progress, **self._formats)
            if self.last_save_skipped:
                _log.warning("saved %s without %d corrupt frame(s): ids %s", saved, len(self.last_save_skipped),
                             self.last_save_skipped[:10])
            return saved

    def _records(self, skipped: list[int] | None = None) -> Iterator[FrameRecord]:
        """Every frame as a record; with ``skipped``, corrupt stored frames are listed there and left out."""
        out = 0
        for i in range(self._n):
            if self._world is None:
                rgb, depth = self._pixels[i]
                rec = self._encode(i, rgb, depth)
            else:
                try:
                    rec = self._world.read_record(i)
                except WorldFileError:
                    if skipped is None:
                        raise
                    if i not in self._pixels:
                        skipped.append(i)
                        continue
                    rec = self._encode(i, *self._pixels[i])
            yield rec if rec.id == out else dataclasses.replace(rec, id=out)
            out += 1

    def _encode(self, i: int, rgb: np.ndarray, depth: np.ndarray | None) -> FrameRecord:
        return encode_record(i, self._poses[i], self._intr[i], float(self._stamps[i]), SOURCES[self._sources[i]],
                             rgb, depth, self._formats)

    def attach(self, path: str | Path) -> None:
        """Save everything to a new world at ``path`` and append every later frame to it."""
        with self._lock:
            if self.path is not None:
                raise WorldFileError(f"memory is already attached to {self.path}")
            save_world(path, self._records(), model=self._model, meta=self._meta, **self._formats)
            old, old_spill = self._world, self._spill_dir
            self._world, self._spill_dir = WorldFile.open(path, writable=True, check="none"), None
            if old is not None:
                old.close()
            if old_spill is not None:
                shutil.rmtree(old_spill, ignore_errors=True)
            self._evict()

    def _spill(self) -> None:
        """Page out to a private temporary world file (no world attached, budget full)."""
        spill_dir = tempfile.mkdtemp(prefix="rtfm_spill_")
        try:
            self.attach(Path(spill_dir) / "spill.rtfm")
        except BaseException:
            shutil.rmtree(spill_dir, ignore_errors=True)
            raise
        self._spill_dir = spill_dir

    def close(self) -> None:
        """Detach from the world file (everything added so far is already in it).

        Frames of a private spill file are lost with it: save() first to keep them.
        """
        with self._lock:
            if self._world is not None:
                self._world.close()
                self._world = None
            if self._spill_dir is not None:
                shutil.rmtree(self._spill_dir, ignore_errors=True)
                self._spill_dir = None
                self._reset()

    def __enter__(self) -> FrameMemory:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---------------------------------------------------------------- adding and reading frames
    def _grow(self, extra: int) -> None:
        need = self._n + extra
        if need <= self._poses.shape[0]:
            return
        cap = max(need, 2 * self._poses.shape[0])
        for name in ("_poses", "_intr", "_stamps", "_sources"):
            old = getattr(self, name)
            new = np.empty((cap,) + old.shape[1:], dtype=old.dtype)
            new[: self._n] = old[: self._n]
            setattr(self, name, new)

    def add(self, rgb: np.ndarray, T_world_camera: np.ndarray, camera: PinholeCamera, *, stamp: float,
            source: str, depth: np.ndarray | None = None) -> int:
        """Store a frame (validated first; appended to the attached world) and return its id."""
        rgb, T, stamp_f, depth = check_frame(rgb, T_world_camera, camera, stamp, source, depth)
        size = rgb.nbytes + (0 if depth is None else depth.nbytes)
        with self._lock:
            if (self._world is None and self.ram_budget_bytes is not None
                    and self._pixel_bytes + size > self.ram_budget_bytes):
                self._spill()
            i = self._n
            self._grow(1)
            self._poses[i] = T
            self._intr[i] = (camera.width, camera.height, camera.fx, camera.fy, camera.cx, camera.cy)
            self._stamps[i] = stamp_f
            self._sources[i] = SOURCES.index(source)
            if self._world is not None:
                self._world.append([self._encode(i, rgb, depth)])  # raises before anything is counted
            self._cameras.append(camera)
            self._n = i + 1
            self._index.add(T[:3, 3])
            self._cache(i, readonly(rgb), None if depth is None else readonly(depth))
            return i

    def _cache(self, i: int, rgb: np.ndarray, depth: np.ndarray | None) -> None:
        self._pixels[i] = (rgb, depth)
        self._pixel_bytes += rgb.nbytes + (0 if depth is None else depth.nbytes)
        self._evict(keep=i)

    def _evict(self, keep: int | None = None) -> None:
        """Drop least-recently-used pixels beyond the budget; never ``keep``."""
        if self._world is None or self.ram_budget_bytes is None:
            return
        while self._pixels and self.nbytes_pixels > self.ram_budget_bytes:
            oldest = next(iter(self._pixels))
            if oldest == keep:
                break
            rgb, depth = self._pixels.pop(oldest)
            self._pixel_bytes -= rgb.nbytes + (0 if depth is None else depth.nbytes)

    def _check_id(self, frame_id: int) -> int:
        if not isinstance(frame_id, (int, np.integer)) or not 0 <= frame_id < self._n:
            raise KeyError(f"no frame with id {frame_id!r} (memory holds ids 0..{self._n - 1})")
        return int(frame_id)

    def get(self, frame_id: int) -> Frame:
        """The frame, paging its pixels in from the world file when they are not in RAM."""
        with self._lock:
            i = self._check_id(frame_id)
            if i in self._pixels:
                self._pixels.move_to_end(i)
                rgb, depth = self._pixels[i]
            else:
                assert self._world is not None, "pixels missing without a world file"
                rgb, depth = self._world.read_pixels(i)
                rgb, depth = readonly(rgb), None if depth is None else readonly(depth)
                self._cache(i, rgb, depth)
            pose = readonly(self._poses[i].copy())
            return Frame(i, rgb, pose, self._cameras[i], float(self._stamps[i]), SOURCES[self._sources[i]],
                         depth)

    def is_resident(self, frame_id: int) -> bool:
        """Whether the frame's pixels are in RAM now."""
        return int(frame_id) in self._pixels

    def __len__(self) -> int:
        return self._n

    def __iter__(self) -> Iterator[int]:
        return iter(range(self._n))

    def __contains__(self, frame_id: object) -> bool:
        return isinstance(frame_id, (int, np.integer)) and 0 <= int(frame_id) < self._n

    def clear(self) -> None:
        """Forget every frame and detach from the world file (the file itself is left as it is)."""
        with self._lock:
            self.close()
            self._reset()

    def __del__(self) -> None:
        spill = getattr(self, "_spill_dir", None)
        if spill:
            shutil.rmtree(spill, ignore_errors=True)

    # ---------------------------------------------------------------- geometry (RAM only)
    def pose(self, frame_id: int) -> np.ndarray:
        pose: np.ndarray = self._poses[self._check_id(frame_id)].copy()
        return pose

    def camera(self, frame_id: int) -> PinholeCamera:
        return self._cameras[self._check_id(frame_id)]

    def poses(self) -> np.ndarray:
        """(N, 4, 4) copy of every pose, in id order."""
        return self._poses[: self._n].copy()

    def intrinsics(self) -> np.ndarray:
        """(N, 6) rows (width, height, fx, fy, cx, cy)."""
        return self._intr[: self._n].copy()

    def stamps(self) -> np.ndarray:
        return self._stamps[: self._n].copy()

    def source(self, frame_id: int) -> str:
        """Where a frame came from: one of SOURCES (seed, observed, generated)."""
        return SOURCES[int(self._sources[self._check_id(frame_id)])]

    def within_radius(self, position: np.ndarray, radius: float) -> list[int]:
        """Ids of frames whose camera is within ``radius`` metres of ``position``."""
        return [int(i) for i in self._index.within(position, radius)]

    def nearest(self, position: np.ndarray, k: int) -> list[int]:
        """Ids of the k frames whose cameras are nearest ``position``, nearest first."""
        return [int(i) for i in self._index.nearest(position, k)]

    def context_candidates(self, T_world_camera: np.ndarray, depth_hint: float = 3.0,
                           candidates: int = 64) -> np.ndarray:
        """Ids near the camera and near the centre of its frustum (half each) from the spatial index."""
        return self._index.frustum_candidates(T_world_camera, depth_hint, candidates)

    def select_context(self, T_world_camera: np.ndarray, camera: PinholeCamera, budget: int, *,
                       depth_hint: float = 3.0, candidates: int = 64, favour_recent: bool = True,
                       generated_prior: float = 1.0) -> list[int]:
        """Frame ids to condition the model on for this view, best first (see juggling.select_context).

        ``favour_recent`` prefers later-added frames among equals (insertion order, not stamps:
        see the clock policy above). ``generated_prior`` < 1 trusts generated views less than seeded and observed ones
        (except a generated view at exactly the target pose, which a revisit must find).
        """
        with self._lock:
            n = self._n
            cand = self.context_candidates(T_world_camera, depth_hint, candidates)
            if self._unusable.size:
                cand = np.setdiff1d(cand, self._unusable)
            priors = None
            if generated_prior != 1.0:
                priors = np.where(self._sources[:n] == SOURCES.index("generated"), generated_prior, 1.0)
            return juggling.select_context(
                T_world_camera, camera, self._poses[:n], self._intr[:n], budget,
                stamps=np.arange(n, dtype=np.float64) if favour_recent else None, depth_hint=depth_hint,
                candidate_indices=cand, priors=priors)

    def should_remember(self, T_world_camera: np.ndarray, camera: PinholeCamera, **kwargs: float) -> bool:
        """Whether a view at this pose adds something new (see juggling.should_remember)."""
        return juggling.should_remember(T_world_camera, camera, self, **kwargs)

    # ---------------------------------------------------------------- sizes
    @property
    def nbytes_pixels(self) -> int:
        """Bytes of pixels held in RAM now."""
        return self._pixel_bytes

    @property
    def nbytes(self) -> int:
        """Bytes held in RAM: index arrays plus resident pixels."""
        n = self._n
        index = (self._poses[:n].nbytes + self._intr[:n].nbytes + self._stamps[:n].nbytes
                 + self._sources[:n].nbytes + 8 * n + len(self._index) * 24)
        return index + self.nbytes_pixels
