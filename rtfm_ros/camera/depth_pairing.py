"""Seed images paired with the depth image stamped nearest them, as the two arrive on their topics.

Why a pairing of its own: a robot's RGB-D driver publishes colour and registered depth on two
topics, in either order, and either may drop a message. An image takes the depth stamped within
DEPTH_SYNC_NS of it (as `rtfm data import` and `rtfm replay` pair them); while no depth has come
yet (no depth topic, or not yet), images go on alone; once depth flows, an image waits for its
depth until the depth stream has passed its stamp, until STALE_NS of later images have come, or
until MAX_PENDING images wait, and then goes on alone (its depth from stereo, like any photo).
"""

from __future__ import annotations

from collections import deque
from typing import Generic, TypeVar

import numpy as np

from rtfm_ros.data.depth_maps import DEPTH_SYNC_NS, nearest_stamp

T = TypeVar("T")

STALE_NS = 500_000_000   # an image still unpaired this long after a later image goes on alone
MAX_PENDING = 8
KEPT_DEPTHS = 16


class DepthPairing(Generic[T]):
    """Feed it images (any item with a stamp) and depth maps; each call returns the images now
    ready to add, each with its depth or None."""

    def __init__(self) -> None:
        self._depths: deque[tuple[int, np.ndarray]] = deque(maxlen=KEPT_DEPTHS)
        self._pending: list[tuple[int, T]] = []

    @property
    def waiting(self) -> int:
        return len(self._pending)

    def image(self, stamp_ns: int, item: T) -> list[tuple[T, np.ndarray | None]]:
        """This image (with its depth, or alone) and any waiting ones it makes stale; or nothing
        while it waits for its depth."""
        out: list[tuple[T, np.ndarray | None]] = [(it, None) for t, it in self._pending if t < stamp_ns - STALE_NS]
        self._pending = [(t, it) for t, it in self._pending if t >= stamp_ns - STALE_NS]
        depth = self._match(stamp_ns)
        if depth is not None or not self._depths or stamp_ns < self._depths[-1][0] - DEPTH_SYNC_NS:
            return out + [(item, depth)]  # paired; no depth flowing; or the depth stream is past it
        self._pending.append((stamp_ns, item))
        while len(self._pending) > MAX_PENDING:
            out.append((self._pending.pop(0)[1], None))
        return out

    def depth(self, stamp_ns: int, depth: np.ndarray) -> list[tuple[T, np.ndarray | None]]:
        """The waiting images this depth pairs with, and those it shows will get none."""
        self._depths.append((stamp_ns, depth))
        out: list[tuple[T, np.ndarray | None]] = []
        keep = []
        for t, it in self._pending:
            d = self._match(t)
            if d is not None:
                out.append((it, d))
            elif t < stamp_ns - DEPTH_SYNC_NS:
                out.append((it, None))
            else:
                keep.append((t, it))
        self._pending = keep
        return out

    def _match(self, stamp_ns: int) -> np.ndarray | None:
        k = nearest_stamp(np.array([t for t, _ in self._depths], dtype=np.int64), stamp_ns)
        return None if k is None else self._depths[k][1]
