"""Nearest-position queries over camera positions that stay fast while the world grows.

A scipy cKDTree holds most points; points added since the last build sit in a small buffer
searched by brute force. The tree is rebuilt when the buffer outgrows a fraction of it, so an
insert costs amortised O(log n) and a query costs one tree query plus a short linear scan.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree


class SpatialIndex:
    """Positions (ids 0..n-1 in insertion order) with k-nearest and radius queries."""

    def __init__(self, rebuild_fraction: float = 0.1, min_buffer: int = 256, max_buffer: int = 8192) -> None:
        self._empty()
        self.rebuild_fraction = rebuild_fraction
        self.min_buffer = min_buffer
        self.max_buffer = max_buffer

    def _empty(self) -> None:
        self._points = np.empty((1024, 3))
        self._n = 0
        self._tree: cKDTree | None = None
        self._n_tree = 0

    def __len__(self) -> int:
        return self._n

    @property
    def points(self) -> np.ndarray:
        """(n, 3) read-only view of the indexed positions."""
        v = self._points[: self._n]
        v.flags.writeable = False
        return v

    def extend(self, positions: np.ndarray) -> None:
        """Append positions (m, 3); rebuilds the tree when the unindexed buffer is too long."""
        p = np.asarray(positions, dtype=np.float64).reshape(-1, 3)
        if not np.all(np.isfinite(p)):
            raise ValueError("spatial index positions must be finite")
        need = self._n + p.shape[0]
        if need > self._points.shape[0]:
            grown = np.empty((max(need, 2 * self._points.shape[0]), 3))
            grown[: self._n] = self._points[: self._n]
            self._points = grown
        self._points[self._n: need] = p
        self._n = need
        limit = max(self.min_buffer, min(self.max_buffer, int(self.rebuild_fraction * self._n_tree)))
        if self._n - self._n_tree > limit:
            self.rebuild()

    def add(self, position: np.ndarray) -> None:
        self.extend(np.asarray(position, dtype=np.float64).reshape(1, 3))

    def rebuild(self) -> None:
        """Index every point in the tree (empties the brute-force buffer)."""
        if self._n_tree == self._n:
            return
        pts = self._points[: self._n].copy()
        self._tree = cKDTree(pts, balanced_tree=False, compact_nodes=False) if self._n else None
        self._n_tree = self._n

    def clear(self) -> None:
        self._empty()

    def nearest(self, point: np.ndarray, k: int) -> np.ndarray:
        """Ids of the k nearest positions, nearest first (ties: lower id first)."""
        ids: np.ndarray = self.nearest_many(np.asarray(point, dtype=np.float64).reshape(1, 3), k)[0]
        return ids

    def frustum_candidates(self, T_world_camera: np.ndarray, depth_hint: float = 3.0,
                           candidates: int = 64) -> np.ndarray:
        """Unique ids near a camera and near the centre of its frustum (half of ``candidates`` each)."""
        if self._n <= max(1, candidates // 2):  # each half holds every id (a small world): no query needed
            return np.arange(self._n, dtype=np.int64)
        T = np.asarray(T_world_camera, dtype=np.float64)
        eye = T[:3, 3]
        return np.unique(self.nearest_many(np.stack([eye, eye + T[:3, 2] * depth_hint]), max(1, candidates // 2)))

    def nearest_many(self, points: np.ndarray, k: int) -> np.ndarray:
        """(m, k') ids of the k' = min(k, n) nearest positions of each of m query points (one tree query)."""
        q = np.asarray(points, dtype=np.float64).reshape(-1, 3)
        k = min(int(k), self._n)
        if k <= 0:
            return np.empty((q.shape[0], 0), dtype=np.int64)
        dists, ids = [], []
        if self._tree is not None and self._n_tree:
            kt = min(k, self._n_tree)
            d, i = self._tree.query(q, k=[j + 1 for j in range(kt)])
            dists.append(d * d)
            ids.append(i.astype(np.int64))
        if self._n > self._n_tree:
            buf = self._points[self._n_tree: self._n]
            d2 = ((buf[None, :, :] - q[:, None, :]) ** 2).sum(axis=2)          # m B
            if d2.shape[1] > k:
                part = np.argpartition(d2, k - 1, axis=1)[:, :k]
            else:
                part = np.broadcast_to(np.arange(d2.shape[1]), d2.shape)
            dists.append(np.take_along_axis(d2, part, axis=1))
            ids.append(part.astype(np.int64) + self._n_tree)
        d_all = np.concatenate(dists, axis=1)
        i_all = np.concatenate(ids, axis=1)
        order = np.lexsort((i_all, d_all), axis=1)[:, :k]
        return np.take_along_axis(i_all, order, axis=1)

    def within(self, point: np.ndarray, radius: float) -> np.ndarray:
        """Ids of positions within ``radius`` (inclusive), sorted by id."""
        q = np.asarray(point, dtype=np.float64).reshape(3)
        if radius < 0:
            raise ValueError(f"radius must be >= 0, got {radius}")
        found = []
        if self._tree is not None and self._n_tree:
            found.append(np.asarray(self._tree.query_ball_point(q, radius), dtype=np.int64))
        if self._n > self._n_tree:
            buf = self._points[self._n_tree: self._n] - q
            d2 = np.einsum("ij,ij->i", buf, buf)
            found.append(np.flatnonzero(d2 <= radius * radius).astype(np.int64) + self._n_tree)
        if not found:
            return np.empty(0, dtype=np.int64)
        return np.sort(np.concatenate(found))
