"""The camera node's services and seed inputs: reset, save/replace/load a world, render a view, grow the world.

Every handler answers (success + message) instead of raising: a bad path, a corrupt world, a
pose beyond float range or a camera the model cannot render never takes the node down (any
exception becomes a failed reply, logged), and a failed save or load leaves the world in use
untouched (world files are written to a temporary name and renamed).

Handlers run off the executor on two threads of their own ("lanes"): one for the world
(reset, save, load, seed images), one for ~/render_view, so a long view never queues a save
and neither stalls the node's single-threaded executor, which keeps taking /tf, ticking and
answering parameters meanwhile (the callbacks are coroutines awaiting the lane). The lanes are
daemon threads: stopping the node never waits for a render inside the model.

The services see the node only through what they are given: the world (a WorldHandle), the
current settings, a TF lookup, the default seed camera and the counters; the rclpy Node is used
to register them and nothing else.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from rclpy.task import Future
from rtfm_ros_interfaces.srv import RenderView, WorldPath
from sensor_msgs.msg import CameraInfo, Image
from std_srvs.srv import Trigger

from rtfm_ros.camera.config import CameraNodeConfig
from rtfm_ros.camera.depth_pairing import DepthPairing
from rtfm_ros.camera.lens import Lens
from rtfm_ros.camera.status import RenderStats
from rtfm_ros.camera.world_handle import WorldHandle
from rtfm_ros.data.depth_maps import match_image
from rtfm_ros.geometry import PinholeCamera
from rtfm_ros.io.messages import MessageError, camera_from_info, decode_depth, decode_image, stamp_to_ns
from rtfm_ros.io.tf_messages import pose_to_matrix
from rtfm_ros.ros.conversions import depth_msg, image_msg
from rtfm_ros.tf_buffer import TransformLookupError, clean_frame_id

if TYPE_CHECKING:  # pragma: no cover
    from rclpy.node import Node

LATCHED = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
MAX_POSITION_M = 1e6  # poses farther from the world's origin are refused (float32 inside the model)
R = TypeVar("R")


class Lane:
    """One daemon thread running submitted calls in order."""

    def __init__(self, name: str) -> None:
        self._calls: queue.Queue[Any] = queue.Queue()
        self._idle = threading.Event()
        self._idle.set()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def submit(self, call: Callable[[], None]) -> None:
        self._calls.put(call)

    def _run(self) -> None:
        while True:
            call = self._calls.get()
            if call is None:
                return
            self._idle.clear()
            try:
                call()
            finally:
                self._idle.set()

    def close(self, timeout_s: float) -> bool:
        """Stop after the call in progress; True if the thread ended within timeout_s."""
        self._calls.put(None)
        self._thread.join(timeout_s)
        return not self._thread.is_alive()


class WorldServices:
    """Registers ~/reset, ~/save_world, ~/replace_world, ~/load_world, ~/render_view, ~/seed_image,
    ~/seed_camera_info and ~/seed_depth (depth registered to the seed images, paired by stamp).

    settings() gives the node's config now; locate(frame, stamp_ns) the frame's pose in the world
    frame (waiting up to tf_timeout); seed_camera(width, height) the intrinsics of a seed image
    when ~/seed_camera_info gave none for its size.
    """

    def __init__(self, node: Node, world: WorldHandle, *, settings: Callable[[], CameraNodeConfig],
                 locate: Callable[[str, int], np.ndarray], seed_camera: Callable[[int, int], PinholeCamera],
                 stats: RenderStats) -> None:
        self.world, self.settings, self.locate, self.default_camera = world, settings, locate, seed_camera
        self.stats, self.executor = stats, lambda: node.executor
        self.now_ns: Callable[[], int] = lambda: int(node.get_clock().now().nanoseconds)
        self.seed_camera: PinholeCamera | None = None  # from ~/seed_camera_info
        self.seeded = 0
        self._pairing: DepthPairing[Image] = DepthPairing()
        self._world_lane, self._view_lane = Lane("rtfm_services"), Lane("rtfm_render_view")
        group = MutuallyExclusiveCallbackGroup()
        lane, view = self._world_lane, self._view_lane
        node.create_service(Trigger, "~/reset", self._off(self.reset, lane), callback_group=group)
        node.create_service(WorldPath, "~/save_world", self._off(self.save_world, lane), callback_group=group)
        node.create_service(WorldPath, "~/replace_world", self._off(self.replace_world, lane), callback_group=group)
        node.create_service(WorldPath, "~/load_world", self._off(self.load_world, lane), callback_group=group)
        node.create_service(RenderView, "~/render_view", self._off(self.render_view, view),
                            callback_group=MutuallyExclusiveCallbackGroup())
        node.create_subscription(Image, "~/seed_image", self._off(self.on_seed_image, lane), 10, callback_group=group)
        node.create_subscription(Image, "~/seed_depth", self._off(self.on_seed_depth, lane), 10, callback_group=group)
        node.create_subscription(CameraInfo, "~/seed_camera_info", self._guarded(self.on_seed_camera_info),
                                 LATCHED, callback_group=group)

    def _guarded(self, handler: Callable[[Any], None]) -> Callable[[Any], None]:
        """handler as a callback that logs and counts what it raises (the executor never sees it)."""
        def callback(msg: Any) -> None:
            try:
                handler(msg)
            except Exception as e:  # noqa: BLE001 - a callback never raises into the executor
                self.stats.callback_errors += 1
                self.log.error(f"{handler.__name__} failed: {type(e).__name__}: {e} (the node keeps running)",
                               throttle_duration_sec=5.0)
        return callback

    def _off(self, handler: Callable[..., R], lane: Lane) -> Callable[..., Any]:
        """handler as a coroutine callback that runs it on lane and awaits the answer.

        Any exception the handler lets through becomes a failed reply (services) or a log line
        (subscriptions): the executor never sees it.
        """
        name = handler.__name__

        async def callback(*args: Any) -> Any:
            done: Future[Any] = Future(executor=self.executor())  # type: ignore[no-untyped-call]
            done.add_done_callback(lambda _: None)  # completing it wakes the executor to resume us

            def run() -> None:
                try:
                    done.set_result(handler(*args))
                except Exception as e:  # noqa: BLE001 - any failure becomes a failed reply
                    self.stats.callback_errors += 1
                    message = f"{name} failed: {type(e).__name__}: {e}"
                    self.log.error(message, throttle_duration_sec=1.0)
                    response = args[1] if len(args) == 2 else None
                    if response is not None and hasattr(response, "success"):
                        response.success, response.message = False, message
                    done.set_result(response)
            lane.submit(run)
            return await done
        callback.__name__ = name
        return callback

    def close(self, timeout_s: float = 1.0) -> bool:
        """Stop both lanes; True if neither is still inside a call after timeout_s."""
        a = self._world_lane.close(timeout_s)
        return self._view_lane.close(timeout_s / 2) and a

    @property
    def log(self) -> Any:
        return self.world.log

    def _fail(self, response: Any, message: str) -> Any:
        response.success, response.message = False, message
        self.log.error(message)
        return response

    # ------------------------------------------------------------------ world files
    def reset(self, request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        n = self.world.reset()
        response.success, response.message = True, f"forgot {n} frames; the world is empty until seeded again"
        self.log.info(response.message)
        return response

    def save_world(self, request: WorldPath.Request, response: WorldPath.Response,
                   replace: bool = False) -> WorldPath.Response:
        """Write the world to a new file (never over an existing one)."""
        try:
            response.frames, saved = self.world.save(request.path, replace)
        except Exception as e:  # noqa: BLE001 - a failed save keeps the previous file (atomic rename)
            response.frames = len(self.world.world.memory)
            return self._fail(response, f"cannot save the world to {request.path.strip()!r}: {e}")
        response.success = True
        verb, prep = ("replaced", "in") if replace else ("saved", "to")
        response.message = f"{verb} {response.frames} frames {prep} {saved}"
        self.log.info(response.message)
        return response

    def replace_world(self, request: WorldPath.Request, response: WorldPath.Response) -> WorldPath.Response:
        """Write the world over an existing world file (and nothing else)."""
        return self.save_world(request, response, replace=True)

    def load_world(self, request: WorldPath.Request, response: WorldPath.Response) -> WorldPath.Response:
        """Replace the world by a working copy of a world file (the file itself is not written)."""
        try:
            response.frames, source = self.world.load(request.path)
        except Exception as e:  # noqa: BLE001 - any failed load is answered and keeps the current world
            response.frames = len(self.world.world.memory)
            return self._fail(response, f"cannot load world {request.path.strip()!r}: {e}; keeping the current "
                                        f"world ({response.frames} frames)")
        response.success = True
        response.message = (f"loaded {response.frames} frames from {source} (working on a copy: the file is only "
                            "written by ~/replace_world)")
        self.log.info(response.message)
        return response

    # ------------------------------------------------------------------ rendering on request
    def render_view(self, request: RenderView.Request, response: RenderView.Response) -> RenderView.Response:
        from rtfm_ros.render.views import EmptyWorldError

        config = self.settings()
        try:
            frame = request.pose.header.frame_id.lstrip("/")
            if frame not in ("", config.frame):
                raise ValueError(f"pose must be given in the world frame {config.frame!r} (or ''), "
                                 f"got {frame!r}")
            T = pose_to_matrix(request.pose.pose)
            if not np.all(np.abs(T[:3, 3]) <= MAX_POSITION_M):
                raise ValueError(f"pose position {T[:3, 3].tolist()} is beyond {MAX_POSITION_M:g} m of the origin")
            info = request.camera_info
            camera = camera_from_info(info, ignore_distortion=True)
            budget = config.max_render_pixels
            if camera.width * camera.height > budget:
                raise ValueError(f"{camera.width}x{camera.height} is above max_render_pixels ({budget} pixels)")
            lens = None
            if any(float(x) != 0.0 for x in info.d) or info.distortion_model == "equidistant":
                # rendered as the stream renders a calibrated lens (a fisheye even with D = 0)
                lens = Lens(camera, info.distortion_model or "plumb_bob", [float(x) for x in info.d],
                            max_pixels=budget)
            stamp = stamp_to_ns(request.pose.header.stamp) or self.now_ns()
            rgb, depth = self.world.render_view(T, camera, want_depth=request.want_depth, remember=request.remember,
                                                depth_source=config.depth_source, tolerance=config.depth_tolerance,
                                                lens=lens)
            optical = request.camera_info.header.frame_id
            response.image = image_msg(rgb, stamp, optical)
            if depth is not None:
                response.depth = depth_msg(depth, stamp, optical, config.depth_encoding)
        except (ValueError, EmptyWorldError, ArithmeticError) as e:
            response.success, response.message = False, f"cannot render the view: {e}"
            self.log.warning(response.message)
            return response
        response.success = True
        response.message = f"rendered {camera.width}x{camera.height}" + (" (remembered)" if request.remember else "")
        return response

    # ------------------------------------------------------------------ growing the world from a camera
    def on_seed_camera_info(self, msg: CameraInfo) -> None:
        try:
            self.seed_camera = camera_from_info(msg, ignore_distortion=True)
            self.log.info(f"seed images use intrinsics from ~/seed_camera_info ({msg.width}x{msg.height})")
        except ValueError as e:
            self.log.error(f"ignoring ~/seed_camera_info: {e}")

    def on_seed_image(self, msg: Image) -> None:
        """Add a real camera image as an 'observed' frame, posed by TF at its stamp, with the depth
        on ~/seed_depth stamped with it once depth flows there (camera.depth_pairing)."""
        for image, depth in self._pairing.image(stamp_to_ns(msg.header.stamp), msg):
            self._add_seed(image, depth)

    def on_seed_depth(self, msg: Image) -> None:
        """A depth image (16UC1 mm or 32FC1 m) registered to the seed images: the waiting image it
        belongs to is added with it."""
        try:
            depth = decode_depth(msg)
        except MessageError as e:
            self.stats.skip("seed depth")
            self.log.warning(f"seed depth skipped: {e}", throttle_duration_sec=2.0)
            return
        for image, paired in self._pairing.depth(stamp_to_ns(msg.header.stamp), depth):
            self._add_seed(image, paired)

    def _add_seed(self, msg: Image, depth: np.ndarray | None) -> None:
        try:
            rgb = decode_image(msg)
            frame = clean_frame_id(msg.header.frame_id)
            stamp = stamp_to_ns(msg.header.stamp)
            T = self.locate(frame, stamp)
            h, w = rgb.shape[:2]
            cam = self.seed_camera
            if cam is None or (cam.width, cam.height) != (w, h):
                cam = self.default_camera(w, h)
            if depth is not None:
                depth = match_image(depth, w, h, f"seed depth for the image at {stamp} ns")
            fid = self.world.add_frame(rgb, T, cam, depth=depth, stamp=stamp / 1e9, source="observed")
        except (ValueError, TransformLookupError) as e:  # DepthMapError is a ValueError
            self.stats.skip("seed image")
            self.log.warning(f"seed image skipped: {e}", throttle_duration_sec=2.0)
            return
        self.seeded += 1
        self.log.info(f"seed image at {frame} added as frame {fid}", throttle_duration_sec=2.0)
