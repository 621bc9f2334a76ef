"""One line describing the machine a benchmark ran on (shared by the bench scripts)."""

from __future__ import annotations

import os
import platform


def machine(extra: str = "") -> str:
    """CPU model, cores, Python, the caller's library versions, and the load at start."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    extra = f", {extra}" if extra else ""
    return (f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}{extra}, "
            f"load average {os.getloadavg()[0]:.1f} at start")
