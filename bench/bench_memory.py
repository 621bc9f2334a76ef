"""Spatial memory: context retrieval time vs world size, world-file throughput and sizes.

Usage: .venv/bin/python bench/bench_memory.py [--quick]
Prints markdown tables (medians) with the machine it ran on. Retrieval is timed on a memory
that holds poses only (pixels play no part in retrieval: the spatial index and juggling read
poses and intrinsics only). Images for the storage numbers are synthetic: smooth shading plus
a tiled texture and mild noise, about as compressible as a rendered scene.
"""

from __future__ import annotations

import argparse
import math
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import scipy
from machine import machine as machine_line

from rtfm_ros.geometry import PinholeCamera
from rtfm_ros.memory import SOURCES, FrameMemory
from rtfm_ros.memory.juggling import select_context


def machine() -> str:
    return machine_line(f"numpy {np.__version__}, scipy {scipy.__version__}")


def synthetic_image(seed: int, size: int) -> np.ndarray:
    """Smooth colour shading + a tiled texture + mild noise (procedural-scene-like compressibility)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size] / size
    ph = rng.uniform(0, 2 * np.pi, 3)
    smooth = np.stack([np.sin(2.0 * x + ph[0]), np.cos(1.5 * y + ph[1]), np.sin(1.7 * (x + y) + ph[2])], -1)
    tiles = ((np.floor(x * 8 + ph[0]) + np.floor(y * 8)) % 2)[..., None] * 40.0
    img = 110 + 70 * smooth + tiles + rng.normal(0.0, 3.0, (size, size, 3))
    return np.clip(img, 0, 255).astype(np.uint8)


def random_poses(n: int, rng: np.random.Generator, density: float = 1.0) -> np.ndarray:
    """n camera poses over a square of n/density m^2, 0.5..2 m high, random heading and slight pitch."""
    side = math.sqrt(n / density)
    yaw = rng.uniform(-np.pi, np.pi, n)
    pitch = rng.uniform(-0.3, 0.3, n)
    z_axis = np.stack([np.cos(yaw) * np.cos(pitch), np.sin(yaw) * np.cos(pitch), np.sin(pitch)], 1)
    x_axis = np.cross(z_axis, [0.0, 0.0, -1.0])
    x_axis /= np.linalg.norm(x_axis, axis=1, keepdims=True)
    y_axis = np.cross(z_axis, x_axis)
    out = np.zeros((n, 4, 4))
    out[:, :3, 0], out[:, :3, 1], out[:, :3, 2] = x_axis, y_axis, z_axis
    out[:, :2, 3] = rng.uniform(0, side, (n, 2))
    out[:, 2, 3] = rng.uniform(0.5, 2.0, n)
    out[:, 3, 3] = 1.0
    return out


def poses_only_memory(poses: np.ndarray, camera: PinholeCamera) -> FrameMemory:
    """A FrameMemory with poses, intrinsics and stamps but no pixels (for timing retrieval)."""
    n = poses.shape[0]
    mem = FrameMemory()
    intr = np.tile([camera.width, camera.height, camera.fx, camera.fy, camera.cx, camera.cy], (n, 1))
    mem._load_index(poses, intr, np.arange(n, dtype=np.float64), [SOURCES[1]] * n)
    return mem


def bench_retrieval(sizes: list[int], queries: int, budget: int) -> list[str]:
    cam = PinholeCamera.from_fov(128, 128, 90.0)
    rng = np.random.default_rng(0)
    rows = ["| frames | build index (s) | candidates (ms) | juggling (ms) | select_context (ms) | p95 (ms)"
            " | CPU/call (ms) |", "|---:|---:|---:|---:|---:|---:|---:|"]
    print("\n".join(rows), flush=True)
    for n in sizes:
        poses = random_poses(n, rng)
        t0 = time.perf_counter()
        mem = poses_only_memory(poses, cam)
        build = time.perf_counter() - t0
        targets = random_poses(queries, np.random.default_rng(1), density=queries / n)
        intr, stamps, all_poses = mem._intr[:n], mem._stamps[:n], mem._poses[:n]
        t_cand, t_jug, t_total = [], [], []
        cpu = 0.0
        for T in targets:
            t = time.perf_counter()
            cand = mem.context_candidates(T)
            t_cand.append(time.perf_counter() - t)
            t = time.perf_counter()
            select_context(T, cam, all_poses, intr, budget, stamps=stamps, candidate_indices=cand)
            t_jug.append(time.perf_counter() - t)
            t, c = time.perf_counter(), time.process_time()
            mem.select_context(T, cam, budget)
            t_total.append(time.perf_counter() - t)
            cpu += time.process_time() - c
        p95 = sorted(t_total)[int(0.95 * len(t_total))]
        med = [statistics.median(t) * 1e3 for t in (t_cand, t_jug, t_total)]
        rows.append(f"| {n:,} | {build:.2f} | {med[0]:.3f} | {med[1]:.3f} | {med[2]:.3f} | {p95 * 1e3:.3f} | "
                    f"{cpu / len(targets) * 1e3:.3f} |")
        print(rows[-1], flush=True)
    return rows


def bench_storage(n: int, size: int, tmp: Path) -> str:
    cam = PinholeCamera.from_fov(size, size, 90.0)
    poses = random_poses(n, np.random.default_rng(2))
    images = [synthetic_image(i, size) for i in range(64)]
    raw = n * size * size * 3
    path = tmp / f"live{size}.rtfm"
    t = time.perf_counter()
    mem = FrameMemory(path, ram_budget_bytes=16 << 20)
    for i in range(n):
        mem.add(images[i % 64], poses[i], cam, stamp=float(i), source="observed")
    t_add = time.perf_counter() - t
    ram_per_frame = (mem.nbytes - mem.nbytes_pixels) / n
    t = time.perf_counter()
    mem.save(tmp / f"copy{size}.rtfm")
    t_save = time.perf_counter() - t
    mem.close()
    saved = (tmp / f"copy{size}.rtfm").stat().st_size
    t = time.perf_counter()
    back = FrameMemory.open(tmp / f"copy{size}.rtfm", ram_budget_bytes=16 << 20)
    t_open = time.perf_counter() - t
    t = time.perf_counter()
    for i in back:
        back.get(i)
    t_read = time.perf_counter() - t
    back.close()
    mb = raw / 1e6
    return (f"| {size}x{size} | {n:,} | {saved / n / 1024:.1f} KiB | {raw / saved:.2f}x | "
            f"{size * size * 3 / 1024:.0f} KiB + {ram_per_frame:.0f} B | {n / t_add:,.0f} fr/s ({mb / t_add:.1f} MB/s)"
            f" | {mb / t_save:.1f} MB/s | {t_open:.2f} s | {mb / t_read:.1f} MB/s |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smaller sizes (a smoke test)")
    args = ap.parse_args()
    sizes = [1_000, 10_000] if args.quick else [1_000, 10_000, 100_000, 1_000_000]
    print(f"Machine: {machine()}\n")
    print("Context retrieval (budget 8, 64 candidates, 128 Monte-Carlo samples, median of 200 random views;"
          " poses-only memory, 1 frame per m^2):\n")
    bench_retrieval(sizes, 50 if args.quick else 200, 8)
    tmp = Path(tempfile.mkdtemp(prefix="rtfm_bench_"))
    try:
        print("\nWorld files (PNG, synthetic smooth+textured images, RAM budget 16 MiB; 'RAM' = pixels while"
              " resident + index per frame; MB/s counts raw RGB bytes):\n")
        print("| image | frames | disk/frame | vs raw | RAM/frame | add (encode+append) | save (copy) | open+verify"
              " | page-in (read+decode) |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
        for size, n in ((64, 300 if args.quick else 2000), (128, 200 if args.quick else 1000)):
            print(bench_storage(n, size, tmp), flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
