"""Lockstep: a simulator that steps /clock faster than the camera renders loses no observation
(real ROS 2 over Fast DDS, the node spun in this process)."""

from __future__ import annotations

import numpy as np
import pytest
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from node_helpers import SpunNode
from ros_helpers import collect, pick_domain_id, reliable_qos
from sensor_msgs.msg import Image
from tf2_msgs.msg import TFMessage
from waiting import wait_until

from rtfm_ros import geometry as g
from rtfm_ros.camera.config import ConfigError
from rtfm_ros.camera.stream import ClockTicks
from rtfm_ros.io import messages
from rtfm_ros.ros import conversions as c

S = 1_000_000_000
PERIOD = S // 10


def test_clock_ticks_are_every_period_passed_in_order():
    ticks = ClockTicks()
    assert ticks.due(5 * S, PERIOD) == [5 * S]
    assert ticks.due(5 * S + PERIOD // 2, PERIOD) == []
    assert ticks.due(5 * S + 3 * PERIOD, PERIOD) == [5 * S + k * PERIOD for k in (1, 2, 3)]  # a jump: all of them
    assert ticks.due(5 * S + 3 * PERIOD, PERIOD) == []
    assert ticks.due(S, PERIOD) == [S]  # time went back: restart there
    assert ticks.due(S + PERIOD, PERIOD) == [S + PERIOD]


@pytest.fixture(scope="module")
def domain() -> int:
    return pick_domain_id(offset=67)


def test_lockstep_publishes_every_tick_of_a_clock_burst_in_order(assets, domain, ctx):
    from rosgraph_msgs.msg import Clock

    base = {"checkpoint": str(assets["ckpt"]), "world": str(assets["world"]), "device": "cpu",
            "camera_frame": "cam", "camera_frame_convention": "optical", "lazy": False}
    from rclpy.parameter import Parameter

    from rtfm_ros.ros.camera_node import CameraNode

    refused = rclpy.Context()
    rclpy.init(context=refused, domain_id=domain)
    try:
        with pytest.raises(ConfigError, match="use_sim_time"):
            CameraNode(context=refused, parameter_overrides=[Parameter("lockstep", value=True)])
    finally:
        refused.try_shutdown()
    spun = SpunNode(domain, {**base, "lockstep": True, "use_sim_time": True, "rate": 10.0, "tf_timeout": 5.0},
                    node_name="rtfm_lockstep")
    sim = rclpy.create_node("rtfm_test_simulator", context=ctx)
    clock_pub = sim.create_publisher(Clock, "/clock", reliable_qos(depth=100))
    tf_pub = sim.create_publisher(TFMessage, "/tf", reliable_qos(depth=100))
    T0 = assets["frames"][0][1]
    t0 = 1000 * S

    def step(k: int) -> None:
        """A simulator step: the robot's TF at the new time, then the clock."""
        t = t0 + k * PERIOD
        T = g.compose(g.make_transform(translation=(0.002 * k, 0.0, 0.0)), T0)
        tf_pub.publish(TFMessage(transforms=[c.transform_msg(T, "map", "cam", t)]))
        clock_pub.publish(Clock(clock=c.time_msg(t)))

    state = {"burst": False, "polls": 0}
    stats = spun.node.stats

    def simulate() -> None:
        """Step 0 until its image is out (discovery), then 20 steps as fast as they can be published."""
        if stats.images == 0:
            state["polls"] += 1
            if state["polls"] % 4 == 1:
                step(0)
        elif not state["burst"]:
            state["burst"] = True
            for k in range(1, 21):
                step(k)

    def burst_stamps(received: dict) -> list[int]:
        return [t for t in (messages.stamp_to_ns(m.header.stamp) for m in received["/image_raw"]) if t > t0]

    try:
        wait_until(lambda: clock_pub.get_subscription_count() >= 2 and tf_pub.get_subscription_count() >= 1,
                   "the node's /clock and /tf subscriptions are discovered")
        got = collect(ctx, {"/image_raw": (Image, reliable_qos(depth=100)),
                            "/diagnostics": (DiagnosticArray, reliable_qos())},
                      lambda r: len(burst_stamps(r)) >= 20 and bool(r["/diagnostics"]), timeout_s=90,
                      on_spin=simulate)
        assert burst_stamps(got) == [t0 + k * PERIOD for k in range(1, 21)]  # every tick, in order, its own time
        assert stats.dropped == 0 and stats.skipped["lockstep queue full"] == 0
        assert stats.images == 21  # step 0 and the 20 of the burst
        late = [m for m in got["/image_raw"] if messages.stamp_to_ns(m.header.stamp) > t0]
        first, last = (messages.decode_image(late[i]) for i in (0, 19))
        assert not np.array_equal(first, last)  # rendered at each tick's pose
        values = {kv.key for m in got["/diagnostics"] for s in m.status for kv in s.values}
        assert "backlog (ticks queued)" in values
    finally:
        sim.destroy_node()
        spun.close()
