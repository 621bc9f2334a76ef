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
"""

from __future__ import annotations

import queue
import threading
from typing import TYPE_CHECKING, Any, Callable, TypeVar

import numpy as np
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from rclpy.task import Future
from rtfm_ros_interfaces.srv import RenderView, WorldPath
from sensor_msgs.msg import CameraInfo, Image
from std_srvs.srv import Trigger

from rtfm_ros.ros.conversions import (camera_from_info, depth_to_msg, image_to_msg, msg_to_image, pose_to_matrix,
                                      stamp_to_ns)
from rtfm_ros.ros.world_files import ScratchWorld, save_world, user_path
from rtfm_ros.tf_buffer import TransformLookupError, clean_frame_id

if TYPE_CHECKING:  # pragma: no cover
    from rtfm_ros.ros.camera_node import CameraNode

LATCHED = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
MAX_POSITION_M = 1e6  # poses farther from the world's origin are refused (float32 inside the model)
R = TypeVar("R")


class Lane:
    """One daemon thread running submitted calls in order."""

    def __init__(self, name: str) -> None:
        self._calls: queue.Queue = queue.Queue()
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
    """Registers ~/reset, ~/save_world, ~/replace_world, ~/load_world, ~/render_view, ~/seed_image, ~/seed_camera_info."""

    def __init__(self, node: "CameraNode") -> None:
        self.node = node
        self.seed_camera = None  # from ~/seed_camera_info
        self.seeded = 0
        self._world_lane, self._view_lane = Lane("rtfm_services"), Lane("rtfm_render_view")
        group = MutuallyExclusiveCallbackGroup()
        world, view = self._world_lane, self._view_lane
        node.create_service(Trigger, "~/reset", self._off(self.reset, world), callback_group=group)
        node.create_service(WorldPath, "~/save_world", self._off(self.save_world, world), callback_group=group)
        node.create_service(WorldPath, "~/replace_world", self._off(self.replace_world, world), callback_group=group)
        node.create_service(WorldPath, "~/load_world", self._off(self.load_world, world), callback_group=group)
        node.create_service(RenderView, "~/render_view", self._off(self.render_view, view),
                            callback_group=MutuallyExclusiveCallbackGroup())
        node.create_subscription(Image, "~/seed_image", self._off(self.on_seed_image, world), 10, callback_group=group)
        node.create_subscription(CameraInfo, "~/seed_camera_info", node.guarded(self.on_seed_camera_info,
                                 "~/seed_camera_info"), LATCHED, callback_group=group)

    def _off(self, handler: Callable[..., R], lane: Lane) -> Callable[..., Any]:
        """handler as a coroutine callback that runs it on lane and awaits the answer.

        Any exception the handler lets through becomes a failed reply (services) or a log line
        (subscriptions): the executor never sees it.
        """
        name = handler.__name__

        async def callback(*args: Any) -> Any:
            done: Future = Future(executor=self.node.executor)
            done.add_done_callback(lambda _: None)  # completing it wakes the executor to resume us

            def run() -> None:
                try:
                    done.set_result(handler(*args))
                except Exception as e:
                    self.node.stats.callback_errors += 1
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
        return self.node.get_logger()

    def _fail(self, response: Any, message: str) -> Any:
        response.success, response.message = False, message
        self.log.error(message)
        return response

    # ------------------------------------------------------------------ world files
    def reset(self, request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        with self.node.world_lock:
            n = len(self.node.world.memory)
            self.node.world.reset()
        response.success, response.message = True, f"forgot {n} frames; the world is empty until seeded again"
        self.log.info(response.message)
        return response

    def save_world(self, request: WorldPath.Request, response: WorldPath.Response,
                   replace: bool = False) -> WorldPath.Response:
        """Write the world to a new file (never over an existing one)."""
        with self.node.world_lock:
            response.frames = len(self.node.world.memory)
            try:
                saved = save_world(self.node.world, user_path(request.path), replace)
            except Exception as e:  # a failed save keeps the previous file (atomic rename)
                return self._fail(response, f"cannot save the world to {request.path.strip()!r}: {e}")
        response.success = True
        response.message = f"{'replaced' if replace else 'saved'} {response.frames} frames {'in' if replace else 'to'} {saved}"
        self.log.info(response.message)
        return response

    def replace_world(self, request: WorldPath.Request, response: WorldPath.Response) -> WorldPath.Response:
        """Write the world over an existing world file (and nothing else)."""
        return self.save_world(request, response, replace=True)

    def load_world(self, request: WorldPath.Request, response: WorldPath.Response) -> WorldPath.Response:
        """Replace the world by a working copy of a world file (the file itself is not written)."""
        node = self.node
        try:
            source = user_path(request.path)
            scratch = ScratchWorld(source, node.values["scratch_dir"])
        except Exception as e:
            response.frames = len(node.world.memory)
            return self._fail(response, f"cannot load world {request.path.strip()!r}: {e}; keeping the current "
                                        f"world ({response.frames} frames)")
        with node.world_lock:
            old, old_scratch = node.world.memory, node.scratch
            node.world.memory, node.scratch, node.world_source = scratch.memory, scratch, source
            try:
                node.world.load_fit_beside(source)
            except Exception as e:  # the world is still good: render it with the default blend
                node.world.fit = None
                node.get_logger().warning(f"not using the fit beside {source}: {e}")
            if old_scratch is not None:
                old_scratch.close()
            else:
                old.close()
        response.success, response.frames = True, len(scratch.memory)
        response.message = (f"loaded {response.frames} frames from {source} (working on a copy: the file is only "
                            "written by ~/replace_world)")
        self.log.info(response.message)
        return response

    # ------------------------------------------------------------------ rendering on request
    def render_view(self, request: RenderView.Request, response: RenderView.Response) -> RenderView.Response:
        from rtfm_ros.world import EmptyWorldError

        node = self.node
        try:
            frame = request.pose.header.frame_id.lstrip("/")
            if frame not in ("", node.world_frame):
                raise ValueError(f"pose must be given in the world frame {node.world_frame!r} (or ''), "
                                 f"got {frame!r}")
            T = pose_to_matrix(request.pose.pose)
            if not np.all(np.abs(T[:3, 3]) <= MAX_POSITION_M):
                raise ValueError(f"pose position {T[:3, 3].tolist()} is beyond {MAX_POSITION_M:g} m of the origin")
            camera = camera_from_info(request.camera_info)
            budget = node.values["max_render_pixels"]
            if camera.width * camera.height > budget:
                raise ValueError(f"{camera.width}x{camera.height} is above max_render_pixels ({budget} pixels)")
            node.world.check_camera(camera)
            stamp = stamp_to_ns(request.pose.header.stamp) or node.get_clock().now().nanoseconds
            rgb, depth = node.worker.render_view(T, camera, want_depth=request.want_depth, remember=request.remember,
                                                 depth_source=node.values["depth_source"],
                                                 tolerance=node.values["depth_tolerance"])
            optical = request.camera_info.header.frame_id
            response.image = image_to_msg(rgb, stamp, optical)
            if depth is not None:
                response.depth = depth_to_msg(depth, stamp, optical, node.values["depth_encoding"])
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
        """Add a real camera image as an 'observed' frame, posed by TF at its stamp."""
        node = self.node
        try:
            rgb = msg_to_image(msg)
            frame = clean_frame_id(msg.header.frame_id)
            stamp = stamp_to_ns(msg.header.stamp)
            T = node.tf.lookup(node.world_frame, frame, stamp, node.tf_timeout)
            h, w = rgb.shape[:2]
            cam = self.seed_camera
            if cam is None or (cam.width, cam.height) != (w, h):
                cam = node.cameras[0].camera.scaled(w, h)
            with node.world_lock:
                fid = node.world.add_frame(rgb, T, cam, stamp=stamp / 1e9, source="observed")
        except (ValueError, TransformLookupError) as e:
            node.stats.skip("seed image")
            self.log.warning(f"seed image skipped: {e}", throttle_duration_sec=2.0)
            return
        self.seeded += 1
        self.log.info(f"seed image at {frame} added as frame {fid}", throttle_duration_sec=2.0)
