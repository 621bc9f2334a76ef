"""What each camera publishes (image_raw, image_raw/compressed, camera_info, depth, points,
image_rect) and the node's ~/status and /diagnostics.

Encoding costs (JPEG, point clouds) are paid only for topics that someone subscribes to (or all
enabled ones with ``lazy: false``). Topic names follow image_transport's (``image_raw/compressed``
with the compressed plugin's format string) so viewers and bag recorders find them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rclpy.qos import QoSProfile
from rtfm_ros_interfaces.msg import WorldStatus
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2

from rtfm_ros.camera.cameras import CameraSpec
from rtfm_ros.camera.config import CameraNodeConfig
from rtfm_ros.camera.status import Coverage, frames_in_ram, model_name
from rtfm_ros.camera.worker import View
from rtfm_ros.render.stored_depth import points_camera
from rtfm_ros.ros.conversions import camera_info_msg, cloud_msg, compressed_msg, depth_msg, image_msg

if TYPE_CHECKING:  # pragma: no cover
    from rtfm_ros.camera.status import RenderStats
    from rtfm_ros.camera.worker import RenderWorker
    from rtfm_ros.camera.world_handle import WorldHandle
    from rtfm_ros.world import WorldModel

TOPICS = {"image": (Image, "image_raw"), "compressed": (CompressedImage, "image_raw/compressed"),
          "info": (CameraInfo, "camera_info"), "depth": (Image, "depth"), "points": (PointCloud2, "points"),
          "rect": (Image, "image_rect")}


class Publishing(Protocol):
    """What makes publishers (an rclpy Node)."""

    def create_publisher(self, msg_type: Any, topic: str, qos_profile: Any) -> Any: ...


class CameraNodeView(Publishing, Protocol):
    """What the status and diagnostics read of the camera node (rtfm_ros.ros.camera_node.CameraNode)."""

    stats: RenderStats
    worker: RenderWorker
    world_handle: WorldHandle
    config: CameraNodeConfig
    cameras: tuple[CameraSpec, ...]

    @property
    def world(self) -> WorldModel: ...

    def get_clock(self) -> Any: ...

    def get_name(self) -> str: ...


class CameraOutputs:
    """The publishers of one camera."""

    def __init__(self, node: Publishing, spec: CameraSpec, qos: QoSProfile) -> None:
        self.pubs = {key: node.create_publisher(cls, spec.prefix + name, qos) for key, (cls, name) in TOPICS.items()}

    def enabled(self, config: CameraNodeConfig) -> set[str]:
        """Topics to fill this tick: enabled by parameters, and (lazy) with subscribers."""
        on = {"image", "compressed", "info"}
        on |= {k for k, flag in (("depth", config.publish_depth), ("points", config.publish_points),
                                 ("rect", config.publish_rect)) if flag}
        if config.lazy:
            on = {k for k in on if self.pubs[k].get_subscription_count() > 0}
        return on

    def publish(self, spec: CameraSpec, view: View, stamp_ns: int, config: CameraNodeConfig,
                wanted: set[str]) -> None:
        frame = spec.optical_frame
        pubs = self.pubs
        if "image" in wanted:
            pubs["image"].publish(image_msg(view.rgb, stamp_ns, frame))
        if "compressed" in wanted:
            pubs["compressed"].publish(compressed_msg(view.rgb, stamp_ns, frame, config.compressed_format,
                                                      config.jpeg_quality))
        info = camera_info_msg(spec.camera, stamp_ns, frame, spec.calibration)
        if view.baseline:  # the right camera of a rectified stereo pair: Tx = -fx * B (camera_info's convention)
            info.p[3] = -float(info.p[0]) * view.baseline
        pubs["info"].publish(info)
        if view.depth is not None and "depth" in wanted:
            pubs["depth"].publish(depth_msg(view.depth, stamp_ns, frame, config.depth_encoding))
        if view.depth is not None and "points" in wanted:
            pts = points_camera(view.depth, spec.sensor.lens.rays)
            pubs["points"].publish(cloud_msg(pts, view.rgb, stamp_ns, frame))
        if "rect" in wanted:
            pubs["rect"].publish(image_msg(view.rect if view.rect is not None else view.rgb, stamp_ns, frame))


class Diagnostics:
    """~/status (WorldStatus) and /diagnostics (diagnostic_msgs/DiagnosticArray, with per-second deltas).

    Reads counters and the memory's sizes without taking the world lock.
    """

    def __init__(self, node: CameraNodeView) -> None:
        self.node = node
        self.status_pub = node.create_publisher(WorldStatus, "~/status", 10)
        self.pub = node.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self._coverage = Coverage()
        self._last = {"dropped": 0, "tf_misses": 0, "remember_failures": 0, "callback_errors": 0}

    def publish_all(self) -> None:
        """Both messages, once per status period."""
        node = self.node
        latency_ms, rate = node.stats.period()
        memory = node.world.memory
        msg = WorldStatus(frames=len(memory), frames_in_ram=frames_in_ram(memory), bytes_in_ram=memory.nbytes,
                          coverage_m2=self._coverage.area_m2(memory), render_latency_ms=latency_ms,
                          render_rate_hz=rate, model=model_name(node.world))
        msg.header.stamp = node.get_clock().now().to_msg()
        msg.header.frame_id = node.config.frame
        self.status_pub.publish(msg)
        self.publish(latency_ms, rate)

    def publish(self, latency_ms: float, rate_hz: float) -> None:
        node, stats = self.node, self.node.stats
        now = {"dropped": stats.dropped, "tf_misses": stats.tf_misses,
               "remember_failures": node.worker.write_back.failures, "callback_errors": stats.callback_errors}
        delta = {k: now[k] - self._last[k] for k in now}
        self._last = now
        frames = len(node.world.memory)
        expected = node.config.rate * len(node.cameras)
        level, message = DiagnosticStatus.OK, "publishing"
        if frames == 0:
            level, message = DiagnosticStatus.WARN, "the world is empty: nothing is published until it is seeded"
        elif delta["remember_failures"]:
            level, message = DiagnosticStatus.WARN, ("remembering views failed (published without remembering): "
                                                     f"{node.worker.write_back.last_error}")
        elif delta["tf_misses"]:
            level, message = DiagnosticStatus.WARN, "camera poses missing in TF"
        elif delta["dropped"]:
            level, message = DiagnosticStatus.WARN, "ticks dropped: rendering is slower than the rate"
        values = {"images per second": f"{rate_hz:.2f}", "configured images per second": f"{expected:g}",
                  "render latency median (ms)": f"{latency_ms:.1f}",
                  "dropped ticks": str(now["dropped"]), "dropped ticks last second": str(delta["dropped"]),
                  "tf misses": str(now["tf_misses"]), "tf misses last second": str(delta["tf_misses"]),
                  "bad transforms": str(stats.bad_transforms), "ticks": str(stats.ticks),
                  "images stamped with the newest pose": str(stats.stamped_newest),
                  "backlog (ticks queued)": str(stats.backlog),
                  **{f"skipped ({reason})": str(n) for reason, n in sorted(stats.skips().items())},
                  "remembered views": str(node.worker.write_back.remembered),
                  "remember failures": str(now["remember_failures"]),
                  "callback errors": str(now["callback_errors"]), "frames": str(frames),
                  "depth source": node.config.depth_source, "qos": node.config.qos,
                  "world file": str(node.world_handle.source or "")}
        status = DiagnosticStatus(level=level, name=f"{node.get_name()}: camera", message=message,
                                  hardware_id=f"rtfm_ros {model_name(node.world)}",
                                  values=[KeyValue(key=k, value=v) for k, v in values.items()])
        msg = DiagnosticArray(status=[status])
        msg.header.stamp = node.get_clock().now().to_msg()
        self.pub.publish(msg)
