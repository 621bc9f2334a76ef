"""Atomic writes: a failed write leaves the previous file or folder as it was, and no temporary."""

from pathlib import Path

import pytest

from rtfm_ros.atomic import atomic_path, temp_path, temp_pattern, write_text_atomic


def test_file_is_replaced_only_when_complete(tmp_path: Path) -> None:
    target = tmp_path / "a.json"
    write_text_atomic(target, "old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("disk full")
    assert target.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["a.json"]
    write_text_atomic(target, "new")
    assert target.read_text() == "new" and len(list(tmp_path.iterdir())) == 1


def test_folder_replaces_a_folder_and_refusal_keeps_both(tmp_path: Path) -> None:
    target = tmp_path / "ckpt"
    for text in ("one", "two"):
        with atomic_path(target) as tmp:
            tmp.mkdir()
            (tmp / "w").write_text(text)
    assert (target / "w").read_text() == "two" and len(list(tmp_path.iterdir())) == 1
    with pytest.raises(FileExistsError, match="appeared while writing"):
        with atomic_path(target, overwrite=False, keep_name=True) as tmp:
            assert tmp.name == "ckpt"
            tmp.mkdir()
    assert (target / "w").read_text() == "two" and len(list(tmp_path.iterdir())) == 1


def test_temp_names_carry_the_pid_for_cleanup(tmp_path: Path) -> None:
    tmp = temp_path(tmp_path / "w.rtfm")
    m = temp_pattern("w.rtfm", ("-wal",)).fullmatch(tmp.name + "-wal")
    assert m is not None and tmp.name.startswith(".w.rtfm.") and int(m.group(1)) > 0
