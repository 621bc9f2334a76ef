"""Camera node under a robot's TF, and lockstep throughput, over real ROS 2 (Fast DDS).

Rate: a child process publishes map -> odom and odom -> base_link on two timers at --tf-rates Hz
each (the period wandering by +-20 %, as a robot's does), stamped --tf-latency before they are
sent (odometry is stamped when measured and arrives later), and a static camera mount; the node
(spun in this process) renders at --rate Hz with lazy off. Counts, over --seconds after the first
image: ticks, images published, images stamped with the newest pose, dropped ticks and TF skips,
for the default pose timing (tf_tolerance 0.25 s) and the strict one (tf_tolerance 0: stamp = tick).

Lockstep: the node on sim time with lockstep; this process steps a simulator (TF at the step's
time, then /clock): --steps ticks in one burst, and --steps ticks one at a time waiting for each
image. Reports images received and images per second.

Usage: .venv/bin/python bench/bench_tf_rate.py [--tf-rates 10,20,50] [--tf-latency 0.03] [--rate 5] [--size 96]
       [--seconds 15] [--steps 50]
Prints markdown tables with the machine it ran on.
"""

from __future__ import annotations

import rtfm_ros  # noqa: F401  first: sets OpenMP's wait policy before torch loads

# isort: split
import argparse
import math
import os
import subprocess
import sys
import threading
import time
from typing import Any

import numpy as np
import rclpy
import torch
from bench_model import seeded_world
from machine import machine
from rclpy.executors import SingleThreadedExecutor
from rclpy.parameter import Parameter
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image
from tf2_msgs.msg import TFMessage

from rtfm_ros import geometry as g
from rtfm_ros.io.messages import stamp_to_ns
from rtfm_ros.ros.camera_node import CameraNode, make_executor
from rtfm_ros.ros.conversions import time_msg, transform_msg
from rtfm_ros.world import WorldModel

RELIABLE = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
MOUNT = g.make_transform(g.R_BODY_OPTICAL, (0.0, 0.0, 1.0))  # base_link -> cam (optical axes), 1 m up, forward


def base_at(t: float) -> np.ndarray:
    """odom -> base_link: turning on the spot at 0.2 rad/s (inside the seeded ring, looking out)."""
    a = 0.2 * t
    return g.make_transform(g.quat_to_matrix([0.0, 0.0, math.sin(a / 2), math.cos(a / 2)]))


def tf_child(rate_hz: float, latency_s: float) -> None:
    """Separate process (as on a robot): map -> odom and odom -> base_link at rate_hz, stamped
    latency_s before they are sent, until stdin closes."""
    rclpy.init()
    node = rclpy.create_node(f"rtfm_bench_robot_{os.getpid()}")
    static = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                        durability=rclpy.qos.DurabilityPolicy.TRANSIENT_LOCAL)
    node.create_publisher(TFMessage, "/tf_static", static).publish(
        TFMessage(transforms=[transform_msg(MOUNT, "base_link", "cam", 0)]))
    loc, odo = (node.create_publisher(TFMessage, "/tf", RELIABLE) for _ in range(2))
    start = time.time()
    lag = int(latency_s * 1e9)
    done = threading.Event()
    threading.Thread(target=lambda: (sys.stdin.read(), done.set()), daemon=True).start()
    rng = np.random.default_rng(0)
    while not done.is_set():  # a robot's period wanders by +-20 %: its phase against the camera's drifts
        loc.publish(TFMessage(transforms=[transform_msg(np.eye(4), "map", "odom", time.time_ns() - lag)]))
        time.sleep(float(rng.uniform(0.0, 0.2)) / rate_hz)  # odometry comes on its own timer
        odo.publish(TFMessage(transforms=[transform_msg(base_at(time.time() - start), "odom", "base_link",
                                                        time.time_ns() - lag)]))
        time.sleep(float(rng.uniform(0.6, 1.0)) / rate_hz)
    node.destroy_node()
    rclpy.try_shutdown()


class Node:
    """A CameraNode on its own context and executor thread, and a client context beside it."""

    def __init__(self, wm: WorldModel, domain: int, params: dict[str, Any]) -> None:
        self.ctx, self.client_ctx = rclpy.Context(), rclpy.Context()
        rclpy.init(context=self.ctx, domain_id=domain)
        rclpy.init(context=self.client_ctx, domain_id=domain)
        self.node = CameraNode(world_model=wm, context=self.ctx,
                               parameter_overrides=[Parameter(k, value=v) for k, v in params.items()])
        self.executor = make_executor(self.ctx)
        self.executor.add_node(self.node)
        self.client = rclpy.create_node("rtfm_bench_client", context=self.client_ctx)
        self.client_exec = SingleThreadedExecutor(context=self.client_ctx)
        self.client_exec.add_node(self.client)
        self.thread = threading.Thread(target=self.executor.spin, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.executor.shutdown()
        self.thread.join(5)
        self.client_exec.shutdown()
        self.client.destroy_node()
        self.node.destroy_node()
        self.client_ctx.try_shutdown()
        self.ctx.try_shutdown()


def run_rate(wm: WorldModel, domain: int, tf_rate: float, tolerance: float, args: argparse.Namespace) -> dict:
    child = subprocess.Popen([sys.executable, __file__, "--tf-child", str(tf_rate), "--tf-latency",
                              str(args.tf_latency)], stdin=subprocess.PIPE,
                             env={**os.environ, "ROS_DOMAIN_ID": str(domain)})
    n = Node(wm, domain, {"width": args.size, "height": args.size, "rate": args.rate, "camera_frame": "cam",
                          "camera_frame_convention": "optical", "remember_generated": False, "lazy": False,
                          "tf_tolerance": tolerance})
    s = n.node.stats
    try:
        deadline = time.monotonic() + 60
        while s.images == 0 and time.monotonic() < deadline:  # discovery
            time.sleep(0.05)
        with s._lock:
            before = (s.ticks, s.images, s.stamped_newest, s.dropped, sum(v for k, v in s.skipped.items()
                                                                          if k.startswith("tf")))
        time.sleep(args.seconds)
        with s._lock:
            after = (s.ticks, s.images, s.stamped_newest, s.dropped, sum(v for k, v in s.skipped.items()
                                                                         if k.startswith("tf")))
    finally:
        n.close()
        child.stdin.close()
        child.wait(30)
    ticks, images, newest, dropped, tf_skips = (b - a for a, b in zip(before, after))
    return {"tf": tf_rate, "tolerance": tolerance, "ticks": ticks, "images": images, "newest": newest,
            "dropped": dropped, "tf_skips": tf_skips}


def run_lockstep(wm: WorldModel, domain: int, args: argparse.Namespace) -> list[dict]:
    from rosgraph_msgs.msg import Clock

    n = Node(wm, domain, {"width": args.size, "height": args.size, "rate": 10.0, "camera_frame": "cam",
                          "camera_frame_convention": "optical", "remember_generated": False, "lazy": False,
                          "use_sim_time": True, "lockstep": True, "lockstep_queue": max(32, args.steps),
                          "tf_timeout": 5.0})
    got: list[int] = []
    n.client.create_subscription(Image, "image_raw", lambda m: got.append(stamp_to_ns(m.header.stamp)),
                                 QoSProfile(depth=200, reliability=ReliabilityPolicy.RELIABLE))
    clock = n.client.create_publisher(Clock, "/clock", RELIABLE)
    tf = n.client.create_publisher(TFMessage, "/tf", RELIABLE)
    t0, period = 1000 * 10**9, 10**8
    k = [0]

    def step() -> int:
        t = t0 + k[0] * period
        T = base_at(k[0] * 0.1) @ MOUNT
        tf.publish(TFMessage(transforms=[transform_msg(T, "map", "cam", t)]))
        clock.publish(Clock(clock=time_msg(t)))
        k[0] += 1
        return t

    def wait(until: Any, timeout: float = 120.0) -> None:
        end = time.monotonic() + timeout
        while not until() and time.monotonic() < end:
            n.client_exec.spin_once(timeout_sec=0.01)

    rows = []
    try:
        wait(lambda: clock.get_subscription_count() >= 2 and tf.get_subscription_count() >= 1, 30)
        while not got and k[0] < 200:  # single steps until an image arrives (discovery)
            step()
            wait(lambda: bool(got), 0.5)
        start_len = len(got)
        t_start = time.monotonic()
        burst = [step() for _ in range(args.steps)]
        wait(lambda: len(got) >= start_len + args.steps)
        elapsed = time.monotonic() - t_start
        received = [t for t in got[start_len:] if t in set(burst)]
        rows.append({"mode": f"burst of {args.steps} ticks", "received": len(received), "sent": args.steps,
                     "in_order": received == sorted(received), "per_s": len(received) / elapsed})
        start_len = len(got)
        t_start = time.monotonic()
        for _ in range(args.steps):
            want = step()
            wait(lambda want=want: want in got[start_len:], 30)
        elapsed = time.monotonic() - t_start
        rows.append({"mode": f"{args.steps} ticks, each waiting for its image", "received": len(got) - start_len,
                     "sent": args.steps, "in_order": got[start_len:] == sorted(got[start_len:]),
                     "per_s": (len(got) - start_len) / elapsed})
        rows[-1]["dropped"] = n.node.stats.dropped
        rows[0]["dropped"] = n.node.stats.dropped
    finally:
        n.close()
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tf-child", type=float, help=argparse.SUPPRESS)
    ap.add_argument("--tf-rates", default="10,20,50")
    ap.add_argument("--tf-latency", type=float, default=0.03, help="seconds TF is stamped before it is sent")
    ap.add_argument("--rate", type=float, default=5.0)
    ap.add_argument("--size", type=int, default=96)
    ap.add_argument("--seconds", type=float, default=15.0)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--domain", type=int, default=1 + os.getpid() % 101)
    args = ap.parse_args()
    if args.tf_child:
        tf_child(args.tf_child, args.tf_latency)
        return
    from rtfm_ros.learn.config import preset
    from rtfm_ros.learn.depth_prior import DepthPrior

    torch.manual_seed(0)
    torch.set_num_threads(1)
    wm = WorldModel(DepthPrior(preset("tiny")), device="cpu")
    seeded_world(wm, width=args.size, height=args.size)
    print(f"machine: {machine(f'torch {torch.__version__}, untrained tiny model, 1 torch thread')}")
    print(f"\nnode at {args.rate:g} Hz, {args.size}x{args.size}, {args.seconds:g} s after the first image; TF "
          f"stamped {1000 * args.tf_latency:g} ms before it is sent; tf_timeout 0.1 s\n")
    print("| TF rate | tf_tolerance | ticks | images published | images / ticks | stamped with newest pose "
          "| dropped (busy) | TF skips |")
    print("|---|---|---|---|---|---|---|---|")
    for tf_rate in (float(x) for x in args.tf_rates.split(",")):
        for tolerance in (0.25, 0.0):
            r = run_rate(wm, args.domain, tf_rate, tolerance, args)
            share = r["images"] / r["ticks"] if r["ticks"] else float("nan")
            print(f"| {tf_rate:g} Hz | {tolerance:g} s | {r['ticks']} | {r['images']} | {share:.1%} | {r['newest']} "
                  f"| {r['dropped']} | {r['tf_skips']} |", flush=True)
    print(f"\nlockstep, {args.size}x{args.size}, ticks every 0.1 s of sim time\n")
    print("| clock | images received / ticks | in order | images per second (wall) |")
    print("|---|---|---|---|")
    for r in run_lockstep(wm, args.domain, args):
        print(f"| {r['mode']} | {r['received']} / {r['sent']} | {'yes' if r['in_order'] else 'no'} "
              f"| {r['per_s']:.1f} |", flush=True)


if __name__ == "__main__":
    main()
