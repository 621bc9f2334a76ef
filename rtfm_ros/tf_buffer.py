"""A transform buffer with tf2's semantics, in plain Python (no ROS needed).

tf2_ros is not available everywhere the project runs (bag replay, training machines), so the
camera node and bag replay share this buffer: a tree of frames, each with one parent; dynamic
edges keep a time-ordered cache of samples and are interpolated (linear translation + SLERP);
static edges are valid at all times. ``lookup(target, source, t)`` returns ``T_target_source``
(maps source-frame coordinates into the target frame), like ``tf2_ros.Buffer.lookup_transform``.

Deliberate differences from tf2: a frame keeps one parent until the dynamic cache is cleared
(tf2 lets the parent change between samples) and may not mix static and dynamic samples; both
are refused with ``FrameTreeError`` so a misconfigured publisher shows at once. As in tf2, a
repeated stamp and a sample older than the cache window are ignored (set_transform -> False).

Time jumps: the node's clock going back (note_time) clears the dynamic tree at once. Message
stamps alone are weaker evidence, so one stale sample can neither reset nor reshape the tree:
every sample is checked against the tree as it is (a stale sample naming a second parent is
refused, never allowed onto an emptied tree), and a sample far behind the newest is held
until a second such sample confirms that time went back (a bag loop); a current sample in
between drops it as late.
"""

from __future__ import annotations

import bisect
import threading
import time
from dataclasses import dataclass, field

import numpy as np

from rtfm_ros.geometry import GeometryError, interpolate, invert, validate_transform

NS_PER_S = 1_000_000_000
# A dynamic sample this far (beyond the cache window) behind the newest one means time jumped
# back (bag loop, simulator reset) rather than a late message.
DEFAULT_JUMP_THRESHOLD_S = 1.0
# Samples far behind the newest, in a row, that confirm a jump back in message time.
JUMP_CONFIRMATIONS = 2


class FrameTreeError(GeometryError):
    """A transform that would break the frame tree (second parent, loop, bad frame name)."""


class TransformLookupError(LookupError):
    """A transform that cannot be computed from the data held (base of the lookup errors)."""


class FrameNotFound(TransformLookupError):
    """A frame the buffer has never seen."""


class ConnectivityError(TransformLookupError):
    """Both frames exist but lie in different trees."""


class ExtrapolationError(TransformLookupError):
    """The requested time lies outside the data held for some edge of the chain."""


def _fmt_s(stamp_ns: int) -> str:
    return f"{stamp_ns / NS_PER_S:.9f} s"


def _check_stamp(stamp_ns: object, name: str = "stamp_ns") -> int:
    if isinstance(stamp_ns, bool) or not isinstance(stamp_ns, (int, np.integer)):
        raise GeometryError(f"{name} must be an integer number of nanoseconds, got {stamp_ns!r}")
    if stamp_ns < 0:
        raise GeometryError(f"{name} must be >= 0, got {stamp_ns}")
    return int(stamp_ns)


def clean_frame_id(frame_id: str) -> str:
    """Frame name without leading '/' (tf2 strips it); empty names are refused."""
    if not isinstance(frame_id, str):
        raise FrameTreeError(f"frame id must be a string, got {type(frame_id).__name__}")
    name = frame_id.lstrip("/")
    if not name.strip():
        raise FrameTreeError(f"frame id {frame_id!r} is empty")
    return name


def _ancestors(edges: dict[str, _Edge], frame: str) -> list[str]:
    """frame, its parent, ... up to the root."""
    chain = [frame]
    while frame in edges:
        frame = edges[frame].parent
        chain.append(frame)
    return chain


@dataclass
class _Edge:
    """T_parent_child over time: one matrix if static, else sorted samples."""

    parent: str
    static: bool
    stamps: list[int] = field(default_factory=list)
    matrices: list[np.ndarray] = field(default_factory=list)

    def insert(self, stamp_ns: int, T: np.ndarray, cache_ns: int) -> bool:
        if self.static:
            self.stamps, self.matrices = [stamp_ns], [T]
            return True
        if self.stamps and stamp_ns < self.stamps[-1] - cache_ns:
            return False  # older than the window: tf2 drops it too
        i = bisect.bisect_left(self.stamps, stamp_ns)
        if i < len(self.stamps) and self.stamps[i] == stamp_ns:
            return False  # repeated stamp: keep the first, as tf2 does
        self.stamps.insert(i, stamp_ns)
        self.matrices.insert(i, T)
        cut = bisect.bisect_left(self.stamps, self.stamps[-1] - cache_ns)
        if cut:
            del self.stamps[:cut], self.matrices[:cut]
        return True

    def at(self, stamp_ns: int, child: str) -> np.ndarray:
        if self.static:
            return self.matrices[0]
        first, last = self.stamps[0], self.stamps[-1]
        if stamp_ns < first or stamp_ns > last:
            way = "past" if stamp_ns < first else "future"
            raise ExtrapolationError(
                f"lookup would require extrapolation into the {way}: requested time {_fmt_s(stamp_ns)} "
                f"but transform {self.parent} -> {child} is only available from {_fmt_s(first)} "
                f"to {_fmt_s(last)} ({len(self.stamps)} samples)"
            )
        i = bisect.bisect_left(self.stamps, stamp_ns)
        if self.stamps[i] == stamp_ns:
            return self.matrices[i]
        t0, t1 = self.stamps[i - 1], self.stamps[i]
        return interpolate(self.matrices[i - 1], self.matrices[i], (stamp_ns - t0) / (t1 - t0))


class TransformBuffer:
    """Thread-safe tf2-style buffer: writers (subscription callbacks) and readers (render thread)."""

    def __init__(self, cache_time_s: float = 10.0, jump_threshold_s: float = DEFAULT_JUMP_THRESHOLD_S):
        if not cache_time_s > 0 or not np.isfinite(cache_time_s):
            raise GeometryError(f"cache_time_s must be a positive number, got {cache_time_s}")
        if not jump_threshold_s >= 0 or not np.isfinite(jump_threshold_s):
            raise GeometryError(f"jump_threshold_s must be >= 0, got {jump_threshold_s}")
        self.cache_ns = int(round(cache_time_s * NS_PER_S))
        self.jump_ns = int(round(jump_threshold_s * NS_PER_S))
        self._edges: dict[str, _Edge] = {}
        self._noted_ns: int | None = None  # last clock time given to note_time
        self._resets = 0
        self._held: list[tuple[str, str, int, np.ndarray]] = []  # behind-the-window samples awaiting confirmation
        self._cond = threading.Condition(threading.RLock())

    # ------------------------------------------------------------------ writing
    def set_transform(
        self, parent: str, child: str, stamp_ns: int, T_parent_child: np.ndarray, static: bool = False
    ) -> bool:
        """Store T_parent_child at stamp_ns; False when tf2 would ignore it (stale or repeated) or
        when it is held as a possible jump back in time (stored once a second one confirms it).

        Raises GeometryError (bad matrix or stamp) or FrameTreeError (bad names, second parent,
        loop, static/dynamic mix) and leaves the buffer unchanged in that case.
        """
        parent, child = clean_frame_id(parent), clean_frame_id(child)
        stamp_ns = _check_stamp(stamp_ns)
        if parent == child:
            raise FrameTreeError(f"transform from frame {child!r} to itself is refused")
        try:
            T = np.array(T_parent_child, dtype=np.float64)
        except (TypeError, ValueError) as e:
            raise GeometryError(f"transform {parent} -> {child} is not a numeric 4x4 matrix: {e}") from e
        T = validate_transform(T, name=f"transform {parent} -> {child}")
        T.setflags(write=False)
        with self._cond:
            edge = self._check_tree(parent, child, static)
            if edge is not None and not static and stamp_ns < edge.stamps[-1] - self.cache_ns - self.jump_ns:
                # Far behind this edge's newest sample: a bag loop or sim reset, or one stale message.
                # Held samples are of edges already in the tree with the same parent, so after the
                # reset they rebuild part of that same tree: nothing they hold can conflict.
                self._held.append((parent, child, stamp_ns, T))
                if len(self._held) < JUMP_CONFIRMATIONS:
                    return False
                held, self._held = self._held, []
                self._clear_dynamic()
                self._resets += 1
                for p, c, t, m in held:
                    stored = self._store(p, c, t, m, False, self._edges.get(c))
                return stored
            if edge is not None and not static:
                self._held = []  # a current sample: what was held was only late
            return self._store(parent, child, stamp_ns, T, static, edge)

    def _check_tree(self, parent: str, child: str, static: bool) -> _Edge | None:
        """The child's edge, after refusing a second parent, a static/dynamic mix or a loop."""
        edge = self._edges.get(child)
        if edge is not None and edge.parent != parent:
            raise FrameTreeError(
                f"frame {child!r} already has parent {edge.parent!r}; refusing a second parent "
                f"{parent!r} (each frame has exactly one parent in a transform tree)"
            )
        if edge is not None and edge.static != static:
            kinds = ("static", "dynamic") if edge.static else ("dynamic", "static")
            raise FrameTreeError(f"transform {parent} -> {child} is {kinds[0]}; refusing a {kinds[1]} sample for it")
        if edge is None and child in _ancestors(self._edges, parent):
            raise FrameTreeError(f"transform {parent} -> {child} would close a loop in the frame tree")
        return edge

    def _store(self, parent: str, child: str, stamp_ns: int, T: np.ndarray, static: bool,
               edge: _Edge | None) -> bool:
        if edge is None:
            edge = _Edge(parent=parent, static=static)
            self._edges[child] = edge
        stored = edge.insert(stamp_ns, T, self.cache_ns)
        self._cond.notify_all()
        return stored

    def note_time(self, stamp_ns: int) -> bool:
        """Tell the buffer the clock; a jump back by more than jump_threshold_s clears the dynamic cache.

        Returns True when it cleared. Call it with the node's clock (sim time / bag time).
        """
        stamp_ns = _check_stamp(stamp_ns)
        with self._cond:
            jumped = self._noted_ns is not None and stamp_ns < self._noted_ns - self.jump_ns
            if jumped:
                self._clear_dynamic()
                self._resets += 1
            self._noted_ns = stamp_ns
            return jumped

    def clear(self, include_static: bool = False) -> None:
        """Forget dynamic transforms (and static ones too if asked), like tf2's Buffer.clear()."""
        with self._cond:
            self._clear_dynamic()
            if include_static:
                self._edges.clear()

    @property
    def resets(self) -> int:
        """How many times a backwards time jump cleared the dynamic cache."""
        return self._resets

    def _clear_dynamic(self) -> None:
        self._edges = {c: e for c, e in self._edges.items() if e.static}
        self._held = []

    # ------------------------------------------------------------------ reading
    def frames(self) -> set[str]:
        """Every frame name seen, as parent or child."""
        with self._cond:
            return set(self._edges) | {e.parent for e in self._edges.values()}

    def parent_of(self, frame: str) -> str | None:
        """The parent of frame, or None for a root (or unknown) frame."""
        with self._cond:
            edge = self._edges.get(clean_frame_id(frame))
            return None if edge is None else edge.parent

    def time_range(self, parent: str, child: str) -> tuple[int, int] | None:
        """(oldest, newest) stamps held for the dynamic edge parent -> child; None if static/absent."""
        with self._cond:
            edge = self._edges.get(clean_frame_id(child))
            if edge is None or edge.static or edge.parent != clean_frame_id(parent):
                return None
            return edge.stamps[0], edge.stamps[-1]

    def _known_or_raise(self, frame: str, role: str) -> None:
        if frame in self._edges or any(e.parent == frame for e in self._edges.values()):
            return
        known = sorted(set(self._edges) | {e.parent for e in self._edges.values()})
        listing = ", ".join(known) if known else "(none yet)"
        raise FrameNotFound(f"{role} frame {frame!r} does not exist; known frames: {listing}")

    def _paths(self, target: str, source: str) -> tuple[list[str], list[str]]:
        """Frames from source and from target up to (not including) their common ancestor."""
        self._known_or_raise(target, "target")
        self._known_or_raise(source, "source")
        up_s, up_t = _ancestors(self._edges, source), _ancestors(self._edges, target)
        if up_s[-1] != up_t[-1]:
            raise ConnectivityError(
                f"frames {target!r} and {source!r} are not connected: {target!r} is in the tree rooted "
                f"at {up_t[-1]!r}, {source!r} in the tree rooted at {up_s[-1]!r}"
            )
        on_t = set(up_t)
        common = next(f for f in up_s if f in on_t)
        return up_s[: up_s.index(common)], up_t[: up_t.index(common)]

    def _latest_common(self, chain: list[str]) -> int:
        dynamic = [self._edges[c] for c in chain if not self._edges[c].static]
        return min(e.stamps[-1] for e in dynamic) if dynamic else 0

    def latest_common_time(self, a: str, b: str) -> int:
        """Newest stamp at which a <-> b can be looked up (0 when the chain is all static)."""
        a, b = clean_frame_id(a), clean_frame_id(b)
        with self._cond:
            if a == b:
                return 0
            from_b, from_a = self._paths(a, b)
            return self._latest_common(from_b + from_a)

    def lookup(self, target_frame: str, source_frame: str, stamp_ns: int = 0) -> np.ndarray:
        """T_target_source at stamp_ns (0 = latest common time); raises TransformLookupError."""
        target, source = clean_frame_id(target_frame), clean_frame_id(source_frame)
        stamp_ns = _check_stamp(stamp_ns)
        with self._cond:
            if target == source:
                return np.eye(4)
            from_source, from_target = self._paths(target, source)
            if stamp_ns == 0:
                stamp_ns = self._latest_common(from_source + from_target)
            T_common_source = np.eye(4)
            for child in reversed(from_source):
                T_common_source = T_common_source @ self._edges[child].at(stamp_ns, child)
            T_common_target = np.eye(4)
            for child in reversed(from_target):
                T_common_target = T_common_target @ self._edges[child].at(stamp_ns, child)
        return invert(T_common_target) @ T_common_source

    def can_transform(self, target_frame: str, source_frame: str, stamp_ns: int = 0) -> bool:
        """Whether lookup(target_frame, source_frame, stamp_ns) would succeed now."""
        try:
            self.lookup(target_frame, source_frame, stamp_ns)
        except TransformLookupError:
            return False
        return True

    def wait_for(self, target_frame: str, source_frame: str, stamp_ns: int = 0, timeout_s: float = 1.0) -> np.ndarray:
        """lookup(), waiting up to timeout_s for the data to arrive; raises the last lookup error."""
        deadline = time.monotonic() + max(0.0, timeout_s)
        with self._cond:
            while True:
                try:
                    return self.lookup(target_frame, source_frame, stamp_ns)
                except TransformLookupError:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        raise
                    self._cond.wait(left)
