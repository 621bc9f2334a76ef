"""Device and precision choice, made in one place for inference and training."""

from __future__ import annotations

import os
from typing import Literal

import torch


def pick_device(device: str | torch.device | None = "auto") -> torch.device:
    """'auto' -> CUDA when available, else CPU; anything else is validated."""
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} requested but CUDA is not available")
    return dev


def autocast_dtype(device: torch.device) -> torch.dtype | None:
    """bf16 autocast where it is faster than fp32, None elsewhere.

    On CPUs without AVX-512 (e.g. AVX2-only EPYC) bf16 matmuls are emulated and ~10x slower
    than fp32, so the CPU gets bf16 only when PyTorch reports an AVX-512 kernel path.
    """
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else None
    if device.type == "cpu" and "AVX512" in torch.backends.cpu.get_cpu_capability():
        return torch.bfloat16
    return None


def autocast(device: torch.device, dtype: torch.dtype | None | Literal["auto"] = "auto") -> torch.autocast:
    """The autocast context for ``device``: ``dtype`` (``"auto"``: autocast_dtype), or fp32 if None."""
    amp = autocast_dtype(device) if dtype == "auto" else dtype
    return torch.autocast(device.type, dtype=amp or torch.float32, enabled=amp is not None)


def serving_threads() -> int:
    """CPU threads for a model that serves a live stream beside other work: all cores but one.

    The spare core runs what feeds and drains the model (DDS, the executor, TF, encoding). On
    the 2-core reference machine 1 thread rendered 64x64 in 25 ms inside the camera node
    against 34 ms with PyTorch's default of 2 (bench/bench_node.py --threads).
    """
    return max(1, (os.cpu_count() or 1) - 1)
