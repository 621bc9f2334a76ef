"""`rtfm_camera`: a ROS 2 camera that follows TF and publishes what the world model renders there.

A timer at ``rate`` takes the node's clock (sim time honoured) as the render time; a worker
thread (queue of one) looks the camera up in TF at that time, renders every camera of the tick
in one batched model call and publishes Image + CameraInfo (+ depth) stamped with that time,
framed in the optical frame. A tick that finds the worker still busy is dropped and counted,
so the rate never drifts and no callback waits for the model. Spin it with make_executor().
Parameters, services and topics are listed in the README (section "ROS 2 camera node").
"""

from __future__ import annotations

import queue
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import rclpy
from rcl_interfaces.msg import SetParametersResult
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.clock import Clock, ClockType
from rclpy.context import Context
from rclpy.executors import Executor, ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from rtfm_ros_interfaces.msg import WorldStatus
from sensor_msgs.msg import CameraInfo, Image
from tf2_msgs.msg import TFMessage

from rtfm_ros.geometry import (R_BODY_OPTICAL, GeometryError, PinholeCamera, body_to_optical, make_transform,
                               transform_from_ros)
from rtfm_ros.ros import params as P
from rtfm_ros.ros.params import CameraSpec
from rtfm_ros.ros.conversions import camera_info_msg, depth_to_msg, image_to_msg, matrix_to_transform_stamped
from rtfm_ros.ros.services import WorldServices
from rtfm_ros.ros.status import Coverage, RenderStats, frames_in_ram
from rtfm_ros.ros.tf_source import TfSource
from rtfm_ros.tf_buffer import ExtrapolationError, TransformLookupError

if TYPE_CHECKING:  # pragma: no cover - torch is imported only once the parameters are known good
    from rtfm_ros.world import WorldModel

NODE_NAME = "rtfm_camera"
THROTTLE_S = 5.0
TF_QOS = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
TF_STATIC_QOS = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE,
                           durability=DurabilityPolicy.TRANSIENT_LOCAL)
STATIC_BROADCAST_QOS = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                                  durability=DurabilityPolicy.TRANSIENT_LOCAL)
IMAGE_QOS = {"sensor_data": qos_profile_sensor_data,
             "reliable": QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)}


class CameraNode(Node):
    """The camera node. ``world_model`` (optional) replaces the checkpoint/device/world parameters."""

    def __init__(self, world_model: "WorldModel | None" = None, node_name: str = NODE_NAME, **kwargs: Any) -> None:
        super().__init__(node_name, **kwargs)
        self.stats = RenderStats()
        self.world_lock = threading.RLock()
        self.values = {s.name: P.declare(self, s) for s in P.NODE_PARAMS}
        self._cam_values = self._declare_cameras()  # every parameter is checked before the model loads
        self._seed_rows = P.seed_pose_rows(self.values["seed_images"], self.values["seed_poses"])
        import torch

        from rtfm_ros.runtime import serving_threads

        torch.set_num_threads(self.values["torch_threads"] or serving_threads())
        self.world = world_model if world_model is not None else self._load_model()
        self._seed_from_parameters()
        self.cameras = tuple(self._build_camera(n, v, at_start=True) for n, v in self._cam_values.items())
        self.tf = TfSource()
        self._coverage = Coverage()

        tf_group = MutuallyExclusiveCallbackGroup()
        self.create_subscription(TFMessage, "/tf", lambda m: self._on_tf(m, False), TF_QOS, callback_group=tf_group)
        self.create_subscription(TFMessage, "/tf_static", lambda m: self._on_tf(m, True), TF_STATIC_QOS,
                                 callback_group=tf_group)
        self._pubs: dict[str, dict[str, Any]] = {}
        qos = IMAGE_QOS[self.values["qos"]]
        for spec in self.cameras:
            self._pubs[spec.name] = {"image": self.create_publisher(Image, spec.prefix + "image_raw", qos),
                                     "info": self.create_publisher(CameraInfo, spec.prefix + "camera_info", qos)}
        self._ensure_depth_publishers()
        self._publish_optical_frames()

        self.world_services = WorldServices(self)
        self._status_pub = self.create_publisher(WorldStatus, "~/status", 10)
        self._status_timer = self.create_timer(1.0, self._publish_status, MutuallyExclusiveCallbackGroup(),
                                               clock=Clock(clock_type=ClockType.STEADY_TIME))

        self._jobs: queue.Queue = queue.Queue(maxsize=1)
        self._idle = threading.Event()
        self._idle.set()
        self._worker = threading.Thread(target=self._render_loop, name="rtfm_render", daemon=True)
        self._worker.start()
        self._timer = self.create_timer(1.0 / self.values["rate"], self._tick, MutuallyExclusiveCallbackGroup())
        self.add_on_set_parameters_callback(self._check_parameters)
        self.add_post_set_parameters_callback(self._apply_parameters)

        names = ", ".join(f"{s.prefix}image_raw {s.camera.width}x{s.camera.height} in {s.optical_frame}"
                          for s in self.cameras)
        self.get_logger().info(f"rendering {names} at {self.values['rate']:g} Hz from TF "
                               f"{self.world_frame} -> camera ({self.tf.backend}); model {self.model_name}, "
                               f"device {self.world.device}")
        if len(self.world.memory) == 0:
            self.get_logger().warning("the world is empty (no frames from a world file or seed images): nothing "
                                      "is published until it is seeded (~/seed_image, ~/load_world)")
        else:
            self.get_logger().info(f"world holds {len(self.world.memory)} frames")

    # ------------------------------------------------------------------ set-up
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

    def _load_model(self) -> "WorldModel":
        from rtfm_ros.world import WorldModel

        ckpt, world = self.values["checkpoint"] or None, self.values["world"] or None
        try:
            return WorldModel.load(ckpt, world=world, device=self.values["device"])
        except Exception as e:  # checkpoint, world file or device: the node cannot do its job
            what = f"checkpoint {ckpt or '(bundled default)'}" + (f", world {world}" if world else "")
            raise P.ConfigError(f"cannot load {what} on device {self.values['device']!r}: {e}") from None

    def _seed_from_parameters(self) -> None:
        from PIL import Image as PILImage

        images = self.values["seed_images"]
        for path, row in zip(images, self._seed_rows):
            try:
                with PILImage.open(Path(path).expanduser()) as im:
                    rgb = np.asarray(im.convert("RGB"))
                T = transform_from_ros(row[:3], row[3:])
                if self.values["seed_pose_convention"] == "body":
                    T = body_to_optical(T)
                cam = PinholeCamera.from_fov(rgb.shape[1], rgb.shape[0], self.values["seed_fov"])
                self.world.add_frame(rgb, T, cam, source="seed")
            except (OSError, ValueError) as e:
                raise P.ConfigError(f"seed image {path!r}: {e}") from None
        if images:
            self.get_logger().info(f"seeded the world with {len(images)} images")

    def _declare_cameras(self) -> dict[str, dict[str, Any]]:
        top = {s.name: self.values[s.name] for s in P.CAMERA_PARAMS}
        if not self.values["cameras"]:
            return {"": top}
        out = {}
        for name in self.values["cameras"]:
            defaults = dict(top, camera_frame=f"{name}_camera_link", optical_frame="")
            out[name] = {s.name: P.declare(self, s, f"{name}.{s.name}", defaults[s.name]) for s in P.CAMERA_PARAMS}
        return out

    def _build_camera(self, name: str, v: dict[str, Any], at_start: bool = False) -> CameraSpec:
        patch = self.world.config.patch
        try:
            camera = P.build_camera(v, patch, name)
        except P.ConfigError as e:
            if not at_start:
                raise
            keys = ("width", "height", "fov", "fx", "fy", "cx", "cy")
            defaults = {k: P.CAMERA_SPECS[k].default for k in keys}
            self.get_logger().error(f"{e}; using the default camera {defaults['width']}x{defaults['height']}, "
                                    f"fov {defaults['fov']:g} instead")
            v.update(defaults)
            if not name:
                self.values.update(defaults)
            self.set_parameters([Parameter(f"{name}.{k}" if name else k, value=d) for k, d in defaults.items()])
            camera = P.build_camera(v, patch, name)
        frame = v["camera_frame"].lstrip("/")
        body = v["camera_frame_convention"] == "body"
        optical = (v["optical_frame"] or f"{frame}_optical") if body else frame
        return CameraSpec(name, frame, optical.lstrip("/"), body, camera)

    def _ensure_depth_publishers(self) -> None:
        if self.values["publish_depth"]:
            qos = IMAGE_QOS[self.values["qos"]]
            for spec in self.cameras:
                if "depth" not in self._pubs[spec.name]:
                    self._pubs[spec.name]["depth"] = self.create_publisher(Image, spec.prefix + "depth", qos)

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
            cameras = tuple(self._build_camera(n, v) for n, v in cam_values.items())
        except P.ConfigError as e:
            self.get_logger().error(f"refused parameter change: {e}; keeping the previous values")
            return SetParametersResult(successful=False, reason=str(e))
        self._pending = (values, cam_values, cameras)
        return SetParametersResult(successful=True)

    def _apply_parameters(self, parameters: list[Parameter]) -> None:
        pending, self._pending = getattr(self, "_pending", None), None
        if pending is None:
            return
        old_rate = self.values["rate"]
        self.values, self._cam_values, self.cameras = pending
        self._ensure_depth_publishers()
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
    def _subscribed(self, spec: CameraSpec) -> bool:
        return any(p.get_subscription_count() > 0 for p in self._pubs[spec.name].values())

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
        specs = [s for s in self.cameras if not self.values["lazy"] or self._subscribed(s)]
        if not specs:
            self.stats.skip("no subscribers")
            return
        if not self._idle.is_set():
            self.stats.dropped += 1
            return
        self._idle.clear()
        self._jobs.put_nowait((now_ns, specs, dict(self.values)))

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

    def _render(self, stamp_ns: int, specs: list[CameraSpec], values: dict[str, Any]) -> None:
        posed: list[tuple[CameraSpec, np.ndarray]] = []
        deadline = time.monotonic() + values["tf_timeout"]  # one wait for all cameras of the tick
        for spec in specs:
            try:
                wait = max(0.0, deadline - time.monotonic())
                T = self.tf.lookup(self.world_frame, spec.camera_frame, stamp_ns, wait)
            except TransformLookupError as e:
                reason = "tf extrapolation" if isinstance(e, ExtrapolationError) else "tf lookup"
                self.stats.skip(reason)
                self.get_logger().warning(f"skipping {spec.prefix}image_raw at {stamp_ns / 1e9:.3f} s: {e}",
                                          throttle_duration_sec=THROTTLE_S)
                continue
            posed.append((spec, body_to_optical(T) if spec.body else T))
        if not posed:
            return
        groups: dict[tuple[int, int], list[tuple[CameraSpec, np.ndarray]]] = {}
        for spec, T in posed:
            groups.setdefault((spec.camera.width, spec.camera.height), []).append((spec, T))
        out, seconds = [], 0.0
        with self.world_lock:
            if len(self.world.memory) == 0:
                return
            for group in groups.values():
                result = self.world.render_batch(np.stack([T for _, T in group]), [s.camera for s, _ in group],
                                                 remember=values["remember_generated"],
                                                 return_depth=values["publish_depth"])
                seconds += self.world.last_render_seconds
                imgs, depths = result if values["publish_depth"] else (result, [None] * len(group))
                out.extend((s, img, d) for (s, _), img, d in zip(group, imgs, depths))
        for spec, img, depth in out:
            pubs = self._pubs[spec.name]
            pubs["image"].publish(image_to_msg(img, stamp_ns, spec.optical_frame))
            pubs["info"].publish(camera_info_msg(spec.camera, stamp_ns, spec.optical_frame))
            if depth is not None and "depth" in pubs:
                pubs["depth"].publish(depth_to_msg(depth, stamp_ns, spec.optical_frame))
        self.stats.add_render(seconds, len(out), len(groups))

    # ------------------------------------------------------------------ status
    def _publish_status(self) -> None:
        latency_ms, rate = self.stats.period()
        with self.world_lock:
            memory = self.world.memory
            msg = WorldStatus(frames=len(memory), frames_in_ram=frames_in_ram(memory), bytes_in_ram=memory.nbytes,
                              coverage_m2=self._coverage.area_m2(memory), render_latency_ms=latency_ms,
                              render_rate_hz=rate, model=self.model_name)
        msg.header.stamp = self.get_clock().now().to_msg()
        msg.header.frame_id = self.world_frame
        self._status_pub.publish(msg)

    def destroy_node(self) -> None:
        """Stop the render thread before the publishers go away."""
        worker = getattr(self, "_worker", None)  # absent when the constructor failed
        if worker is not None and worker.is_alive():
            self._idle.wait(5.0)
            try:
                self._jobs.put(None, timeout=5.0)
            except queue.Full:
                pass
            worker.join(5.0)
        services = getattr(self, "world_services", None)
        if services is not None:
            services.close()
        super().destroy_node()


def make_executor(context: Context | None = None) -> Executor:
    """The executor to spin a CameraNode with: single-threaded, by design.

    Every callback of the node is short (TF ingest, the tick hand-off, status); rendering runs on
    the node's own worker thread and services/seed images on another (see WorldServices). rclpy's
    MultiThreadedExecutor busy-polls its wait set while a mutually exclusive callback is running:
    measured here it kept a core busy, starved /tf ingestion at 100 Hz by ~1 s and slowed a 64x64
    render from 33 ms to ~550 ms (bench/bench_node.py).
    """
    return SingleThreadedExecutor(context=context)


def main(args: list[str] | None = None) -> int:
    """Console script `rtfm_camera`: run the node until Ctrl-C / SIGTERM; 2 when it cannot start."""
    rclpy.init(args=args)
    try:
        node = CameraNode()
    except (P.ConfigError, GeometryError) as e:
        rclpy.logging.get_logger(NODE_NAME).fatal(f"cannot start: {e}")
        rclpy.try_shutdown()
        return 2
    executor = make_executor()
    executor.add_node(node)
    try:
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except Exception:
        if rclpy.ok():  # a real failure; otherwise a callback raced with Ctrl-C / SIGTERM shutdown
            raise
    finally:
        executor.shutdown()
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
