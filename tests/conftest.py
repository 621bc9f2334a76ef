"""Shared test set-up."""

import os

os.environ.setdefault("MUJOCO_GL", "egl")

import rtfm_ros  # noqa: F401  (sets OpenMP's wait policy before torch loads)

# isort: split
import torch

# Test workloads are tiny: one intra-op thread avoids OpenMP spin-waiting on a busy 2-core
# machine (measured: ~40x slower training steps with 2 threads while other processes run).
torch.set_num_threads(1)
