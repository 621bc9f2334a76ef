"""`rtfm_camera`: a ROS 2 camera that follows TF and publishes what the world model renders there.

A timer at ``rate`` takes the node's clock (sim time honoured) as the render time; a worker
thread (queue of one) looks the camera up in TF at that time, renders every camera of the tick
in one batched model call and publishes Image + CameraInfo (+ depth) stamped with that time,
framed in the optical frame. A tick that finds the worker still busy is dropped and counted,
so the rate never drifts and no callback waits for the model. The node is a thin adapter over
the ROS-free RenderWorker (worker.py: fair world lock, tiled long renders, write-back), the
lens and sensor models (lens.py, sensor.py) and the world-file rules (world_files.py: the user's
world is copied, never written unless asked). Every callback turns an exception into a log line
(throttled) and the node keeps running. Spin it with make_executor().
Parameters, services and topics are listed in the README (section "ROS 2 camera node").
"""

from __future__ import annotations

import functools
import os
import queue
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np
import rclpy
from rcl_interfaces.msg import SetParametersResult
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.clock import Clock, ClockType
from rclpy.context import Context
from rclpy.executors import Executor, ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from rtfm_ros_interfaces.msg import WorldStatus
from tf2_msgs.msg import TFMessage

from rtfm_ros.geometry import R_BODY_OPTICAL, GeometryError, body_to_optical, make_transform
from rtfm_ros.ros import node_setup as setup
from rtfm_ros.ros import params as P
from rtfm_ros.ros.conversions import matrix_to_transform_stamped
from rtfm_ros.ros.outputs import CameraOutputs, Diagnostics
from rtfm_ros.ros.services import WorldServices
from rtfm_ros.ros.params import CameraSpec
from rtfm_ros.ros.status import Coverage, RenderStats, frames_in_ram
from rtfm_ros.ros.tf_source import TfSource
from rtfm_ros.ros.worker import RenderWorker, WorldGate
from rtfm_ros.tf_buffer import ExtrapolationError, TransformLookupError

if TYPE_CHECKING:  # pragma: no cover - torch is imported only once the parameters are known good
    from rtfm_ros.ros.world_files import ScratchWorld
    from rtfm_ros.world import WorldModel

NODE_NAME = "rtfm_camera"
THROTTLE_S = 5.0
TF_QOS = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
TF_STATIC_QOS = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE,
                           durability=DurabilityPolicy.TRANSIENT_LOCAL)
STATIC_BROADCAST_QOS = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                                  durability=DurabilityPolicy.TRANSIENT_LOCAL)
# Reliable by default: Fast DDS drops large best-effort samples (1 of 9 640x480 images arrived
# with sensor_data, BENCHMARKS.md). Keep-last 2: a slow subscriber gets the newest images.
IMAGE_QOS = {"sensor_data": qos_profile_sensor_data,
             "reliable": QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=2, reliability=ReliabilityPolicy.RELIABLE)}
STOP_WAIT_S = 1.0  # how long stopping waits for a render in progress before abandoning it


class CameraNode(Node):
    """The camera node. ``world_model`` (optional) replaces the checkpoint/device/world parameters."""

    def __init__(self, world_model: "WorldModel | None" = None, node_name: str = NODE_NAME, **kwargs: Any) -> None:
        super().__init__(node_name, **kwargs)
        self.stats = RenderStats()
        self.gate = WorldGate()
        self.scratch: ScratchWorld | None = None
        self.world_source: Path | None = None  # the user's world file (never written unless asked)
        self.values = {s.name: P.declare(self, s) for s in P.NODE_PARAMS}
        self._cam_values = setup.declare_cameras(self)  # every parameter is checked before the model loads
        self._seed_rows = P.seed_pose_rows(self.values["seed_images"], self.values["seed_poses"])
        self._calibrations = setup.read_calibrations(self._cam_values)
        import torch

        from rtfm_ros.runtime import serving_threads

        torch.set_num_threads(self.values["torch_threads"] or serving_threads())
        self.world = world_model if world_model is not None else setup.load_model(self)
        self.worker = RenderWorker(self.world, self.gate)
        setup.seed_from_parameters(self)
        self.cameras = tuple(setup.build_camera(self, n, v, self.values, at_start=True)
                             for n, v in self._cam_values.items())
        self.tf = TfSource()
        self._coverage = Coverage()

        tf_group = MutuallyExclusiveCallbackGroup()
        on_tf = self.guarded(self._on_tf, "TF ingestion")
        self.create_subscription(TFMessage, "/tf", lambda m: on_tf(m, False), TF_QOS, callback_group=tf_group)
        self.create_subscription(TFMessage, "/tf_static", lambda m: on_tf(m, True), TF_STATIC_QOS,
                                 callback_group=tf_group)
        qos = IMAGE_QOS[self.values["qos"]]
        self._outputs = {spec.name: CameraOutputs(self, spec, qos) for spec in self.cameras}
        self._publish_optical_frames()

        self.world_services = WorldServices(self)
        self._status_pub = self.create_publisher(WorldStatus, "~/status", 10)
        self._diagnostics = Diagnostics(self)
        self._status_timer = self.create_timer(1.0, self.guarded(self._publish_status, "status"),
                                               MutuallyExclusiveCallbackGroup(),
                                               clock=Clock(clock_type=ClockType.STEADY_TIME))

        self._jobs: queue.Queue = queue.Queue(maxsize=1)
        self._idle = threading.Event()
        self._idle.set()
        self._worker = threading.Thread(target=self._render_loop, name="rtfm_render", daemon=True)
        self._worker.start()
        self._timer = self.create_timer(1.0 / self.values["rate"], self.guarded(self._tick, "tick"),
                                        MutuallyExclusiveCallbackGroup())
        self.add_on_set_parameters_callback(self._check_parameters)
        self.add_post_set_parameters_callback(self.guarded(self._apply_parameters, "parameter update"))

        names = ", ".join(f"{s.prefix}image_raw {s.camera.width}x{s.camera.height} in {s.optical_frame}"
                          + (f" ({s.calibration.distortion_model})" if s.calibration else "") for s in self.cameras)
        self.get_logger().info(f"rendering {names} at {self.values['rate']:g} Hz from TF "
                               f"{self.world_frame} -> camera ({self.tf.backend}); model {self.model_name}, "
                               f"device {self.world.device}; image QoS {self.values['qos']}")
        if len(self.world.memory) == 0:
            self.get_logger().warning("the world is empty (no frames from a world file or seed images): nothing "
                                      "is published until it is seeded (~/seed_image, ~/load_world)")
        else:
            where = f" (working copy of {self.world_source}; that file is not written)" if self.world_source else ""
            self.get_logger().info(f"world holds {len(self.world.memory)} frames{where}")

    # ------------------------------------------------------------------ set-up
    @property
    def world_lock(self) -> WorldGate:
        """The lock renders, services and seeds take around the world (status never does)."""
        return self.gate

    @property
    def world_frame(self) -> str:
        return self.values["world_frame"].lstrip("/")

    @property
    def tf_timeout(self) -> float:
        return self.values["tf_timeout"]

    @property
    def model_name(self) -> str:
        info = self.world.checkpoint_info or {}
        return str(info.get("info", {}).get("name") or info.get("model", {}).get("name") or
                   f"{self.world.config.name} (untrained)")

    def guarded(self, fn: Callable[..., Any], what: str) -> Callable[..., Any]:
        """fn as a callback that logs (throttled) and counts any exception instead of raising it."""
        @functools.wraps(fn)
        def run(*args: Any) -> Any:
            try:
                return fn(*args)
            except Exception as e:
                self.stats.callback_errors += 1
                self.get_logger().error(f"{what} failed: {type(e).__name__}: {e} (the node keeps running)",
                                        throttle_duration_sec=THROTTLE_S)
                return None
        return run

    def _publish_optical_frames(self) -> None:
        """Body-axes cameras: camera_frame -> optical frame (REP-103 rotation) on /tf_static."""
        stamp = self.get_clock().now().nanoseconds
        tfs = {s.optical_frame: matrix_to_transform_stamped(make_transform(R_BODY_OPTICAL), s.camera_frame,
                                                            s.optical_frame, stamp)
               for s in self.cameras if s.body}
        self._static_pub = self.create_publisher(TFMessage, "/tf_static", STATIC_BROADCAST_QOS)
        if tfs:
            msg = TFMessage(transforms=list(tfs.values()))
            self.tf.feed(msg, static=True)
            self._static_pub.publish(msg)

    # ------------------------------------------------------------------ parameters at run time
    def _check_parameters(self, parameters: list[Parameter]) -> SetParametersResult:
        try:
            values, cam_values = dict(self.values), {n: dict(v) for n, v in self._cam_values.items()}
            for p in parameters:
                spec = P.spec_for(p.name)
                if spec is None:
                    continue
                value = spec.validate(p.value)
                cam, _, leaf = p.name.rpartition(".")
                if cam:
                    cam_values[cam][leaf] = value
                else:
                    values[p.name] = value
                    if "" in cam_values and p.name in cam_values[""]:
                        cam_values[""][p.name] = value
            cameras = tuple(setup.build_camera(self, n, v, values) for n, v in cam_values.items())
        except Exception as e:  # ConfigError, or anything a bad value provokes: refused, never raised
            reason = str(e) if isinstance(e, P.ConfigError) else f"{type(e).__name__}: {e}"
            self.get_logger().error(f"refused parameter change: {reason}; keeping the previous values")
            return SetParametersResult(successful=False, reason=reason)
        self._pending = (values, cam_values, cameras)
        return SetParametersResult(successful=True)

    def _apply_parameters(self, parameters: list[Parameter]) -> None:
        pending, self._pending = getattr(self, "_pending", None), None
        if pending is None:
            return
        old_rate = self.values["rate"]
        self.values, self._cam_values, self.cameras = pending
        if self.values["rate"] != old_rate:
            self._timer.timer_period_ns = int(1e9 / self.values["rate"])
            self._timer.reset()
        self.get_logger().info("parameters updated: " + ", ".join(f"{p.name}={p.value!r}" for p in parameters))

    # ------------------------------------------------------------------ TF
    def _on_tf(self, msg: TFMessage, static: bool) -> None:
        for err in self.tf.feed(msg, static):
            self.stats.bad_transforms += 1
            self.get_logger().warning(f"{err} ({self.stats.bad_transforms} bad transforms so far)",
                                      throttle_duration_sec=THROTTLE_S)

    # ------------------------------------------------------------------ rendering
    def _tick(self) -> None:
        """Timer callback: never blocks; hands the render time to the worker or counts a dropped tick."""
        now_ns = self.get_clock().now().nanoseconds
        if now_ns <= 0:  # sim time before the first /clock message
            self.stats.skip("clock not started")
            return
        if self.tf.note_time(now_ns):
            self.stats.tf_resets += 1
            self.get_logger().warning("time jumped backwards (bag loop or simulator reset): TF buffer cleared")
        if len(self.world.memory) == 0:
            self.stats.skip("empty world")
            self.get_logger().info("the world is empty: waiting for seed images or ~/load_world",
                                   throttle_duration_sec=30.0)
            return
        jobs = [(s, w) for s in self.cameras if (w := self._outputs[s.name].enabled(self.values, self.values["lazy"]))]
        if not jobs:
            self.stats.skip("no subscribers")
            return
        if not self._idle.is_set():
            self.stats.dropped += 1
            return
        self._idle.clear()
        self._jobs.put_nowait((now_ns, jobs, dict(self.values)))

    def _render_loop(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            try:
                self._render(*job)
            except Exception as e:  # keep the camera alive whatever one frame does
                self.stats.skip("render error")
                self.get_logger().error(f"render failed: {type(e).__name__}: {e}", throttle_duration_sec=THROTTLE_S)
            finally:
                self._idle.set()

    def _render(self, stamp_ns: int, jobs: list[tuple[CameraSpec, set[str]]], values: dict[str, Any]) -> None:
        posed: list[tuple[CameraSpec, set[str], np.ndarray]] = []
        deadline = time.monotonic() + values["tf_timeout"]  # one wait for all cameras of the tick
        for spec, wanted in jobs:
            try:
                wait = max(0.0, deadline - time.monotonic())
                T = self.tf.lookup(self.world_frame, spec.camera_frame, stamp_ns, wait)
            except TransformLookupError as e:
                reason = "tf extrapolation" if isinstance(e, ExtrapolationError) else "tf lookup"
                self.stats.skip(reason)
                self.get_logger().warning(f"skipping {spec.prefix}image_raw at {stamp_ns / 1e9:.3f} s: {e}",
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
                remember=values["remember_generated"], want_depth=bool(wanted & {"depth", "points"}),
                want_rect="rect" in wanted, depth_source=values["depth_source"], tolerance=values["depth_tolerance"])
            seconds += s
            for (spec, w, _), view in zip(group, views):
                self._outputs[spec.name].publish(spec, view, stamp_ns, values, w)
                published += 1
        if published:
            self.stats.add_render(seconds, published, len(groups))

    # ------------------------------------------------------------------ status
    def _publish_status(self) -> None:
        """~/status and /diagnostics; reads counters and the memory's sizes without taking the world lock."""
        latency_ms, rate = self.stats.period()
        memory = self.world.memory
        msg = WorldStatus(frames=len(memory), frames_in_ram=frames_in_ram(memory), bytes_in_ram=memory.nbytes,
                          coverage_m2=self._coverage.area_m2(memory), render_latency_ms=latency_ms,
                          render_rate_hz=rate, model=self.model_name)
        msg.header.stamp = self.get_clock().now().to_msg()
        msg.header.frame_id = self.world_frame
        self._status_pub.publish(msg)
        self._diagnostics.publish(latency_ms, rate)

    def destroy_node(self) -> bool:
        """Stop the threads (waiting STOP_WAIT_S at most for a render in progress); True if one was abandoned."""
        busy = False
        worker = getattr(self, "_worker", None)  # absent when the constructor failed
        if worker is not None:
            self.worker.stopping.set()
            try:
                self._jobs.put_nowait(None)
            except queue.Full:
                pass
            worker.join(STOP_WAIT_S)
            busy = worker.is_alive()
        services = getattr(self, "world_services", None)
        if services is not None:
            busy = not services.close(STOP_WAIT_S) or busy
        super().destroy_node()
        if self.scratch is not None and not busy:
            self.scratch.close()
        return busy


def make_executor(context: Context | None = None) -> Executor:
    """The executor to spin a CameraNode with: single-threaded, by design.

    Every callback of the node is short (TF ingest, the tick hand-off, status); rendering runs on
    the node's own worker thread and services/seed images on others (see WorldServices). rclpy's
    MultiThreadedExecutor busy-polls its wait set while a mutually exclusive callback is running:
    measured here it kept a core busy, starved /tf ingestion at 100 Hz by ~1 s and slowed a 64x64
    render from 33 ms to ~550 ms (bench/bench_node.py).
    """
    return SingleThreadedExecutor(context=context)


def main(args: list[str] | None = None) -> int:
    """Console script `rtfm_camera`: run until Ctrl-C / SIGTERM (stopping within ~2 s); 2 when it cannot start."""
    rclpy.init(args=args)
    log = rclpy.logging.get_logger(NODE_NAME)
    try:
        node = CameraNode()
    except (P.ConfigError, GeometryError) as e:
        log.fatal(f"cannot start: {e}")
        rclpy.try_shutdown()
        return 2
    except KeyboardInterrupt:
        rclpy.try_shutdown()
        return 0
    executor = make_executor()
    executor.add_node(node)
    busy = False
    try:
        while rclpy.ok():
            try:
                executor.spin()
            except (KeyboardInterrupt, ExternalShutdownException):
                break
            except Exception as e:  # a callback escaped its guard: log it and keep serving
                if not rclpy.ok():
                    break
                log.error(f"executor: {type(e).__name__}: {e} (the node keeps running)")
    finally:
        executor.shutdown(timeout_sec=STOP_WAIT_S)
        busy = node.destroy_node()
        rclpy.try_shutdown()
    if busy:  # a render is still inside the model: do not wait for it (nor let exit join it)
        log.warning("stopping with a render in progress (abandoned)")
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
