"""The camera node's services and seed inputs: reset, save/load a world, render a view, grow the world.

Every handler answers (success + message) instead of raising: a bad path, a corrupt world or a
camera the model cannot render never takes the node down, and a failed save or load leaves
the world in use untouched (world files are written to a temporary name and renamed).

Handlers run one at a time on a thread of their own: a long save, a render on request or a
seed image waiting for its TF must not stall the node's single-threaded executor, which keeps
taking /tf and ticking meanwhile (the callbacks are coroutines awaiting that thread).
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, TypeVar

from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from rclpy.task import Future
from rtfm_ros_interfaces.srv import RenderView, WorldPath
from sensor_msgs.msg import CameraInfo, Image
from std_srvs.srv import Trigger

from rtfm_ros.memory import FrameMemory
from rtfm_ros.ros.conversions import (camera_from_info, depth_to_msg, image_to_msg, msg_to_image, pose_to_matrix,
                                      stamp_to_ns)
from rtfm_ros.tf_buffer import TransformLookupError, clean_frame_id

if TYPE_CHECKING:  # pragma: no cover
    from rtfm_ros.ros.camera_node import CameraNode

LATCHED = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
R = TypeVar("R")


class WorldServices:
    """Registers ~/reset, ~/save_world, ~/load_world, ~/render_view, ~/seed_image and ~/seed_camera_info."""

    def __init__(self, node: "CameraNode") -> None:
        self.node = node
        self.seed_camera = None  # from ~/seed_camera_info
        self.seeded = 0
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="rtfm_services")
        group = MutuallyExclusiveCallbackGroup()
        node.create_service(Trigger, "~/reset", self._off(self.reset), callback_group=group)
        node.create_service(WorldPath, "~/save_world", self._off(self.save_world), callback_group=group)
        node.create_service(WorldPath, "~/load_world", self._off(self.load_world), callback_group=group)
        node.create_service(RenderView, "~/render_view", self._off(self.render_view), callback_group=group)
        node.create_subscription(Image, "~/seed_image", self._off(self.on_seed_image), 10, callback_group=group)
        node.create_subscription(CameraInfo, "~/seed_camera_info", self.on_seed_camera_info, LATCHED,
                                 callback_group=group)

    def _off(self, handler: Callable[..., R]) -> Callable[..., Any]:
        """handler as a coroutine callback that runs it on the services thread and awaits the answer."""
        async def callback(*args: Any) -> R:
            done: Future = Future(executor=self.node.executor)
            done.add_done_callback(lambda _: None)  # completing it wakes the executor to resume us
            def run() -> None:
                try:
                    done.set_result(handler(*args))
                except BaseException as e:  # handlers answer their own errors; this is a bug: re-raised
                    done.set_exception(e)
            self._pool.submit(run)
            return await done
        callback.__name__ = handler.__name__
        return callback

    def close(self) -> None:
        """Finish the request in progress (if any) and stop the services thread."""
        self._pool.shutdown(wait=True, cancel_futures=True)

    @property
    def log(self) -> Any:
        return self.node.get_logger()

    # ------------------------------------------------------------------ world files
    def reset(self, request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        with self.node.world_lock:
            n = len(self.node.world.memory)
            self.node.world.reset()
        response.success, response.message = True, f"forgot {n} frames; the world is empty until seeded again"
        self.log.info(response.message)
        return response

    def save_world(self, request: WorldPath.Request, response: WorldPath.Response) -> WorldPath.Response:
        path = request.path.strip()
        with self.node.world_lock:
            response.frames = len(self.node.world.memory)
            try:
                if not path:
                    raise ValueError("path is empty")
                saved = self.node.world.save(os.path.expanduser(path))
            except Exception as e:  # a failed save keeps the previous file (atomic rename)
                response.success, response.message = False, f"cannot save the world to {path!r}: {e}"
                self.log.error(response.message)
                return response
        response.success, response.message = True, f"saved {response.frames} frames to {saved}"
        self.log.info(response.message)
        return response

    def load_world(self, request: WorldPath.Request, response: WorldPath.Response) -> WorldPath.Response:
        path = request.path.strip()
        try:
            if not path:
                raise ValueError("path is empty")
            if not Path(os.path.expanduser(path)).exists():
                raise FileNotFoundError(f"{path} does not exist")
            memory = FrameMemory.open(os.path.expanduser(path))
        except Exception as e:
            with self.node.world_lock:
                response.frames = len(self.node.world.memory)
            response.success = False
            response.message = f"cannot load world {path!r}: {e}; keeping the current world ({response.frames} frames)"
            self.log.error(response.message)
            return response
        with self.node.world_lock:
            old, self.node.world.memory = self.node.world.memory, memory
            old.close()
        response.success, response.frames = True, len(memory)
        response.message = f"loaded {len(memory)} frames from {path}"
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
            camera = camera_from_info(request.camera_info)
            stamp = stamp_to_ns(request.pose.header.stamp) or node.get_clock().now().nanoseconds
            with node.world_lock:
                out = node.world.render(T, camera, remember=request.remember, return_depth=request.want_depth)
            rgb, depth = out if request.want_depth else (out, None)
            optical = request.camera_info.header.frame_id
            response.image = image_to_msg(rgb, stamp, optical)
            if depth is not None:
                response.depth = depth_to_msg(depth, stamp, optical)
        except (ValueError, EmptyWorldError) as e:
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
