"""Camera node: TF -> image latency and sustained rate, over real ROS 2 (Fast DDS) in one process.

A child process streams map -> cam at --tf-rate Hz (stamp = publish time, as a robot's TF);
the node (its own context, spun by camera_node.make_executor) renders at --rate Hz; a subscriber on another
context records when each image arrives. Latency = arrival time - publish time of the first TF sample at or after the
image's stamp (the sample that let the node render that stamp); compare with the model's render
time (goal: latency <= render + 5 ms). The rate test counts images received and ticks dropped.

Usage: .venv/bin/python bench/bench_node.py [--checkpoint DIR] [--device auto] [--seconds 10] [--rate 10]
Prints a markdown table (medians) with the machine it ran on.
"""

from __future__ import annotations

import rtfm_ros  # noqa: F401  first: sets OpenMP's wait policy before torch loads

# isort: split
import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np
import rclpy
import torch
from bench_model import seeded_world
from rclpy.executors import SingleThreadedExecutor
from rclpy.parameter import Parameter
from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import Image
from tf2_msgs.msg import TFMessage

from rtfm_ros.geometry import look_at
from rtfm_ros.io.messages import stamp_to_ns
from rtfm_ros.ros.camera_node import CameraNode, make_executor
from rtfm_ros.ros.conversions import transform_msg
from rtfm_ros.runtime import serving_threads
from rtfm_ros.world import WorldModel


def load_world(checkpoint: str | None, device: str) -> tuple[WorldModel, str]:
    try:
        wm = WorldModel.load(checkpoint, device=device)
        return wm, str(checkpoint or "bundled default")
    except ValueError as e:  # no bundled model yet: the speed is the same for untrained weights
        from rtfm_ros.learn.config import preset
        from rtfm_ros.learn.depth_prior import DepthPrior
        print(f"note: {e}; timing an untrained tiny model")
        torch.manual_seed(0)
        return WorldModel(DepthPrior(preset("tiny")), device=device), "untrained tiny"


def tf_child(tf_rate: float, out: str) -> None:
    """Separate process (as on a robot): publish map -> cam at tf_rate Hz until stdin closes; save the stamps."""
    rclpy.init()
    node = rclpy.create_node(f"rtfm_bench_tf_{os.getpid()}")
    pub = node.create_publisher(TFMessage, "/tf", QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE))
    sent: list[int] = []
    done = threading.Event()
    threading.Thread(target=lambda: (sys.stdin.read(), done.set()), daemon=True).start()
    period, k, start = 1.0 / tf_rate, 0, time.monotonic()
    while not done.is_set():
        a = 0.2 * time.monotonic()
        T = look_at([np.cos(a), np.sin(a), 1.0], [3 * np.cos(a), 3 * np.sin(a), 1.0])
        t = time.time_ns()
        pub.publish(TFMessage(transforms=[transform_msg(T, "map", "cam", t)]))
        sent.append(t)
        k += 1
        time.sleep(max(0.0, start + k * period - time.monotonic()))
    np.save(out, np.array(sent, dtype=np.int64), allow_pickle=False)
    node.destroy_node()
    rclpy.try_shutdown()


def run(wm: WorldModel, size: int, rate: float, seconds: float, tf_rate: float, domain: int, threads: int) -> dict:
    node_ctx, bench_ctx = rclpy.Context(), rclpy.Context()
    rclpy.init(context=node_ctx, domain_id=domain)
    rclpy.init(context=bench_ctx, domain_id=domain)
    node = CameraNode(world_model=wm, context=node_ctx, parameter_overrides=[
        Parameter("width", value=size), Parameter("height", value=size), Parameter("rate", value=rate),
        Parameter("camera_frame", value="cam"), Parameter("camera_frame_convention", value="optical"),
        Parameter("remember_generated", value=False), Parameter("lazy", value=True),
        Parameter("torch_threads", value=threads)])
    node_exec = make_executor(node_ctx)
    node_exec.add_node(node)
    bench = rclpy.create_node("rtfm_bench", context=bench_ctx)
    bench_exec = SingleThreadedExecutor(context=bench_ctx)
    bench_exec.add_node(bench)
    arrivals: list[tuple[int, int]] = []  # (image stamp, arrival time)
    bench.create_subscription(Image, "image_raw", lambda m: arrivals.append((stamp_to_ns(m.header.stamp),
                                                                              time.time_ns())), qos_profile_sensor_data)
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "sent.npy")
        child = subprocess.Popen([sys.executable, __file__, "--tf-child", out, "--tf-rate", str(tf_rate)],
                                 stdin=subprocess.PIPE, env={**os.environ, "ROS_DOMAIN_ID": str(domain)})
        threads = [threading.Thread(target=e.spin, daemon=True) for e in (node_exec, bench_exec)]
        for th in threads:
            th.start()
        try:
            deadline = time.monotonic() + 60
            while len(arrivals) < 3 and time.monotonic() < deadline:  # discovery + warm-up
                time.sleep(0.05)
            n0, dropped0, t0 = len(arrivals), node.stats.dropped, time.monotonic()
            skipped0 = sum(v for k, v in node.stats.skipped.items() if k.startswith("tf"))
            node.stats.recent_render_s.clear()
            time.sleep(seconds)
            n1, dropped1, t1 = len(arrivals), node.stats.dropped, time.monotonic()
            skipped = sum(v for k, v in node.stats.skipped.items() if k.startswith("tf")) - skipped0
            window, renders = arrivals[n0:n1], list(node.stats.recent_render_s)
        finally:
            child.stdin.close()
            child.wait(30)
            node_exec.shutdown()
            bench_exec.shutdown()
            for th in threads:
                th.join(5)
            node.destroy_node()
            bench.destroy_node()
            node_ctx.try_shutdown()
            bench_ctx.try_shutdown()
        sent = np.load(out, allow_pickle=False)
    lat = []
    for stamp, arrived in window:
        i = int(np.searchsorted(sent, stamp))
        if i < len(sent):
            lat.append((arrived - int(sent[i])) / 1e6)
    age = [(arrived - stamp) / 1e6 for stamp, arrived in window]
    render_ms = 1000 * statistics.median(renders) if renders else float("nan")
    return {"size": size, "rate": rate, "received_hz": (n1 - n0) / (t1 - t0), "dropped": dropped1 - dropped0,
            "skipped": skipped, "render_ms": render_ms, "lat_ms": statistics.median(lat) if lat else float("nan"),
            "lat_p90_ms": float(np.percentile(lat, 90)) if lat else float("nan"), "age_ms": statistics.median(age)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--checkpoint")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--rate", type=float, default=10.0)
    ap.add_argument("--tf-rate", type=float, default=100.0)
    ap.add_argument("--tf-child", metavar="OUT", help=argparse.SUPPRESS)
    ap.add_argument("--sizes", type=int, nargs="+", default=[64, 128])
    ap.add_argument("--threads", type=int, default=0, help="the node's torch_threads (0: auto, all cores but one)")
    args = ap.parse_args()
    if args.tf_child:
        return tf_child(args.tf_rate, args.tf_child)
    wm, name = load_world(args.checkpoint, args.device)
    seeded_world(wm)
    domain = 1 + os.getpid() % 101
    load = os.getloadavg()[0]
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores (load {load:.1f}), "
          f"torch_threads {args.threads or f'auto ({serving_threads()})'}, device {wm.device}, model {name}, "
          f"TF at {args.tf_rate:g} Hz, "
          f"{args.seconds:g} s per row")
    print("| resolution | rate (Hz) | images/s received | dropped ticks | TF-skipped | render (ms) | "
          "TF -> image latency median / p90 (ms) | latency - render (ms) | stamp age (ms) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for size in args.sizes:
        r = run(wm, size, args.rate, args.seconds, args.tf_rate, domain, args.threads)
        print(f"| {size}x{size} | {r['rate']:g} | {r['received_hz']:.1f} | {r['dropped']} | {r['skipped']} | "
              f"{r['render_ms']:.1f} | {r['lat_ms']:.1f} / {r['lat_p90_ms']:.1f} | "
              f"{r['lat_ms'] - r['render_ms']:.1f} | {r['age_ms']:.1f} |", flush=True)


if __name__ == "__main__":
    main()
