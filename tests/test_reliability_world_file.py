"""World files under hostile conditions: what a save may replace, special files, full and
read-only disks, damaged schemas and meta, corrupt frames at save time, leftovers of killed saves."""

import json
import os
import shutil
import sqlite3
import stat
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import numpy as np
import pytest
from test_world_file import CAM, assert_same, make_memory, texture

from rtfm_ros.geometry import MAX_POSITION_M, GeometryError, look_at
from rtfm_ros.memory import FrameMemory, WorldFile, WorldFileError
from rtfm_ros.memory.world_schema import FrameRecord

HERE = Path(__file__).resolve().parent


# ------------------------------------------------------------------ what a save may replace
def test_save_refuses_a_file_that_is_not_a_world(tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("my notes\n")
    with pytest.raises(WorldFileError, match="not a world file"):
        make_memory(2).save(notes)
    assert notes.read_text() == "my notes\n"
    empty = tmp_path / "empty"
    empty.touch()
    with pytest.raises(WorldFileError, match="not a world file"):
        make_memory(1).save(empty)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty", "notes.txt"]


def test_save_never_goes_through_a_symlink(tmp_path):
    target = tmp_path / "important.cfg"
    target.write_text("keep me")
    link = tmp_path / "w.rtfm"
    link.symlink_to(target)
    with pytest.raises(WorldFileError, match="symbolic link"):
        make_memory(2).save(link)
    assert link.is_symlink() and target.read_text() == "keep me"
    world = tmp_path / "real.rtfm"
    make_memory(1).save(world)
    link2 = tmp_path / "to_world.rtfm"
    link2.symlink_to(world)
    with pytest.raises(WorldFileError, match="symbolic link"):  # even onto a world: save to its own path
        make_memory(3).save(link2)
    assert len(FrameMemory.open(world)) == 1
    dangling = tmp_path / "dangling.rtfm"
    dangling.symlink_to(tmp_path / "nowhere")
    with pytest.raises(WorldFileError, match="symbolic link"):
        FrameMemory(dangling)
    assert not (tmp_path / "nowhere").exists()


def test_save_refuses_special_files_and_missing_folders(tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    with pytest.raises(WorldFileError, match="FIFO"):
        make_memory(1).save(fifo)
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    if os.geteuid() == 0:  # a device node, as root would clobber it: /dev/null's numbers
        dev = tmp_path / "null"
        os.mknod(dev, stat.S_IFCHR | 0o666, os.makedev(1, 3))
        with pytest.raises(WorldFileError, match="character device"):
            make_memory(1).save(dev)
        assert stat.S_ISCHR(os.lstat(dev).st_mode)
    plain = tmp_path / "plain.txt"
    plain.write_text("x")
    with pytest.raises(WorldFileError, match="is not a directory"):
        make_memory(1).save(plain / "w.rtfm")        # output under a file
    with pytest.raises(WorldFileError, match="does not exist"):
        make_memory(1).save(tmp_path / "no" / "such" / "w.rtfm")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["pipe", "plain.txt"] +
                                                                 (["null"] if os.geteuid() == 0 else []))


# ------------------------------------------------------------------ special files when opening
def test_opening_a_fifo_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "w.rtfm"
    os.mkfifo(fifo)
    outcome: list[BaseException] = []

    def try_open() -> None:
        try:
            FrameMemory.open(fifo, writable=False)
        except BaseException as exc:  # noqa: BLE001 - recorded and checked below
            outcome.append(exc)

    t = threading.Thread(target=try_open, daemon=True)
    t.start()
    t.join(10)
    if t.is_alive():  # unblock the reader before failing
        with open(fifo, "wb"):
            pass
        pytest.fail("opening a FIFO as a world blocked")
    assert len(outcome) == 1 and isinstance(outcome[0], WorldFileError) and "FIFO" in str(outcome[0])


# ------------------------------------------------------------------ damaged schema and meta
@pytest.mark.parametrize("sql, match", [
    ("DROP TABLE pixels", "lacks the table 'pixels'"),
    ("ALTER TABLE pixels RENAME COLUMN depth TO d", "unexpected columns in 'pixels'"),
    ("UPDATE meta SET value = '1e11' WHERE key = 'frame_count'", "bad frame count"),
    ("UPDATE meta SET value = '100000000000' WHERE key = 'frame_count'", "meta says 100000000000"),
    ("UPDATE meta SET value = '\"six\"' WHERE key = 'frame_count'", "bad frame count"),
    ("UPDATE meta SET value = 'true' WHERE key = 'frame_count'", "bad frame count"),
    ("UPDATE meta SET value = '[' || replace(hex(zeroblob(50000)), '00', '[') || ']' WHERE key = 'user'",
     "corrupt or unreadable"),
    ("UPDATE meta SET value = '12' WHERE key = 'digest'", "bad digest"),
])
def test_damaged_schema_and_meta_are_refused_at_open(tmp_path, sql, match):
    path = tmp_path / "w.rtfm"
    make_memory(6).save(path)
    conn = sqlite3.connect(path)
    conn.execute(sql)
    conn.commit()
    conn.close()
    for check in ("none", "quick"):
        with pytest.raises(WorldFileError, match=match):
            FrameMemory.open(path, check=check)


# ------------------------------------------------------------------ a corrupt frame at save time
def _corrupt_pixels(path: Path, fid: int) -> None:
    conn = sqlite3.connect(path)
    conn.execute("UPDATE pixels SET image = zeroblob(40) WHERE id = ?", (fid,))
    conn.commit()
    conn.close()


def test_one_corrupt_frame_is_left_out_of_a_save_and_reported(tmp_path):
    src = tmp_path / "src.rtfm"
    make_memory(6).save(src)
    _corrupt_pixels(src, 2)
    mem = FrameMemory.open(src, ram_budget_bytes=0)   # nothing resident: frame 2 exists only on disk
    out = mem.save(tmp_path / "out.rtfm")
    assert mem.last_save_skipped == [2]
    back = FrameMemory.open(out, check="full")
    assert len(back) == 5
    ref = make_memory(6)
    for new, old in zip(range(5), [0, 1, 3, 4, 5]):
        np.testing.assert_array_equal(back.get(new).rgb, ref.get(old).rgb)
        np.testing.assert_array_equal(back.pose(new), ref.pose(old))
    mem.save(tmp_path / "out.rtfm")                   # saving over a world it made is fine
    # A resident copy of the frame is re-encoded instead: nothing is lost.
    live = tmp_path / "live.rtfm"
    mem2 = make_memory(4, live)
    _corrupt_pixels(live, 1)
    mem2.save(tmp_path / "whole.rtfm")
    assert mem2.last_save_skipped == []
    assert_same(make_memory(4), FrameMemory.open(tmp_path / "whole.rtfm", check="full"))


# ------------------------------------------------------------------ leftovers of killed saves
def test_stale_temp_files_are_removed_by_the_next_save(tmp_path):
    path = tmp_path / "w.rtfm"
    make_memory(2).save(path)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True)
    pid = int(dead.stdout)
    stale = [tmp_path / f".w.rtfm.{pid}.0badc0de.tmp", tmp_path / f".w.rtfm.{pid}.0badc0de.tmp-journal"]
    for p in stale:
        p.write_bytes(b"x" * 1000)
    live = tmp_path / f".w.rtfm.{os.getpid()}.12345678.tmp"   # this process: a save may be running
    live.write_bytes(b"y")
    other = tmp_path / f".other.rtfm.{pid}.0badc0de.tmp"      # another world's: not ours to touch
    other.write_bytes(b"z")
    make_memory(3).save(path)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([live.name, other.name, "w.rtfm"])


# ------------------------------------------------------------------ poses beyond what a world holds
def test_far_poses_are_refused_and_old_worlds_holding_them_still_render(tmp_path):
    mem = make_memory(3)
    far = look_at([0, 0, 0], [0, 1, 0])
    far[0, 3] = 1e39
    with pytest.raises(GeometryError, match="beyond"):
        mem.add(texture(9), far, CAM, stamp=0.0, source="seed")
    assert len(mem) == 3
    # A world written before the bound: its far frame is kept but never picked as context.
    path = tmp_path / "old.rtfm"
    mem.save(path)
    with WorldFile.open(path, writable=True) as w:
        rec = w.read_record(0)
        w.append([FrameRecord(3, far, rec.intrinsics, 1.0, "seed", rec.image_format, rec.image, None, None)])
    back = FrameMemory.open(path)
    assert len(back) == 4 and back.unusable_frames == [3]
    T = look_at([0.3, 0.1, 1.0], [0.3, 5.1, 0.5])
    ids = back.select_context(T, CAM, 4)
    assert ids and 3 not in ids and set(ids) <= {0, 1, 2}
    assert abs(back.pose(3)[0, 3]) > MAX_POSITION_M      # nothing lost: still in the world


# ------------------------------------------------------------------ full and read-only disks
def _in_private_tmpfs(script: str, size: str = "5m") -> dict:
    """Run ``script`` in a private mount namespace with a small tmpfs at $DISK; its JSON result."""
    if shutil.which("unshare") is None or subprocess.run(["unshare", "-rm", "true"], capture_output=True).returncode:
        pytest.skip("needs unshare(1) and user namespaces for a private small disk")
    code = textwrap.dedent(f"""
        import json, os, sys
        sys.path.insert(0, {str(HERE)!r})
        from test_world_file import make_memory, texture, CAM
        from rtfm_ros.geometry import look_at
        from rtfm_ros.memory import FrameMemory, WorldFileError
        disk = os.environ["DISK"]
        out = {{}}
    """) + textwrap.dedent(script) + "\nprint(json.dumps(out))\n"
    shell = (f'mkdir -p /tmp/rtfm_disk && mount -t tmpfs -o size={size} tmpfs /tmp/rtfm_disk && '
             f'DISK=/tmp/rtfm_disk exec "{sys.executable}" -c "$0"')
    res = subprocess.run(["unshare", "-rm", "sh", "-c", shell, code], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    return json.loads(res.stdout.strip().splitlines()[-1])


def test_disk_full_while_appending_loses_no_acknowledged_frame():
    out = _in_private_tmpfs("""
        rng = __import__("numpy").random.default_rng(0)
        path = os.path.join(disk, "w.rtfm")
        mem = FrameMemory(path)
        acked = 0
        try:
            while True:
                big = CAM.scaled(CAM.width * 4, CAM.height * 4)
                rgb = rng.integers(0, 255, (big.height, big.width, 3), dtype="uint8")
                mem.add(rgb, look_at([acked * 0.1, 0, 0], [acked * 0.1, 1, 0]), big, stamp=float(acked), source="seed")
                acked += 1
        except WorldFileError as exc:
            out["error"] = str(exc)
        out["acked"] = acked
        out["len_after_error"] = len(mem)
        mem.close()
        back = FrameMemory.open(path, writable=False, check="full")
        out["reopened"] = len(back)
    """)
    assert "disk is full" in out["error"] and out["acked"] > 50
    assert out["len_after_error"] == out["acked"] == out["reopened"]


def test_a_world_on_a_read_only_disk_opens_read_only():
    out = _in_private_tmpfs("""
        import subprocess
        path = os.path.join(disk, "w.rtfm")
        make_memory(5).save(path)
        subprocess.run(["mount", "-o", "remount,ro", disk], check=True)
        back = FrameMemory.open(path, writable=False, check="full")
        out["frames"] = len(back)
        out["pixels"] = int(back.get(4).rgb.sum()) == int(texture(4).sum())
        try:
            FrameMemory.open(path)
        except WorldFileError as exc:
            out["writable"] = str(exc)
        try:
            make_memory(1).save(os.path.join(disk, "new.rtfm"))
        except WorldFileError as exc:
            out["save"] = str(exc)
    """)
    assert out["frames"] == 5 and out["pixels"]
    assert "read-only" in out["writable"] and "cannot save" in out["save"]
