"""`make bench`: every benchmark in turn, each printing its markdown table (about 10 minutes).

Usage: .venv/bin/python bench/run_all.py [--quick] [--only model,node,...]
--quick passes each script's own smoke-run flag where it has one. Benchmarks run one after
another, never together: on a small machine they would measure each other. Exit status 1 if
any failed (the others still run); results go to stdout, for BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

# name -> (script, arguments for a full run, arguments for --quick)
BENCHMARKS: dict[str, tuple[str, list[str], list[str]]] = {
    "model": ("bench_model.py", [], ["--repeats", "5"]),
    "learned": ("bench_learned.py", [], ["--repeats", "3"]),
    "planar": ("bench_planar.py", [], ["--repeats", "3"]),
    "memory": ("bench_memory.py", [], ["--quick"]),
    "sim": ("bench_sim.py", [], ["--quick"]),
    "node": ("bench_node.py", [], ["--seconds", "3", "--sizes", "64"]),
    "replay": ("bench_replay.py", [], ["--seconds", "3"]),
    "envs": ("bench_envs.py", [], ["--steps", "3", "--repeats", "1"]),
    "ray": ("bench_ray.py", [], ["--envs", "2", "--steps", "2", "--bags", "2", "--seconds", "1"]),
    "serve": ("bench_serve.py", [], ["--sizes", "128x128", "--presses", "3", "--seconds", "2"]),
    "node_sensor": ("bench_node_sensor.py", [], ["--seconds", "2", "--views", "20"]),
    "single_photo": ("bench_single_photo.py", [], ["--worlds", "1", "--res", "64"]),
    "tf_rate": ("bench_tf_rate.py", [], ["--tf-rates", "20", "--seconds", "2", "--steps", "5"]),
}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="smoke-run sizes (seconds, not minutes)")
    ap.add_argument("--only", help=f"comma-separated subset of: {', '.join(BENCHMARKS)}")
    args = ap.parse_args()
    names = [n.strip() for n in args.only.split(",")] if args.only else list(BENCHMARKS)
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        ap.error(f"unknown benchmarks {unknown}; known: {', '.join(BENCHMARKS)}")
    failed = []
    for name in names:
        script, full, quick = BENCHMARKS[name]
        cmd = [sys.executable, str(HERE / script), *(quick if args.quick else full)]
        print(f"\n## {name}: {' '.join(Path(c).name if i < 2 else c for i, c in enumerate(cmd))}", flush=True)
        t0 = time.monotonic()
        rc = subprocess.call(cmd, cwd=HERE.parent)
        print(f"({name}: exit {rc}, {time.monotonic() - t0:.0f} s)", flush=True)
        if rc:
            failed.append(name)
    if failed:
        print(f"\nfailed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
