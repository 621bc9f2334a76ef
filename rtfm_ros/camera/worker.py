"""The ROS-free render worker: the stream's batches, tiled long renders, the node's write-back.

The camera's stream and long requests (a big ``~/render_view``) share one world session
(rtfm_ros.world_session): the model and its memory are used by one render at a time. A long
request is rendered in tiles, each taking the session's lock on its own, and the lock alternates
between the stream and a waiting request, so the stream's images keep coming (one tile late at
most) while a 1024x1024 view is made. Nothing here runs on the ROS executor; status and
diagnostics never take this lock.

Write-back goes through the world's one policy (WorldModel.remember_view, render.stored_depth):
a generated view keeps its depth as the camera publishes it (``depth_source``: checked by default,
since rendered depth fed back as if measured is what grows phantom obstacles), and a failed
write (disk full, read-only file) is counted here while the image is still published.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from rtfm_ros.camera.lens import Lens
from rtfm_ros.camera.sensor import DepthNoise, expose
from rtfm_ros.geometry import PinholeCamera

if TYPE_CHECKING:  # pragma: no cover
    from rtfm_ros.world import WorldModel
    from rtfm_ros.world_session import WorldGate, WorldSession

TILE = 256  # long requests are rendered in tiles of at most TILE x TILE pixels
DEPTH_SOURCES = ("checked", "rendered")


def _turn(R: np.ndarray) -> np.ndarray:
    """4x4 of a rotation (an ideal view's turn within its camera)."""
    T = np.eye(4)
    T[:3, :3] = R
    return T


class Cancelled(RuntimeError):
    """The node is stopping: a long render was abandoned between tiles."""


@dataclass(frozen=True)
class Sensor:
    """How one camera turns an ideal render into its output (lens, rectified view, exposure, noise)."""

    lens: Lens
    rect_camera: PinholeCamera | None = None  # with publish_rect: image_rect rendered with P
    exposure: float = 1.0
    gain_db: float = 0.0
    noise_stddev: float = 0.0

    @property
    def camera(self) -> PinholeCamera:
        return self.lens.camera


@dataclass
class View:
    """One camera's output for one pose."""

    rgb: np.ndarray
    depth: np.ndarray | None = None      # as published (NaN where not trusted)
    rect: np.ndarray | None = None       # image_rect
    baseline: float = 0.0                # metres: the right camera of a stereo pair (its P[0,3] = -fx * baseline)


@dataclass
class WriteBack:
    """Counters of the node's write-back (read by status and diagnostics; approximate under races)."""

    remembered: int = 0
    failures: int = 0
    last_error: str = ""
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def failed(self, e: Exception) -> None:
        with self._lock:
            self.failures += 1
            self.last_error = f"{type(e).__name__}: {e}"


class RenderWorker:
    """Renders the stream's batches and long requests on a WorldModel, never on the ROS executor."""

    def __init__(self, session: WorldSession) -> None:
        self.session = session
        self.write_back = WriteBack()
        self.stopping = threading.Event()
        self._rng = np.random.default_rng()

    @property
    def world(self) -> WorldModel:
        """The session's world now (replaced as a whole, under the lock, when a world file is loaded)."""
        return self.session.world

    @property
    def gate(self) -> WorldGate:
        """The session's lock, taken around every render."""
        return self.session.lock

    # ------------------------------------------------------------------ write-back
    def remember(self, T: np.ndarray, rgb: np.ndarray, camera: PinholeCamera, depth: np.ndarray,
                 depth_source: str, tolerance: float) -> bool:
        """Store a generated view that shows a new place, its depth as depth_source takes it (the
        world's one policy, as published); False when not stored (not new, or the write failed)."""
        try:
            stored = self.world.remember_view(rgb, T, camera, depth, policy=depth_source, tolerance=tolerance,
                                               strict=True)
        except Exception as e:  # noqa: BLE001 - disk full, read-only or closed world file: publish anyway
            self.write_back.failed(e)
            return False
        if stored:
            self.write_back.remembered += 1
        return stored

    def trusted(self, depth: np.ndarray, T: np.ndarray, camera: PinholeCamera, source: str,
                tolerance: float) -> np.ndarray:
        """depth as published: checked against real frames, or as rendered (the world's one policy)."""
        if source not in DEPTH_SOURCES:
            raise ValueError(f"depth_source must be one of {', '.join(DEPTH_SOURCES)}, got {source!r}")
        out = self.world.view_depth(depth, T, camera, policy=source, tolerance=tolerance)
        return np.asarray(out, dtype=np.float32)

    # ------------------------------------------------------------------ the stream
    def render_batch(self, Ts: Sequence[np.ndarray], sensors: Sequence[Sensor], *, remember: bool,
                     want_depth: bool, want_rect: bool, depth_source: str = "checked",
                     tolerance: float = 0.1, noise: DepthNoise | None = None) -> tuple[list[View], float]:
        """One batched render of views that share a render size; (views, model seconds).

        A lens rendered from several ideal views (a wide fisheye's cube faces) adds each of them to
        the batch, at the camera's pose turned by the view's R."""
        flat: list[tuple[int, np.ndarray, PinholeCamera]] = []  # (sensor, pose of the view, its camera)
        for i, (T, s) in enumerate(zip(Ts, sensors)):
            flat += [(i, T @ _turn(v.R), v.camera) for v in s.lens.views]
        rgbs: list[list[np.ndarray]] = [[] for _ in sensors]
        trusted: list[list[np.ndarray]] = [[] for _ in sensors]
        with self.gate.hold(stream=True):
            if len(self.world.memory) == 0:
                return [], 0.0
            images, depths = self.world.render_batch(np.stack([T for _, T, _ in flat]), [c for _, _, c in flat],
                                                     remember=False, return_depth=True)
            seconds = self.world.last_render_seconds
            for (i, T, cam), img, d in zip(flat, images, depths):
                rgbs[i].append(img)
                if want_depth:
                    trusted[i].append(self.trusted(d, T, cam, depth_source, tolerance))
                if remember:
                    self.remember(T, img, cam, d, depth_source, tolerance)
            views = [View(rgbs[i][0], rect=self._rect(T, s) if want_rect else None)
                     for i, (T, s) in enumerate(zip(Ts, sensors))]
        for i, (view, s) in enumerate(zip(views, sensors)):
            view.rgb = self.finish(s.lens.remap(rgbs[i]), s)
            if want_depth:  # the sensor's noise after the check: unknown depth stays unknown
                view.depth = s.lens.remap_depth(trusted[i])
                if noise is not None:
                    view.depth = noise.apply(view.depth, s.camera.fx, self._rng)
            if view.rect is not None:
                view.rect = self.finish(view.rect, s)
        return views, seconds

    def _rect(self, T: np.ndarray, sensor: Sensor) -> np.ndarray | None:
        if sensor.rect_camera is None or not sensor.lens.distorted:
            return None
        return self.world.render(T, sensor.rect_camera, remember=False)

    def finish(self, rgb: np.ndarray, sensor: Sensor) -> np.ndarray:
        return expose(rgb, sensor.exposure, sensor.gain_db, sensor.noise_stddev, self._rng)

    # ------------------------------------------------------------------ long requests
    def render_view(self, T: np.ndarray, camera: PinholeCamera, *, want_depth: bool, remember: bool,
                    depth_source: str = "checked", tolerance: float = 0.1) -> tuple[np.ndarray, np.ndarray | None]:
        """One view of any size within the budget, in tiles that let the stream go between them."""
        h, w = camera.height, camera.width
        need_depth = want_depth or remember  # a remembered view is stored with its depth as published
        rgb = np.zeros((h, w, 3), dtype=np.uint8)
        depth = np.full((h, w), np.nan, dtype=np.float32) if need_depth else None
        for y0 in range(0, h, TILE):
            for x0 in range(0, w, TILE):
                if self.stopping.is_set():
                    raise Cancelled("the node is stopping")
                tw, th = min(TILE, w - x0), min(TILE, h - y0)
                tile = PinholeCamera(tw, th, camera.fx, camera.fy, camera.cx - x0, camera.cy - y0)
                with self.gate.hold():  # every tile blends the frames the whole view would
                    out = self.world.render(T, tile, remember=False, return_depth=need_depth, context_camera=camera)
                img, d = out if need_depth else (out, None)
                rgb[y0:y0 + th, x0:x0 + tw] = img
                if depth is not None:
                    depth[y0:y0 + th, x0:x0 + tw] = d
        published = None
        if depth is not None:
            with self.gate.hold():
                if want_depth:
                    published = self.trusted(depth, T, camera, depth_source, tolerance)
                if remember:
                    self.remember(T, rgb, camera, depth, depth_source, tolerance)
        return rgb, published
