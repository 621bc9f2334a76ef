"""A robot's TF as real stacks publish it, in a child process: map -> odom (localisation) and
odom -> base_link (odometry) on two timers at a given rate, each stamped LATENCY_S before it is
sent (odometry is stamped when measured and arrives later),
and a static base_link -> camera_link mount (a body-axes camera, plus a second mount for a stereo
pair's right camera, BASELINE_M to the right of it).

Run as ``python tf_robot.py RATE_HZ``; the base drives slowly round a circle so the poses change.
"""

from __future__ import annotations

import math
import os
import sys
import time

import numpy as np
import rclpy
from ros_helpers import reliable_qos, spin_child
from tf2_msgs.msg import TFMessage

from rtfm_ros import geometry as g
from rtfm_ros.ros import conversions as c

BASELINE_M = 0.12
LATENCY_S = 0.03
T_BASE_CAMERA = g.make_transform(translation=(0.1, 0.0, 0.4))
T_BASE_RIGHT = g.make_transform(translation=(0.1, -BASELINE_M, 0.4))  # body axes: -y is to the right


def base_at(t: float) -> np.ndarray:
    """odom -> base_link: 0.05 rad/s round a 0.3 m circle at the test world's centre."""
    a = 0.05 * t
    yaw = a + math.pi / 2
    return g.make_transform(g.quat_to_matrix([0, 0, math.sin(yaw / 2), math.cos(yaw / 2)]),
                            (1.1 + 0.3 * math.cos(a), 1.0 + 0.3 * math.sin(a), 0.1))


def main(rate_hz: float) -> int:
    rclpy.init()
    node = rclpy.create_node(f"rtfm_test_robot_{os.getpid()}")
    static = TFMessage(transforms=[c.transform_msg(T_BASE_CAMERA, "base_link", "camera_link", 0),
                                   c.transform_msg(T_BASE_RIGHT, "base_link", "right_camera_link", 0)])
    node.create_publisher(TFMessage, "/tf_static", reliable_qos(latched=True)).publish(static)
    localisation = node.create_publisher(TFMessage, "/tf", reliable_qos(depth=100))
    odometry = node.create_publisher(TFMessage, "/tf", reliable_qos(depth=100))
    parent, start = os.getppid(), time.time()

    lag = int(LATENCY_S * 1e9)

    def publish_map_odom() -> None:
        stamp = node.get_clock().now().nanoseconds - lag
        localisation.publish(TFMessage(transforms=[c.transform_msg(np.eye(4), "map", "odom", stamp)]))
        if os.getppid() != parent:
            raise SystemExit(0)

    def publish_odom_base() -> None:
        stamp = node.get_clock().now().nanoseconds - lag
        odometry.publish(TFMessage(transforms=[c.transform_msg(base_at(stamp / 1e9 - start), "odom", "base_link",
                                                               stamp)]))

    node.create_timer(1.0 / rate_hz, publish_map_odom)
    node.create_timer(1.0 / rate_hz, publish_odom_base)
    print(f"publishing TF at {rate_hz:g} Hz", flush=True)
    return spin_child(node)


if __name__ == "__main__":
    sys.exit(main(float(sys.argv[1])))
