"""Reusable pieces for tests that talk real ROS 2 (Fast DDS) across processes.

- pick_domain_id(): a ROS domain per test run (from the pid), so parallel runs do not cross.
- ros_context(domain_id): an rclpy context of its own, shut down afterwards.
- spawn_ros_process(argv, domain_id): a child process with the domain set, output kept in a
  file (a pipe could fill and block it), killed on exit.
- spawn_publisher(specs, domain_id): a child Python process that publishes given messages
  (serialised here, published there) until stopped; run as ``python ros_helpers.py publish``.
- collect(...) / wait_for_messages(...): spin a subscriber with a deadline; fail if nothing comes.
"""

from __future__ import annotations

import base64
import importlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import rclpy
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from rclpy.serialization import deserialize_message, serialize_message

DEFAULT_TIMEOUT_S = 20.0
CHILD_LIFETIME_S = 120.0  # a child outliving a crashed test stops by itself


def pick_domain_id(offset: int = 0) -> int:
    """A domain id in 1..101 from the pid (0, the default domain, is left to real systems)."""
    return 1 + (os.getpid() + offset) % 101


def reliable_qos(latched: bool = False, depth: int = 10) -> QoSProfile:
    """Reliable QoS; latched = transient local with depth 1, as /tf_static uses."""
    return QoSProfile(
        history=HistoryPolicy.KEEP_LAST,
        depth=1 if latched else depth,
        reliability=ReliabilityPolicy.RELIABLE,
        durability=DurabilityPolicy.TRANSIENT_LOCAL if latched else DurabilityPolicy.VOLATILE,
    )


@contextmanager
def ros_context(domain_id: int) -> Iterator[Context]:
    """A fresh rclpy context on domain_id, always shut down."""
    context = Context()
    rclpy.init(context=context, domain_id=domain_id)
    try:
        yield context
    finally:
        context.try_shutdown()


def type_name(msg_or_type: Any) -> str:
    """'sensor_msgs/msg/Image' for an Image message or class."""
    cls = msg_or_type if isinstance(msg_or_type, type) else type(msg_or_type)
    package, kind = cls.__module__.split(".")[:2]
    return f"{package}/{kind}/{cls.__name__}"


def import_type(name: str) -> type:
    """The message class for 'package/msg/Name'."""
    package, kind, cls = name.split("/")
    return getattr(importlib.import_module(f"{package}.{kind}"), cls)


class RosProcess:
    """A child process on a given ROS domain; stop() (or leaving the with-block) ends it."""

    def __init__(self, argv: Sequence[str], domain_id: int, stdin_text: str | None = None, env: dict | None = None):
        self._log = tempfile.TemporaryFile()
        child_env = {**os.environ, **(env or {}), "ROS_DOMAIN_ID": str(domain_id), "PYTHONUNBUFFERED": "1"}
        self.argv = list(argv)
        self.proc = subprocess.Popen(
            self.argv, stdin=subprocess.PIPE if stdin_text is not None else subprocess.DEVNULL,
            stdout=self._log, stderr=subprocess.STDOUT, env=child_env,
        )
        if stdin_text is not None:
            self.proc.stdin.write(stdin_text.encode())
            self.proc.stdin.close()

    def alive(self) -> bool:
        return self.proc.poll() is None

    def output(self) -> str:
        """Everything the child printed so far (stdout and stderr)."""
        self._log.flush()
        self._log.seek(0)
        return self._log.read().decode(errors="replace")

    def check_alive(self) -> None:
        """Fail with the child's output if it has exited."""
        if not self.alive():
            raise AssertionError(
                f"child {self.argv} exited with code {self.proc.returncode}; its output:\n{self.output()[-4000:]}"
            )

    def stop(self, timeout_s: float = 5.0) -> int:
        """SIGTERM, then SIGKILL after timeout_s; returns the exit code."""
        if self.alive():
            self.proc.terminate()
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout_s)
        return self.proc.returncode

    def __enter__(self) -> RosProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
        self._log.close()


def spawn_ros_process(argv: Sequence[str], domain_id: int, **kwargs: Any) -> RosProcess:
    """Start argv (e.g. [sys.executable, '-m', 'rtfm_ros.ros.camera_node']) on domain_id."""
    return RosProcess(argv, domain_id, **kwargs)


@dataclass
class PublishSpec:
    """What a publisher child sends: msg on topic, repeatedly (or once, latched)."""

    topic: str
    msg: Any
    latched: bool = False


def spawn_publisher(specs: Sequence[PublishSpec], domain_id: int, rate_hz: float = 10.0) -> RosProcess:
    """A child Python process publishing each spec's message until stopped."""
    payload = [
        {
            "topic": s.topic,
            "type": type_name(s.msg),
            "cdr": base64.b64encode(bytes(serialize_message(s.msg))).decode(),
            "latched": s.latched,
        }
        for s in specs
    ]
    text = json.dumps({"rate_hz": rate_hz, "lifetime_s": CHILD_LIFETIME_S, "parent": os.getpid(), "specs": payload})
    return RosProcess([sys.executable, os.path.abspath(__file__), "publish"], domain_id, stdin_text=text)


def collect(
    context: Context,
    topics: dict[str, tuple[type, QoSProfile]],
    until: Callable[[dict[str, list]], bool],
    timeout_s: float = DEFAULT_TIMEOUT_S,
    process: RosProcess | None = None,
    on_spin: Callable[[], None] | None = None,
) -> dict[str, list]:
    """Subscribe to topics and spin until until(received) holds; fail after timeout_s.

    process, if given, is checked while waiting (a crashed child fails at once, with its output);
    on_spin runs every spin (to publish from this process, say).
    """
    received: dict[str, list] = {t: [] for t in topics}
    node = rclpy.create_node(f"rtfm_test_listener_{os.getpid()}", context=context)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    try:
        for topic, (msg_type, qos) in topics.items():
            node.create_subscription(msg_type, topic, received[topic].append, qos)
        deadline = time.monotonic() + timeout_s
        while not until(received):
            if process is not None:
                process.check_alive()
            if time.monotonic() > deadline:
                counts = {t: len(v) for t, v in received.items()}
                tail = f"\nchild output:\n{process.output()[-4000:]}" if process is not None else ""
                raise AssertionError(f"timed out after {timeout_s} s waiting for messages; received {counts}{tail}")
            if on_spin is not None:
                on_spin()
            executor.spin_once(timeout_sec=0.05)
        return received
    finally:
        executor.shutdown()
        node.destroy_node()


def wait_for_messages(
    context: Context, topic: str, msg_type: type, count: int = 1, qos: QoSProfile | None = None,
    timeout_s: float = DEFAULT_TIMEOUT_S, process: RosProcess | None = None,
) -> list:
    """The first count messages on topic (reliable QoS by default); fails after timeout_s."""
    got = collect(context, {topic: (msg_type, qos or reliable_qos())}, lambda r: len(r[topic]) >= count,
                  timeout_s, process)
    return got[topic][:count]


def _publish_main() -> int:
    """Child side of spawn_publisher: read the specs from stdin and publish until stopped."""
    import signal

    config = json.loads(sys.stdin.read())
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    rclpy.init()  # domain from ROS_DOMAIN_ID
    node = rclpy.create_node(f"rtfm_test_publisher_{os.getpid()}")
    repeated = []
    for spec in config["specs"]:
        msg_type = import_type(spec["type"])
        msg = deserialize_message(base64.b64decode(spec["cdr"]), msg_type)
        pub = node.create_publisher(msg_type, spec["topic"], reliable_qos(spec["latched"]))
        if spec["latched"]:
            pub.publish(msg)
        else:
            repeated.append((pub, msg))

    def tick() -> None:
        for pub, msg in repeated:
            pub.publish(msg)
        if os.getppid() != config["parent"]:
            raise SystemExit(0)  # the test process is gone

    node.create_timer(1.0 / config["rate_hz"], tick)
    print(f"publishing {[s['topic'] for s in config['specs']]}", flush=True)
    end = time.monotonic() + config["lifetime_s"]
    try:
        while rclpy.ok() and time.monotonic() < end:
            rclpy.spin_once(node, timeout_sec=0.1)
    except (SystemExit, KeyboardInterrupt):
        pass
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    if sys.argv[1:] != ["publish"]:
        sys.exit("usage: ros_helpers.py publish  (specs as JSON on stdin)")
    sys.exit(_publish_main())


def spin_child(node: Any, seconds: float = 180.0) -> int:
    """A test's child process: spin ``node`` until its callbacks raise SystemExit (the parent is
    gone), it is interrupted, or ``seconds`` pass (a leaked child cannot outlive the test run)."""
    import rclpy

    end = time.monotonic() + seconds
    try:
        while rclpy.ok() and time.monotonic() < end:
            rclpy.spin_once(node, timeout_sec=0.1)
    except (SystemExit, KeyboardInterrupt):
        pass
    return 0
