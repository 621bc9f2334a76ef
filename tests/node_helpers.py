"""What the camera node tests share: the test robot's TF (a child process), a node spun in this
process, a service caller, and waiting for images stamped after a moment.

The TF child (this file run as ``python node_helpers.py tf-child``) publishes the chain map ->
odom -> base_link -> camera_link (odom -> base_link at 50 Hz, stamped now, at a pose the test
sends it on POSE_TOPIC).
"""

from __future__ import annotations

import math
import os
import sys
import threading
from pathlib import Path

import numpy as np
import rclpy
from geometry_msgs.msg import Pose
from rclpy.parameter import Parameter
from rclpy.qos import qos_profile_sensor_data
from ros_helpers import collect, reliable_qos, spin_child
from sensor_msgs.msg import Image
from tf2_msgs.msg import TFMessage

from rtfm_ros import geometry as g
from rtfm_ros.io import messages, tf_messages
from rtfm_ros.ros import conversions as c

S = 1_000_000_000
REPO = Path(__file__).resolve().parent.parent
POSE_TOPIC = "/rtfm_test/base_pose"
T_BASE_CAMERA = g.make_transform(translation=(0.1, 0.0, 0.4))  # camera_link: body axes, x forward
T_BASE_LEFT = g.make_transform(g.quat_to_matrix([0, 0, math.sqrt(0.5), math.sqrt(0.5)]), (0.0, 0.1, 0.4))
SENSOR = qos_profile_sensor_data


def base_pose(x: float, y: float, yaw: float) -> Pose:
    return c.pose_msg(g.make_transform(g.quat_to_matrix([0, 0, math.sin(yaw / 2), math.cos(yaw / 2)]),
                                             (x, y, 0.1)))


POSE_A, POSE_B = base_pose(1.0, 1.0, 0.0), base_pose(1.0, 1.0, math.pi / 2)


# ---------------------------------------------------------------------------------- TF child
def tf_child_main() -> int:
    """Publish static map->odom, base_link->camera_link/left_camera_link and odom->base_link at 50 Hz."""
    rclpy.init()
    node = rclpy.create_node(f"rtfm_test_tf_{os.getpid()}")
    static = TFMessage(transforms=[
        c.transform_msg(np.eye(4), "map", "odom", 0),
        c.transform_msg(T_BASE_CAMERA, "base_link", "camera_link", 0),
        c.transform_msg(T_BASE_LEFT, "base_link", "left_camera_link", 0)])
    node.create_publisher(TFMessage, "/tf_static", reliable_qos(latched=True)).publish(static)
    pub = node.create_publisher(TFMessage, "/tf", reliable_qos())
    pose = {"T": tf_messages.pose_to_matrix(POSE_A)}
    node.create_subscription(Pose, POSE_TOPIC, lambda m: pose.update(T=tf_messages.pose_to_matrix(m)),
                             reliable_qos(True))
    parent = os.getppid()

    def tick() -> None:
        stamp = node.get_clock().now().nanoseconds
        pub.publish(TFMessage(transforms=[c.transform_msg(pose["T"], "odom", "base_link", stamp)]))
        if os.getppid() != parent:
            raise SystemExit(0)

    node.create_timer(0.02, tick)
    return spin_child(node)


# ---------------------------------------------------------------------------------- helpers
def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(255.0**2 / mse)


def images_after(ctx, topic: str, after_ns: int, n: int = 1, timeout_s: float = 15.0, **kw) -> list:
    """The first n images on topic stamped after after_ns."""
    def late(r):
        return [m for m in r[topic] if messages.stamp_to_ns(m.header.stamp) > after_ns]
    got = collect(ctx, {topic: (Image, SENSOR)}, lambda r: len(late(r)) >= n, timeout_s, **kw)
    return late(got)[:n]


class Caller:
    """Service calls from one client node (clients kept, so discovery is paid once per service)."""

    def __init__(self, ctx) -> None:
        from rclpy.executors import SingleThreadedExecutor

        self.node = rclpy.create_node(f"rtfm_test_client_{os.getpid()}", context=ctx)
        self.executor = SingleThreadedExecutor(context=ctx)
        self.executor.add_node(self.node)
        self.clients: dict[str, object] = {}

    def __call__(self, srv_type, name: str, request, timeout_s: float = 20.0):
        if name not in self.clients:
            self.clients[name] = self.node.create_client(srv_type, name)
        client = self.clients[name]
        assert client.wait_for_service(timeout_sec=timeout_s), f"service {name} did not appear"
        future = client.call_async(request)
        self.executor.spin_until_future_complete(future, timeout_sec=timeout_s)
        assert future.done(), f"service {name} did not answer"
        return future.result()

    def set_params(self, node_name: str, **values) -> list:
        from rcl_interfaces.srv import SetParameters
        req = SetParameters.Request(parameters=[Parameter(k, value=v).to_parameter_msg() for k, v in values.items()])
        return self(SetParameters, f"/{node_name}/set_parameters", req).results

    def close(self) -> None:
        self.executor.shutdown()
        self.node.destroy_node()


class SpunNode:
    """A CameraNode on its own context, spun by the node's own executor in a thread."""

    def __init__(self, domain_id: int, overrides: dict, **kwargs) -> None:
        from rtfm_ros.ros.camera_node import CameraNode, make_executor

        self.context = rclpy.Context()
        rclpy.init(context=self.context, domain_id=domain_id)
        params = [Parameter(k, value=v) for k, v in overrides.items()]
        self.node = CameraNode(context=self.context, parameter_overrides=params, **kwargs)
        self.executor = make_executor(self.context)
        self.executor.add_node(self.node)
        self.thread = threading.Thread(target=self.executor.spin, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.executor.shutdown()
        self.thread.join(5)
        self.node.destroy_node()
        self.context.try_shutdown()


if __name__ == "__main__":
    if sys.argv[1:] != ["tf-child"]:
        sys.exit("usage: node_helpers.py tf-child")
    sys.exit(tf_child_main())
