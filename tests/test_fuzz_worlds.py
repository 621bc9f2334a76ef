"""World files shared between processes: a replaced file is never appended to silently, and a
world being appended to opens as a consistent snapshot (never a spurious "corrupt")."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import numpy as np
import pytest
from test_world_file import CAM, make_memory, texture

from rtfm_ros.geometry import look_at
from rtfm_ros.memory import FrameMemory, WorldFile, WorldFileError

ROOT = Path(__file__).resolve().parent.parent


def _add(mem: FrameMemory, i: int) -> int:
    return mem.add(texture(i), look_at([0.2 * i, 0, 1], [0.2 * i, 5, 1]), CAM, stamp=float(i), source="observed")


def test_an_appender_learns_that_another_process_saved_over_its_file(tmp_path: Path) -> None:
    """Frames appended to a file another process replaced would go to the unlinked file and vanish."""
    path = tmp_path / "w.rtfm"
    make_memory(3, path).close()
    mem = FrameMemory.open(path)
    _add(mem, 3)
    other = textwrap.dedent(f"""
        import sys; sys.path.insert(0, {str(ROOT / "tests")!r})
        from test_world_file import make_memory
        make_memory(5).save({str(path)!r})  # replaces the file (atomic rename)
    """)
    subprocess.run([sys.executable, "-c", other], check=True, cwd=ROOT, timeout=60)
    with pytest.raises(WorldFileError, match="replaced"):
        _add(mem, 4)
    with pytest.raises(WorldFileError, match="replaced"):
        mem.save(path)
    assert len(mem) == 4
    mem.close()
    with FrameMemory.open(path, writable=False) as saved:
        assert len(saved) == 5  # the other process's save, untouched


def test_a_world_being_appended_to_reads_as_a_consistent_snapshot(tmp_path: Path) -> None:
    path = tmp_path / "w.rtfm"
    writer = make_memory(2, path)
    reader = WorldFile.open(path)
    _add(writer, 2)  # after the reader's open: not in its snapshot, no error either
    poses, *_ = reader.read_index()
    assert len(poses) in (2, 3)
    reader.close()

    stop, errors, opened = threading.Event(), [], [0]

    def read() -> None:
        while not stop.is_set():
            try:
                with FrameMemory.open(path, writable=False) as m:
                    assert np.isfinite(m.poses()).all()
                opened[0] += 1
            except WorldFileError as exc:
                errors.append(str(exc))

    t = threading.Thread(target=read)
    t.start()
    try:
        for i in range(3, 40):
            _add(writer, i)
    finally:
        stop.set()
        t.join()
    writer.close()
    assert not errors, errors[:3]
    assert opened[0] > 0
