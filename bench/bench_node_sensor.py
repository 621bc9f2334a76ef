"""Camera node as a sensor: 640x480 delivery across processes (both QoS), stream latency with a
~/render_view beside it, and the phantom-near depth share along a long run.

- delivery: the node (this process) publishes 640x480 at --rate; a subscriber in another process
  (same QoS as the node offers) counts what arrives; sent = images the node published meanwhile.
- latency: a 64x64 stream at 10 Hz; image age (arrival - stamp) median / p90, alone and while a
  1024x1024 ~/render_view runs back to back beside it.
- phantom: a MuJoCo world seeded with ground-truth views (with depth); the render worker flies a
  --views-long loop remembering new places; share of published depth pixels >= 20 % nearer than
  ground truth, and share of pixels published, per stretch of the run; depth_source checked vs rendered.

Usage: .venv/bin/python bench/bench_node_sensor.py [--only delivery latency phantom] [--views 500]
"""

from __future__ import annotations

import rtfm_ros  # noqa: F401  first: sets OpenMP's wait policy before torch loads

# isort: split
import argparse
import os
import statistics
import subprocess
import sys
import threading
import time

import numpy as np
import rclpy
from machine import machine
from rclpy.executors import SingleThreadedExecutor
from rclpy.parameter import Parameter
from sensor_msgs.msg import Image

from rtfm_ros import geometry as g

RECEIVER = r"""
import sys, time, rclpy
from rclpy.qos import qos_profile_sensor_data, QoSProfile, ReliabilityPolicy, HistoryPolicy
from sensor_msgs.msg import Image
qos = qos_profile_sensor_data if sys.argv[1] == "sensor_data" else QoSProfile(
    history=HistoryPolicy.KEEP_LAST, depth=2, reliability=ReliabilityPolicy.RELIABLE)
rclpy.init(); node = rclpy.create_node("rtfm_bench_receiver"); got = []
node.create_subscription(Image, "/image_raw", lambda m: got.append(time.monotonic()), qos)
end = time.monotonic() + float(sys.argv[2])
while time.monotonic() < end:
    rclpy.spin_once(node, timeout_sec=0.05)
print(" ".join(f"{t:.4f}" for t in got), flush=True)
"""


def world_model(n_seeds: int = 12, views: int = 500):
    """The bundled model on a MuJoCo world seeded with ground-truth views (with depth) at the start
    of a loop trajectory; (world model, trajectory, sim)."""
    from rtfm_ros.sim.renderer import WorldRenderer
    from rtfm_ros.sim.trajectories import make_trajectory
    from rtfm_ros.sim.worlds import make_world
    from rtfm_ros.world import WorldModel

    wm = WorldModel.load(device="cpu")
    world = make_world(1_000_003)
    traj = make_trajectory(world, "loop", views, seed=7)
    cam = g.PinholeCamera.from_fov(64, 64, 90)
    sim = WorldRenderer(world, cam)
    c = traj.T_world_camera[0][:3, 3]
    for i in range(n_seeds):
        a = 2 * np.pi * i / n_seeds
        T = g.look_at(c, (c[0] + np.cos(a), c[1] + np.sin(a), c[2]))
        rgb, depth = sim.render(T)
        wm.add_frame(rgb, T, cam, depth=depth)
    return wm, traj, sim


def node_with(wm, domain: int, **params):
    from rtfm_ros.ros.camera_node import CameraNode, make_executor

    ctx = rclpy.Context()
    rclpy.init(context=ctx, domain_id=domain)
    node = CameraNode(world_model=wm, context=ctx, parameter_overrides=[
        Parameter("camera_frame", value="cam"), Parameter("camera_frame_convention", value="optical"),
        Parameter("remember_generated", value=False), Parameter("tf_timeout", value=0.0),
        *[Parameter(k, value=v) for k, v in params.items()]])
    ex = make_executor(ctx)
    ex.add_node(node)
    th = threading.Thread(target=ex.spin, daemon=True)
    th.start()
    # a static camera pose: looked up at any time
    from tf2_msgs.msg import TFMessage

    from rtfm_ros.ros.conversions import transform_msg
    node.tf.feed(TFMessage(transforms=[transform_msg(g.look_at((0, 0, 1), (1, 0, 1)), "map", "cam",
                                                                     0)]), static=True)
    return node, ex, ctx


def stop(node, ex, ctx) -> None:
    ex.shutdown(1.0)
    node.destroy_node()
    ctx.try_shutdown()


def delivery(wm, domain: int, seconds: float, rate: float) -> None:
    print("\n| QoS (node and subscriber) | rate (Hz) | images sent | images received | received share |")
    print("|---|---|---|---|---|")
    for qos in ("reliable", "sensor_data"):
        node, ex, ctx = node_with(wm, domain, width=640, height=480, rate=rate, qos=qos, lazy=True)
        rx = subprocess.Popen([sys.executable, "-c", RECEIVER, qos, str(seconds + 8)], stdout=subprocess.PIPE,
                              env={**os.environ, "ROS_DOMAIN_ID": str(domain)}, text=True)
        deadline = time.monotonic() + 30
        while node.stats.images == 0 and time.monotonic() < deadline:  # discovery, warm-up
            time.sleep(0.05)
        time.sleep(1.0)
        n0, t0 = node.stats.images, time.monotonic()
        time.sleep(seconds)
        sent, t1 = node.stats.images - n0, time.monotonic()
        arrivals = [float(t) for t in rx.communicate(timeout=60)[0].split()]
        stop(node, ex, ctx)
        received = sum(1 for t in arrivals if t0 <= t <= t1 + 0.5)  # CLOCK_MONOTONIC is system-wide
        print(f"| {qos} | {rate:g} | {sent} | {received} | {received / max(sent, 1):.0%} |", flush=True)


def latency(wm, domain: int, seconds: float) -> None:
    from rtfm_ros_interfaces.srv import RenderView

    from rtfm_ros.io.messages import stamp_to_ns
    from rtfm_ros.ros.conversions import camera_info_msg, pose_msg

    node, ex, ctx = node_with(wm, domain, width=64, height=64, rate=10.0, lazy=False)
    bctx = rclpy.Context()
    rclpy.init(context=bctx, domain_id=domain)
    bench = rclpy.create_node("rtfm_bench_lat", context=bctx)
    bex = SingleThreadedExecutor(context=bctx)
    bex.add_node(bench)
    ages: list[float] = []
    bench.create_subscription(Image, "/image_raw", lambda m: ages.append((time.time_ns() - stamp_to_ns(
        m.header.stamp)) / 1e6), 10)
    threading.Thread(target=bex.spin, daemon=True).start()
    client = bench.create_client(RenderView, "/rtfm_camera/render_view")
    client.wait_for_service(timeout_sec=30)
    time.sleep(2.0)
    rows = []
    for beside in (False, True):
        ages.clear()
        views, end = 0, time.monotonic() + seconds
        while time.monotonic() < end:
            if beside:
                req = RenderView.Request()
                req.pose.header.frame_id = "map"
                req.pose.pose = pose_msg(g.look_at((0, 0, 1), (0, 1, 1)))
                req.camera_info = camera_info_msg(g.PinholeCamera.from_fov(1024, 1024, 90), 0, "v")
                fut = client.call_async(req)
                while not fut.done() and time.monotonic() < end + 120:
                    time.sleep(0.05)
                views += 1
            else:
                time.sleep(0.1)
        got = list(ages)
        rows.append((beside, len(got) / seconds, statistics.median(got), float(np.percentile(got, 90)), views))
    bex.shutdown(1.0)
    bench.destroy_node()
    bctx.try_shutdown()
    stop(node, ex, ctx)
    print("\n| stream 64x64 @ 10 Hz | images/s received | image age median (ms) | p90 (ms) | 1024x1024 views done |")
    print("|---|---|---|---|---|")
    for beside, hz, med, p90, views in rows:
        print(f"| {'with render_view beside' if beside else 'alone'} | {hz:.1f} | {med:.0f} | {p90:.0f} | {views} |")


def phantom(views: int) -> None:
    from rtfm_ros.camera.lens import Lens
    from rtfm_ros.camera.sensor import phantom_near_share
    from rtfm_ros.camera.worker import Sensor
    from rtfm_ros.camera.world_handle import WorldHandle

    print("\n| depth_source | views | frames at end | phantom-near share (>= 20 % too near) by stretch of the run | "
          "pixels published |")
    print("|---|---|---|---|---|")
    for source in ("checked", "rendered"):
        wm, traj, sim = world_model(views=views)
        worker = WorldHandle(wm, None).worker
        sensor = Sensor(Lens(g.PinholeCamera.from_fov(64, 64, 90)))
        near, published = [], []
        for T in traj.T_world_camera:
            (view,), _ = worker.render_batch([T], [sensor], remember=True, want_depth=True, want_rect=False,
                                             depth_source=source)
            _, truth = sim.render(T)
            share, pub = phantom_near_share(view.depth, truth)
            near.append(share)
            published.append(pub)
        k = max(1, views // 5)
        stretches = " / ".join(f"{100 * np.mean(near[i:i + k]):.1f} %" for i in range(0, views, k))
        print(f"| {source} | {views} | {len(wm.memory)} | {stretches} | {100 * np.mean(published):.0f} % |",
              flush=True)
        sim.close()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", nargs="+", default=["delivery", "latency", "phantom"])
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--rate", type=float, default=5.0)
    ap.add_argument("--views", type=int, default=500)
    args = ap.parse_args()
    print(f"machine: {machine()}")
    domain = 1 + (os.getpid() + 17) % 101
    if "phantom" in args.only:
        phantom(args.views)
    if {"delivery", "latency"} & set(args.only):
        wm, _, sim = world_model(views=10)
        sim.close()
        if "delivery" in args.only:
            delivery(wm, domain, args.seconds, args.rate)
        if "latency" in args.only:
            latency(wm, domain, args.seconds)


if __name__ == "__main__":
    main()
