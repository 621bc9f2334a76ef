"""What the node reports on ~/status: render statistics and the floor area the world covers.

Coverage is an estimate that costs nothing per render: the xy footprint of each stored frame's
view frustum between NEAR_M and FAR_M, on CELL_M square cells, counted once per frame (new
frames only, so a status message stays cheap for worlds of 100k frames).
"""

from __future__ import annotations

import statistics
import threading
import time
import weakref
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from rtfm_ros.memory import FrameMemory
from rtfm_ros.memory.juggling import sample_pattern

if TYPE_CHECKING:  # pragma: no cover
    from rtfm_ros.world import WorldModel

CELL_M = 0.5
NEAR_M = 0.3
FAR_M = 4.0
_POINTS = 64
_CHUNK = 4096


def footprint_cells(poses: np.ndarray, intrinsics: np.ndarray) -> set[tuple[int, int]]:
    """CELL_M cells under the frustums of frames (N,4,4 poses; N,6 rows width height fx fy cx cy)."""
    p = sample_pattern(_POINTS)
    cells: set[tuple[int, int]] = set()
    for s in range(0, len(poses), _CHUNK):
        T, K = poses[s: s + _CHUNK], intrinsics[s: s + _CHUNK]
        w, h, fx, fy, cx, cy = (K[:, i: i + 1] for i in range(6))
        z = NEAR_M + p[None, :, 2] * (FAR_M - NEAR_M)
        x = (p[None, :, 0] * w - cx) / fx * z
        y = (p[None, :, 1] * h - cy) / fy * z
        local = np.stack([x, y, np.broadcast_to(z, x.shape)], axis=-1)  # N, P, 3
        world = np.einsum("nij,npj->npi", T[:, :3, :3], local) + T[:, None, :3, 3]
        ij = np.floor(world[..., :2].reshape(-1, 2) / CELL_M).astype(np.int64)
        cells.update(map(tuple, np.unique(ij, axis=0).tolist()))
    return cells


class Coverage:
    """Incremental floor coverage of a FrameMemory (restarts when the memory is replaced or cleared)."""

    def __init__(self) -> None:
        self._memory: weakref.ref[FrameMemory] | None = None  # the memory counted (not kept alive)
        self._done = 0
        self._cells: set[tuple[int, int]] = set()

    def area_m2(self, memory: FrameMemory) -> float:
        n = len(memory)
        if self._memory is None or self._memory() is not memory or n < self._done:
            self._memory, self._done, self._cells = weakref.ref(memory), 0, set()
        if n > self._done:
            self._cells |= footprint_cells(memory.poses()[self._done: n], memory.intrinsics()[self._done: n])
            self._done = n
        return len(self._cells) * CELL_M * CELL_M


def frames_in_ram(memory: FrameMemory) -> int:
    """How many frames have their pixels in RAM now."""
    return sum(1 for i in range(len(memory)) if memory.is_resident(i))


WINDOW_S = 5.0  # rates and latencies are measured over this sliding window


@dataclass
class RenderStats:
    """Counters shared by the timer, the render thread and the status timer (thread-safe).

    Rates come from a sliding window of publish times, not from what happened between two status
    messages: a render longer than the status period must not read as 0 images/s.
    """

    ticks: int = 0             # timer ticks (each is rendered, dropped or skipped)
    rendered: int = 0          # render cycles that published images
    images: int = 0            # image_raw messages published (all cameras)
    batches: int = 0           # render_batch calls
    dropped: int = 0           # ticks dropped because the previous render was still busy (or lockstep's queue full)
    stamped_newest: int = 0    # images stamped with the newest pose's time (TF behind the tick, within tf_tolerance)
    backlog: int = 0           # ticks queued or rendering now (lockstep holds up to lockstep_queue)
    skipped: Counter[str] = field(default_factory=Counter[str])  # ticks or cameras skipped, by reason
    bad_transforms: int = 0
    tf_resets: int = 0
    callback_errors: int = 0   # exceptions caught in callbacks (logged; the node keeps running)
    recent_render_s: deque[Any] = field(default_factory=lambda: deque(maxlen=1000))  # for benchmarks
    _events: deque[Any] = field(default_factory=lambda: deque(maxlen=10_000))  # (time, images, render seconds)
    _start: float = field(default_factory=time.monotonic)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def add_render(self, seconds: float, images: int, batches: int) -> None:
        with self._lock:
            self.rendered += 1
            self.images += images
            self.batches += batches
            self._events.append((time.monotonic(), images, seconds))
            self.recent_render_s.append(seconds)

    def skip(self, reason: str) -> None:
        with self._lock:
            self.skipped[reason] += 1

    def skips(self) -> dict[str, int]:
        """Ticks or cameras skipped so far, by reason (a copy, taken under the lock)."""
        with self._lock:
            return dict(self.skipped)

    @property
    def tf_misses(self) -> int:
        """Cameras skipped because their pose could not be looked up in TF."""
        with self._lock:
            return sum(v for k, v in self.skipped.items() if k.startswith("tf"))

    def period(self, window_s: float = WINDOW_S) -> tuple[float, float]:
        """(median render latency in ms, images per second) over the last window_s seconds.

        The window widens to 2.5 intervals when renders are slower than window_s / 2.5, so a
        camera publishing every 4 s still reads as 0.25 images/s.
        """
        with self._lock:
            now = time.monotonic()
            times = [e[0] for e in list(self._events)[-6:]]
            if len(times) >= 2:
                window_s = max(window_s, 2.5 * statistics.median(b - a for a, b in zip(times, times[1:])))
            recent = [e for e in self._events if e[0] >= now - window_s]
            span = min(window_s, max(now - self._start, 1e-3))
            latency = 1000.0 * statistics.median(e[2] for e in recent) if recent else 0.0
            return latency, sum(e[1] for e in recent) / span


def model_name(world: WorldModel) -> str:
    """The name a world's checkpoint gives its model (for ~/status and the logs)."""
    info = world.checkpoint_info or {}
    return str(info.get("info", {}).get("name") or info.get("model", {}).get("name") or
               f"{world.core.depth_prior.config.name} (untrained)")
