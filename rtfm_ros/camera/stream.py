"""The camera stream: timer ticks handed to one render thread, TF at the tick's time, batched renders.

A tick never blocks: it hands its render time (and the config of that moment) to the render
thread through a queue of one, or counts a dropped tick when the thread is still busy, so the
rate never drifts. The thread looks every camera up in TF at that time (one shared wait of
tf_timeout), renders the cameras that share a render size in one batched call on the
RenderWorker and publishes each camera's outputs stamped with the tick's time.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Mapping
from typing import Any, Protocol

import numpy as np

from rtfm_ros.camera.cameras import CameraSpec
from rtfm_ros.camera.config import CameraNodeConfig
from rtfm_ros.camera.status import RenderStats
from rtfm_ros.camera.worker import RenderWorker, View
from rtfm_ros.geometry import body_to_optical
from rtfm_ros.tf_buffer import ExtrapolationError, TransformLookupError

THROTTLE_S = 5.0
Job = tuple[CameraSpec, set[str]]  # a camera and the topics to fill this tick


class PoseSource(Protocol):
    """Where camera poses come from (the node: TF; rtfm_ros.ros.tf_source.TfSource)."""

    def note_time(self, now_ns: int) -> bool:
        """Record the current time; True when time jumped backwards and the poses were forgotten."""
        ...

    def lookup(self, target: str, source: str, stamp_ns: int, timeout_s: float) -> np.ndarray:
        """T_target_source at stamp_ns, waiting up to timeout_s (TransformLookupError when not known)."""
        ...


class CameraSink(Protocol):
    """Where one camera's views go (the node: its publishers, rtfm_ros.ros.outputs.CameraOutputs)."""

    def enabled(self, config: CameraNodeConfig) -> set[str]:
        """What to fill this tick ('image', 'depth', 'points', 'rect', ...); empty: skip the camera."""
        ...

    def publish(self, spec: CameraSpec, view: View, stamp_ns: int, config: CameraNodeConfig,
                wanted: set[str]) -> None:
        ...


class RenderStream:
    """One render thread fed by ticks; publishes through each camera's CameraSink."""

    def __init__(self, worker: RenderWorker, tf: PoseSource, outputs: Mapping[str, CameraSink], stats: RenderStats,
                 log: Any) -> None:
        self.worker, self.tf, self.outputs, self.stats, self.log = worker, tf, outputs, stats, log
        self._jobs: queue.Queue[Any] = queue.Queue(maxsize=1)
        self._idle = threading.Event()
        self._idle.set()
        self._thread = threading.Thread(target=self._loop, name="rtfm_render", daemon=True)
        self._thread.start()

    def tick(self, now_ns: int, config: CameraNodeConfig, cameras: tuple[CameraSpec, ...]) -> None:
        """Hand the render time now_ns to the render thread, or count why not."""
        if now_ns <= 0:  # sim time before the first /clock message
            self.stats.skip("clock not started")
            return
        if self.tf.note_time(now_ns):
            self.stats.tf_resets += 1
            self.log.warning("time jumped backwards (bag loop or simulator reset): TF buffer cleared")
        if len(self.worker.world.memory) == 0:
            self.stats.skip("empty world")
            self.log.info("the world is empty: waiting for seed images or ~/load_world", throttle_duration_sec=30.0)
            return
        jobs = [(s, w) for s in cameras if (w := self.outputs[s.name].enabled(config))]
        if not jobs:
            self.stats.skip("no subscribers")
            return
        if not self._idle.is_set():
            self.stats.dropped += 1
            return
        self._idle.clear()
        self._jobs.put_nowait((now_ns, jobs, config))

    def stop(self, timeout_s: float) -> bool:
        """Stop the thread (a long render is abandoned between tiles); True if it ended within timeout_s."""
        self.worker.stopping.set()
        try:
            self._jobs.put_nowait(None)
        except queue.Full:
            pass
        self._thread.join(timeout_s)
        return not self._thread.is_alive()

    def _loop(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            try:
                self._render(*job)
            except Exception as e:  # noqa: BLE001 - keep the camera alive whatever one frame does
                self.stats.skip("render error")
                self.log.error(f"render failed: {type(e).__name__}: {e}", throttle_duration_sec=THROTTLE_S)
            finally:
                self._idle.set()

    def _render(self, stamp_ns: int, jobs: list[Job], config: CameraNodeConfig) -> None:
        posed: list[tuple[CameraSpec, set[str], np.ndarray]] = []
        deadline = time.monotonic() + config.tf_timeout  # one wait for all cameras of the tick
        for spec, wanted in jobs:
            try:
                T = self.tf.lookup(config.frame, spec.camera_frame, stamp_ns, max(0.0, deadline - time.monotonic()))
            except TransformLookupError as e:
                self.stats.skip("tf extrapolation" if isinstance(e, ExtrapolationError) else "tf lookup")
                self.log.warning(f"skipping {spec.prefix}image_raw at {stamp_ns / 1e9:.3f} s: {e}",
                                 throttle_duration_sec=THROTTLE_S)
                continue
            posed.append((spec, wanted, body_to_optical(T) if spec.body else T))
        groups: dict[tuple[int, int], list[tuple[CameraSpec, set[str], np.ndarray]]] = {}
        for item in posed:
            rc = item[0].sensor.lens.render_camera
            groups.setdefault((rc.width, rc.height), []).append(item)
        published, seconds = 0, 0.0
        for group in groups.values():
            wanted = set().union(*(w for _, w, _ in group))
            views, s = self.worker.render_batch(
                [T for _, _, T in group], [spec.sensor for spec, _, _ in group],
                remember=config.remember_generated, want_depth=bool(wanted & {"depth", "points"}),
                want_rect="rect" in wanted, depth_source=config.depth_source, tolerance=config.depth_tolerance)
            seconds += s
            for (spec, w, _), view in zip(group, views):
                self.outputs[spec.name].publish(spec, view, stamp_ns, config, w)
                published += 1
        if published:
            self.stats.add_render(seconds, published, len(groups))
