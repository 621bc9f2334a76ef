"""The camera stream: ticks handed to one render thread, each camera posed by TF, batched renders.

A tick never blocks: it hands its render time (and the config of that moment) to the render
thread, or counts a dropped tick when the thread is still busy, so the rate never drifts. In
lockstep (a tick at every period of /clock) ticks queue up, up to lockstep_queue, and are rendered
and published in order. The thread poses every camera for the tick (camera/posing.py: the tick's
time, or the newest pose within tf_tolerance, stamped with its own time; one shared wait of
tf_timeout), renders the cameras that share a render size in one batched call on the
RenderWorker and publishes each camera's outputs with its stamp.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from rtfm_ros.camera.cameras import CameraSpec
from rtfm_ros.camera.config import CameraNodeConfig
from rtfm_ros.camera.posing import PoseSource, PoseTiming
from rtfm_ros.camera.rig import StereoError, right_offset
from rtfm_ros.camera.status import RenderStats
from rtfm_ros.camera.worker import RenderWorker, View
from rtfm_ros.geometry import body_to_optical
from rtfm_ros.tf_buffer import ExtrapolationError, TransformLookupError

__all__ = ["CameraSink", "ClockTicks", "PoseSource", "RenderStream"]

THROTTLE_S = 5.0
Job = tuple[CameraSpec, set[str]]  # a camera and the topics to fill this tick


class CameraSink(Protocol):
    """Where one camera's views go (the node: its publishers, rtfm_ros.ros.outputs.CameraOutputs)."""

    def enabled(self, config: CameraNodeConfig) -> set[str]:
        """What to fill this tick ('image', 'depth', 'points', 'rect', ...); empty: skip the camera."""
        ...

    def publish(self, spec: CameraSpec, view: View, stamp_ns: int, config: CameraNodeConfig,
                wanted: set[str]) -> None:
        ...


@dataclass
class Shot:
    """One camera to render this tick: its optical pose, stamp and (right camera of a pair) baseline."""

    spec: CameraSpec
    wanted: set[str]
    T: np.ndarray
    stamp_ns: int
    baseline: float = 0.0


class ClockTicks:
    """Lockstep's ticks: every multiple of the period after the first clock time seen.

    A clock that jumps ahead several periods at once yields every tick it passed, in order, so a
    simulator stepping /clock in a burst loses none; a clock that goes back restarts the ticks there.
    """

    def __init__(self) -> None:
        self._last: int | None = None

    def due(self, now_ns: int, period_ns: int) -> list[int]:
        """The tick times in (last tick, now_ns]."""
        if self._last is None or now_ns < self._last:
            self._last = now_ns
            return [now_ns]
        out = list(range(self._last + period_ns, now_ns + 1, period_ns))
        if out:
            self._last = out[-1]
        return out


class RenderStream:
    """One render thread fed by ticks; publishes through each camera's CameraSink."""

    def __init__(self, worker: RenderWorker, tf: PoseSource, outputs: Mapping[str, CameraSink], stats: RenderStats,
                 log: Any) -> None:
        self.worker, self.tf, self.outputs, self.stats, self.log = worker, tf, outputs, stats, log
        self.timing = PoseTiming(tf)
        self._jobs: queue.Queue[Any] = queue.Queue()
        self._backlog = 0  # ticks queued or rendering (bounded by tick())
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._loop, name="rtfm_render", daemon=True)
        self._thread.start()

    def tick(self, now_ns: int, config: CameraNodeConfig, cameras: tuple[CameraSpec, ...]) -> None:
        """Hand the render time now_ns to the render thread, or count why not."""
        self.stats.ticks += 1
        if now_ns <= 0:  # sim time before the first /clock message
            self.stats.skip("clock not started")
            return
        if self.tf.note_time(now_ns):
            self.stats.tf_resets += 1
            self.timing.forget()
            self.log.warning("time jumped backwards (bag loop or simulator reset): TF buffer cleared")
        if len(self.worker.world.memory) == 0:
            self.stats.skip("empty world")
            self.log.info("the world is empty: waiting for seed images or ~/load_world", throttle_duration_sec=30.0)
            return
        jobs = [(s, w) for s in cameras if (w := self.outputs[s.name].enabled(config))]
        if not jobs:
            self.stats.skip("no subscribers")
            return
        limit = config.lockstep_queue if config.lockstep else 1
        with self._lock:
            if self._backlog >= limit:
                self.stats.dropped += 1
                if config.lockstep:
                    self.stats.skip("lockstep queue full")
                return
            self._backlog += 1
            self.stats.backlog = self._backlog
        self._jobs.put_nowait((now_ns, jobs, config, cameras))

    @property
    def backlog(self) -> int:
        """Ticks queued or rendering now."""
        with self._lock:
            return self._backlog

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
                with self._lock:
                    self._backlog -= 1
                    self.stats.backlog = self._backlog

    def _pose(self, spec: CameraSpec, key: str, tick_ns: int, config: CameraNodeConfig,
              deadline: float) -> tuple[np.ndarray, int] | None:
        """(optical T_world_camera, stamp) of one camera for a tick (camera/posing.py), or None (counted)."""
        try:
            p = self.timing.resolve(config.frame, spec.camera_frame, key, tick_ns, tolerance_s=config.tf_tolerance,
                                    deadline=deadline, exact=config.lockstep)
        except TransformLookupError as e:
            self.stats.skip("tf extrapolation" if isinstance(e, ExtrapolationError) else "tf lookup")
            self.log.warning(f"skipping {spec.prefix}image_raw at {tick_ns / 1e9:.3f} s: {e}",
                             throttle_duration_sec=THROTTLE_S)
            return None
        if p.newest:
            self.stats.stamped_newest += 1
        return (body_to_optical(p.T) if spec.body else p.T), p.stamp_ns

    def _pose_right(self, spec: CameraSpec, left: tuple[np.ndarray, int] | None,
                    cameras: tuple[CameraSpec, ...]) -> Shot | None:
        """A stereo pair's right camera: on its left camera's x axis, at the left's stamp (camera/rig.py)."""
        if left is None:
            return None  # the left camera's pose was not found this tick: counted there
        T_left, stamp_ns = left
        left_spec = next(c for c in cameras if c.name == spec.stereo_of)
        try:
            offset, baseline, note = right_offset(self.tf, left_spec, spec, stamp_ns)
        except (TransformLookupError, StereoError) as e:
            self.stats.skip("stereo baseline" if isinstance(e, StereoError) else "tf lookup")
            self.log.warning(f"skipping {spec.prefix}image_raw: {e}", throttle_duration_sec=THROTTLE_S)
            return None
        if note:
            self.log.warning(note, throttle_duration_sec=60.0)
        return Shot(spec, set(), T_left @ offset, stamp_ns, baseline)

    def _render(self, tick_ns: int, jobs: list[Job], config: CameraNodeConfig,
                cameras: tuple[CameraSpec, ...]) -> None:
        shots: list[Shot] = []
        poses: dict[str, tuple[np.ndarray, int] | None] = {}
        deadline = time.monotonic() + config.tf_timeout  # one wait for all cameras of the tick
        for spec, wanted in sorted(jobs, key=lambda j: bool(j[0].stereo_of)):  # left cameras first
            if not spec.stereo_of:
                poses[spec.name] = self._pose(spec, spec.name, tick_ns, config, deadline)
                if (pose := poses[spec.name]) is not None:
                    shots.append(Shot(spec, wanted, *pose))
                continue
            if spec.stereo_of not in poses:  # its left camera publishes nothing this tick: pose it anyway
                left_spec = next(c for c in cameras if c.name == spec.stereo_of)
                poses[spec.stereo_of] = self._pose(left_spec, spec.name, tick_ns, config, deadline)
            if (shot := self._pose_right(spec, poses[spec.stereo_of], cameras)) is not None:
                shot.wanted = wanted
                shots.append(shot)
        groups: dict[tuple[int, int], list[Shot]] = {}  # a stereo pair shares its render size: one call
        for shot in shots:
            rc = shot.spec.sensor.lens.render_camera
            groups.setdefault((rc.width, rc.height), []).append(shot)
        published, seconds = 0, 0.0
        for group in groups.values():
            wanted = set().union(*(sh.wanted for sh in group))
            views, s = self.worker.render_batch(
                [sh.T for sh in group], [sh.spec.sensor for sh in group],
                remember=config.remember_generated, want_depth=bool(wanted & {"depth", "points"}),
                want_rect="rect" in wanted, depth_source=config.depth_source, tolerance=config.depth_tolerance,
                noise=config.depth_noise_model)
            seconds += s
            for sh, view in zip(group, views):
                view.baseline = sh.baseline
                self.outputs[sh.spec.name].publish(sh.spec, view, sh.stamp_ns, config, sh.wanted)
                self.timing.published(sh.spec.name, sh.stamp_ns)
                published += 1
        if published:
            self.stats.add_render(seconds, published, len(groups))
