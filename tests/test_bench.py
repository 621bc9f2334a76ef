"""`make bench` stays runnable: every listed benchmark exists, and one runs end to end."""

import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent / "bench"


def test_run_all_lists_every_benchmark_script():
    sys.path.insert(0, str(BENCH))
    try:
        from run_all import BENCHMARKS
    finally:
        sys.path.remove(str(BENCH))
    listed = {script for script, _, _ in BENCHMARKS.values()}
    assert listed == {p.name for p in BENCH.glob("bench_*.py")}
    assert all((BENCH / s).is_file() for s in listed)


def test_run_all_quick_memory_prints_a_table():
    out = subprocess.run([sys.executable, str(BENCH / "run_all.py"), "--quick", "--only", "memory"],
                         capture_output=True, text=True, timeout=240)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "(memory: exit 0" in out.stdout and "|---|" in out.stdout
    bad = subprocess.run([sys.executable, str(BENCH / "run_all.py"), "--only", "nope"],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "unknown benchmarks" in bad.stderr
