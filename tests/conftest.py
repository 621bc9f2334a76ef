"""Shared test set-up, and the module-scoped fixtures of the camera node tests.

The node fixtures import ROS and the simulator only when a test asks for them. ``ctx`` and
``tf_child`` use the ``domain`` fixture each node test file defines.
"""

import os
import sys
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "egl")

import rtfm_ros  # noqa: F401  (sets OpenMP's wait policy before torch loads)

# isort: split
import pytest
import torch

# Test workloads are tiny: one intra-op thread avoids OpenMP spin-waiting on a busy 2-core
# machine (measured: ~40x slower training steps with 2 threads while other processes run).
torch.set_num_threads(1)


HERE = Path(__file__).resolve().parent


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    """A seeded checkpoint (untrained tiny model) and a world of 6 MuJoCo views around the robot."""
    import math

    from rtfm_ros import geometry as g
    from rtfm_ros.learn.checkpoint import save_checkpoint
    from rtfm_ros.learn.config import preset
    from rtfm_ros.learn.depth_prior import DepthPrior
    from rtfm_ros.sim.renderer import WorldRenderer
    from rtfm_ros.sim.worlds import make_world
    from rtfm_ros.world import WorldModel

    root = tmp_path_factory.mktemp("camera_node")
    torch.manual_seed(0)
    model = DepthPrior(preset("tiny"))
    save_checkpoint(root / "ckpt", model, info={"name": "tiny-test"})
    wm = WorldModel(model, device="cpu")
    cam = g.PinholeCamera.from_fov(64, 64, 90)
    frames = []
    with WorldRenderer(make_world(3), cam) as sim:
        for i in range(6):
            a = 2 * math.pi * i / 6
            T = g.look_at((1.1, 1.0, 0.5), (1.1 + math.cos(a), 1.0 + math.sin(a), 0.5))
            rgb, depth = sim.render(T)
            wm.add_frame(rgb, T, cam, depth=depth)
            frames.append((rgb, T))
    wm.save(root / "world.rtfm")
    return {"root": root, "ckpt": root / "ckpt", "world": root / "world.rtfm", "frames": frames}


@pytest.fixture(scope="module")
def tf_child(domain):
    """A separate process publishing the test robot's TF (node_helpers.py run as tf-child)."""
    from ros_helpers import spawn_ros_process

    with spawn_ros_process([sys.executable, str(HERE / "node_helpers.py"), "tf-child"], domain) as child:
        yield child


@pytest.fixture(scope="module")
def ctx(domain):
    """An rclpy context of its own on the test file's domain."""
    from ros_helpers import ros_context

    with ros_context(domain) as context:
        yield context
