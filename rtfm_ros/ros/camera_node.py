"""`rtfm_camera`: a ROS 2 camera that follows TF and publishes what the world model renders there.

A timer at ``rate`` takes the node's clock (sim time honoured) as the render time and hands it
to the render thread (camera/stream.py: TF at that time, one batched render per tick, a busy
thread drops and counts the tick, so the rate never drifts and no callback waits for the model).
The node is a thin adapter that wires the ROS-free camera (rtfm_ros.camera) to ROS: its
parameters are one frozen CameraNodeConfig (camera/config.py, declared by params.py); the world
sits behind a WorldHandle (camera/world_handle.py: the world session's load, save, reset and lock,
rtfm_ros/world_session.py, and renders on request) and its RenderWorker (camera/worker.py: tiled
long renders, write-back); cameras and lenses come from camera/cameras.py, set-up from
camera/node_setup.py, services from services.py, outputs and status from outputs.py. Every
callback turns an exception into a log line (throttled) and the node keeps running. Spin it with make_executor().
Parameters, services and topics are listed in the README (section "ROS 2 camera node").
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import rclpy
from rcl_interfaces.msg import SetParametersResult
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.clock import Clock
from rclpy.clock_type import ClockType
from rclpy.context import Context
from rclpy.executors import Executor, ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from rosgraph_msgs.msg import Clock as Clock_
from tf2_msgs.msg import TFMessage

from rtfm_ros.camera import node_setup as setup
from rtfm_ros.camera.cameras import CameraSpec, build_cameras, start_cameras
from rtfm_ros.camera.config import CameraNodeConfig, ConfigError
from rtfm_ros.camera.status import RenderStats, model_name
from rtfm_ros.camera.stream import ClockTicks, RenderStream
from rtfm_ros.camera.world_handle import WorldHandle
from rtfm_ros.geometry import GeometryError
from rtfm_ros.io.messages import stamp_to_ns
from rtfm_ros.ros.outputs import CameraOutputs, Diagnostics
from rtfm_ros.ros.params import declare_config
from rtfm_ros.ros.services import WorldServices
from rtfm_ros.ros.tf_source import TfSource, optical_frame_transforms

if TYPE_CHECKING:  # pragma: no cover - torch is imported only once the parameters are known good
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
CLOCK_QOS = QoSProfile(depth=100, reliability=ReliabilityPolicy.BEST_EFFORT)  # matches any /clock publisher
STOP_WAIT_S = 1.0  # how long stopping waits for a render in progress before abandoning it


class CameraNode(Node):
    """The camera node. ``world_model`` (optional) replaces the checkpoint/device/world parameters."""

    def __init__(self, world_model: WorldModel | None = None, node_name: str = NODE_NAME, **kwargs: Any) -> None:
        super().__init__(node_name, **kwargs)
        self.stats = RenderStats()
        self.config: CameraNodeConfig = declare_config(self)  # every parameter is checked before the model loads
        if self.config.lockstep and not self.get_parameter("use_sim_time").value:
            raise ConfigError("parameter 'lockstep' needs use_sim_time: true (its ticks follow /clock)")
        self._calibrations = setup.read_calibrations(self.config)
        setup.set_threads(self.config.torch_threads)
        world, copy = (world_model, None) if world_model is not None else setup.load_model(self.config)
        self.world_handle = WorldHandle(world, self.get_logger(), copy, self.config.scratch_dir)
        self.worker = self.world_handle.worker
        setup.seed_from_parameters(world, self.config, self.get_logger())
        self.config, self.cameras = start_cameras(self.config, self._calibrations, self._fall_back)
        self.tf = TfSource()

        tf_group = MutuallyExclusiveCallbackGroup()
        on_tf = self.guarded(self._on_tf, "TF ingestion")
        self.create_subscription(TFMessage, "/tf", lambda m: on_tf(m, False), TF_QOS, callback_group=tf_group)
        self.create_subscription(TFMessage, "/tf_static", lambda m: on_tf(m, True), TF_STATIC_QOS,
                                 callback_group=tf_group)
        qos = IMAGE_QOS[self.config.qos]
        if self.config.lockstep:  # a burst of ticks reaches a subscriber that keeps as many
            qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=max(2, self.config.lockstep_queue),
                             reliability=qos.reliability)
        self._outputs = {spec.name: CameraOutputs(self, spec, qos) for spec in self.cameras}
        self._static_pub = self.create_publisher(TFMessage, "/tf_static", STATIC_BROADCAST_QOS)
        optical = optical_frame_transforms(self.cameras, self.get_clock().now().nanoseconds)
        if optical:  # body-axes cameras: camera_frame -> optical frame
            self.tf.feed(TFMessage(transforms=optical), static=True)
            self._static_pub.publish(TFMessage(transforms=optical))

        self.world_services = WorldServices(
            self, self.world_handle, settings=lambda: self.config, stats=self.stats,
            locate=lambda frame, stamp: self.tf.lookup(self.config.frame, frame, stamp, self.config.tf_timeout),
            seed_camera=lambda w, h: self.cameras[0].camera.scaled(w, h))
        self._diagnostics = Diagnostics(self)
        self._status_timer = self.create_timer(1.0, self.guarded(self._diagnostics.publish_all, "status"),
                                               MutuallyExclusiveCallbackGroup(),
                                               clock=Clock(clock_type=ClockType.STEADY_TIME))

        self.stream = RenderStream(self.worker, self.tf, self._outputs, self.stats, self.get_logger())
        self._timer = self.create_timer(1.0 / self.config.rate, self.guarded(self._tick, "tick"),
                                        MutuallyExclusiveCallbackGroup())
        self._clock_ticks = ClockTicks()
        if self.config.lockstep:
            self.create_subscription(Clock_, "/clock", self.guarded(self._on_clock, "lockstep tick"), CLOCK_QOS,
                                     callback_group=MutuallyExclusiveCallbackGroup())
        self._pending: tuple[CameraNodeConfig, tuple[CameraSpec, ...]] | None = None
        self.add_on_set_parameters_callback(self._check_parameters)
        self.add_post_set_parameters_callback(self.guarded(self._apply_parameters, "parameter update"))
        self._log_start()

    def _log_start(self) -> None:
        names = ", ".join(f"{s.prefix}image_raw {s.camera.width}x{s.camera.height} in {s.optical_frame}"
                          + (f" ({s.calibration.distortion_model})" if s.calibration else "") for s in self.cameras)
        self.get_logger().info(f"rendering {names} at {self.config.rate:g} Hz from TF "
                               f"{self.config.frame} -> camera ({self.tf.backend}); model {model_name(self.world)}, "
                               f"device {self.world.device}; image QoS {self.config.qos}")
        if len(self.world.memory) == 0:
            self.get_logger().warning("the world is empty (no frames from a world file or seed images): nothing "
                                      "is published until it is seeded (~/seed_image, ~/load_world)")
        else:
            source = self.world_handle.source
            where = f" (working copy of {source}; that file is not written)" if source else ""
            self.get_logger().info(f"world holds {len(self.world.memory)} frames{where}")

    # ------------------------------------------------------------------ set-up
    @property
    def world(self) -> WorldModel:
        """The world rendered now (replaced as a whole by ~/load_world; its lock and source file:
        ``world_handle``)."""
        return self.world_handle.world

    def guarded(self, fn: Callable[..., Any], what: str) -> Callable[..., Any]:
        """fn as a callback that logs (throttled) and counts any exception instead of raising it."""
        @functools.wraps(fn)
        def run(*args: Any) -> Any:
            try:
                return fn(*args)
            except Exception as e:  # noqa: BLE001 - a callback never raises into the executor
                self.stats.callback_errors += 1
                self.get_logger().error(f"{what} failed: {type(e).__name__}: {e} (the node keeps running)",
                                        throttle_duration_sec=THROTTLE_S)
                return None
        return run

    def _fall_back(self, message: str, defaults: dict[str, Any]) -> None:
        """A camera that cannot start as configured: say so and set its parameters to the defaults."""
        self.get_logger().error(message)
        self.set_parameters([Parameter(k, value=v) for k, v in defaults.items()])

    # ------------------------------------------------------------------ parameters at run time
    def _check_parameters(self, parameters: list[Parameter[Any]]) -> SetParametersResult:
        try:
            config = self.config.updated({p.name: p.value for p in parameters})
            cameras = build_cameras(config, self._calibrations)
        except Exception as e:  # noqa: BLE001 - ConfigError, or anything a bad value provokes: refused, never raised
            reason = str(e) if isinstance(e, ConfigError) else f"{type(e).__name__}: {e}"
            self.get_logger().error(f"refused parameter change: {reason}; keeping the previous values")
            return SetParametersResult(successful=False, reason=reason)
        self._pending = (config, cameras)
        return SetParametersResult(successful=True)

    def _apply_parameters(self, parameters: list[Parameter[Any]]) -> None:
        pending, self._pending = self._pending, None
        if pending is None:
            return
        old_rate = self.config.rate
        self.config, self.cameras = pending
        if self.config.rate != old_rate:
            self._timer.timer_period_ns = int(1e9 / self.config.rate)
            self._timer.reset()
        self.get_logger().info("parameters updated: " + ", ".join(f"{p.name}={p.value!r}" for p in parameters))

    # ------------------------------------------------------------------ TF
    def _on_tf(self, msg: TFMessage, static: bool) -> None:
        for err in self.tf.feed(msg, static):
            self.stats.bad_transforms += 1
            self.get_logger().warning(f"{err} ({self.stats.bad_transforms} bad transforms so far)",
                                      throttle_duration_sec=THROTTLE_S)

    def _tick(self) -> None:
        """Timer callback: never blocks (the stream hands the tick to its render thread or drops it)."""
        if not self.config.lockstep:
            self.stream.tick(self.get_clock().now().nanoseconds, self.config, self.cameras)

    def _on_clock(self, msg: Clock_) -> None:
        """Lockstep: every tick /clock passed, handed to the render thread's queue in order."""
        for t in self._clock_ticks.due(stamp_to_ns(msg.clock), int(1e9 / self.config.rate)):
            self.stream.tick(t, self.config, self.cameras)

    def destroy_node(self) -> None:
        """rclpy's destroy_node, the node's threads stopped first (see close)."""
        self.close()

    def close(self) -> bool:
        """Stop the threads (waiting STOP_WAIT_S at most for a render in progress) and destroy the node;
        True if a render was abandoned."""
        stream = getattr(self, "stream", None)  # absent when the constructor failed
        busy = stream is not None and not stream.stop(STOP_WAIT_S)
        services = getattr(self, "world_services", None)
        if services is not None:
            busy = not services.close(STOP_WAIT_S) or busy
        super().destroy_node()
        handle = getattr(self, "world_handle", None)
        if handle is not None and not busy:
            handle.close()
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
    except (ConfigError, GeometryError) as e:
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
            except Exception as e:  # noqa: BLE001 - a callback escaped its guard: log it and keep serving
                if not rclpy.ok():
                    break
                log.error(f"executor: {type(e).__name__}: {e} (the node keeps running)")
    finally:
        executor.shutdown(timeout_sec=STOP_WAIT_S)
        busy = node.close()
        rclpy.try_shutdown()
    if busy:  # a render is still inside the model: do not wait for it (nor let exit join it)
        log.warning("stopping with a render in progress (abandoned)")
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
