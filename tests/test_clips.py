"""The clip dataset format and `rtfm data generate`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from rtfm_ros.cli import main as cli_main
from rtfm_ros.data.clips import Clip, DatasetError, open_dataset, write_dataset
from rtfm_ros.data.generate import GenerateConfig, GenerateError, generate
from rtfm_ros.sim.worlds import HELDOUT_SEED_BASE


def _clip(rng: np.random.Generator, n: int, h: int = 8, w: int = 10, depth: bool = True, tag: int = 0) -> Clip:
    T = np.repeat(np.eye(4)[None], n, axis=0)
    T[:, :3, 3] = rng.normal(size=(n, 3))
    K = np.repeat(np.array([[5.0, 0, 5], [0, 5.0, 4], [0, 0, 1]])[None], n, axis=0)
    return Clip(rgb=rng.integers(0, 256, (n, h, w, 3), dtype=np.uint8), T_world_camera=T, K=K,
                stamps=np.arange(n) * 0.1, depth=rng.uniform(0.1, 5, (n, h, w)).astype(np.float32) if depth else None,
                meta={"tag": tag, "nested": {"a": [1, 2]}})


def _same(a: Clip, b: Clip) -> None:
    for name in ("rgb", "T_world_camera", "K", "stamps"):
        x, y = getattr(a, name), getattr(b, name)
        assert x.dtype == y.dtype and np.array_equal(x, y), name
    assert (a.depth is None) == (b.depth is None)
    if a.depth is not None:
        assert np.array_equal(a.depth, b.depth)
    assert a.meta == b.meta


def test_roundtrip_sharding_frames_and_iteration(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    clips = [_clip(rng, n, depth=(i % 2 == 0), tag=i) for i, n in enumerate([3, 5, 1, 4, 2])]
    out = write_dataset(tmp_path / "ds", iter(clips), clips_per_shard=2, info={"who": "test"})
    index = json.loads((out / "index.json").read_text())
    assert index["format"] == "rtfm-clips" and index["num_clips"] == 5 and len(index["shards"]) == 3
    assert [s["clips"] for s in index["shards"]] == [2, 2, 1] and index["num_frames"] == 15
    assert not list(out.glob("*.tmp"))
    ds = open_dataset(out)
    assert len(ds) == 5 and ds.resolution == (8, 10) and ds.info == {"who": "test"}
    assert ds.clip_lengths == [3, 5, 1, 4, 2]
    for a, b in zip(clips, ds):
        _same(a, b)
    _same(ds.clip(-1), clips[-1])
    part = ds.clip(1, frames=slice(1, 4))
    assert np.array_equal(part.rgb, clips[1].rgb[1:4])
    assert np.array_equal(part.T_world_camera, clips[1].T_world_camera[1:4])
    picked = ds.clip(3, frames=[3, 0, 2])
    assert np.array_equal(picked.rgb, clips[3].rgb[[3, 0, 2]]) and picked.depth is None
    assert np.array_equal(ds.clip(4, frames=[1, 0]).depth, clips[4].depth[[1, 0]])
    assert ds.clip(0).camera(0).fx == 5.0
    with pytest.raises(IndexError):
        ds.clip(5)


def _one_shard_dataset(tmp_path: Path) -> Path:
    return write_dataset(tmp_path / "ds", [_clip(np.random.default_rng(1), 4)], info={})


def test_corrupt_shard_is_refused_naming_it(tmp_path: Path) -> None:
    out = _one_shard_dataset(tmp_path)
    shard = out / "shard-00000.safetensors"
    data = bytearray(shard.read_bytes())
    data[-10] ^= 0xFF
    shard.write_bytes(bytes(data))
    with pytest.raises(DatasetError, match="shard-00000.safetensors.*sha256"):
        open_dataset(out)


def test_truncated_shard_is_refused_naming_it(tmp_path: Path) -> None:
    out = _one_shard_dataset(tmp_path)
    shard = out / "shard-00000.safetensors"
    shard.write_bytes(shard.read_bytes()[:-100])
    with pytest.raises(DatasetError, match="shard-00000.safetensors.*truncated"):
        open_dataset(out)


def test_bad_header_is_refused_naming_it(tmp_path: Path) -> None:
    out = _one_shard_dataset(tmp_path)
    shard = out / "shard-00000.safetensors"
    junk = b"\xff" * shard.stat().st_size  # same size, garbage header, index updated to match
    shard.write_bytes(junk)
    index = json.loads((out / "index.json").read_text())
    import hashlib
    index["shards"][0]["sha256"] = hashlib.sha256(junk).hexdigest()
    (out / "index.json").write_text(json.dumps(index))
    with pytest.raises(DatasetError, match="shard-00000.safetensors.*header"):
        open_dataset(out)


def test_missing_index_and_bad_input(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="index.json"):
        open_dataset(tmp_path)
    rng = np.random.default_rng(2)
    with pytest.raises(DatasetError, match="one resolution"):
        write_dataset(tmp_path / "a", [_clip(rng, 2), _clip(rng, 2, h=9)], info={})
    with pytest.raises(DatasetError, match="uint8"):
        Clip(rgb=np.zeros((2, 4, 4, 3), np.float32), T_world_camera=np.zeros((2, 4, 4)), K=np.zeros((2, 3, 3)),
             stamps=np.zeros(2))
    with pytest.raises(DatasetError, match="T_world_camera"):
        Clip(rgb=np.zeros((2, 4, 4, 3), np.uint8), T_world_camera=np.zeros((3, 4, 4)), K=np.zeros((2, 3, 3)),
             stamps=np.zeros(2))
    with pytest.raises(DatasetError, match="JSON"):
        _clip(rng, 1).__class__(**{**_clip(rng, 1).__dict__, "meta": {"x": object()}})
    out = _one_shard_dataset(tmp_path / "b")
    with pytest.raises(DatasetError, match="already holds a dataset"):
        write_dataset(out, [_clip(rng, 1)], info={})


def _arrays(ds) -> list[Clip]:
    return [ds.clip(i) for i in range(len(ds))]


def test_generate_is_deterministic_and_mixes_trajectories(tmp_path: Path) -> None:
    cfg = GenerateConfig(worlds=3, frames=5, res=16, clips_per_world=2, clips_per_shard=4)
    a = open_dataset(generate(tmp_path / "a", cfg, progress=False))
    b = open_dataset(generate(tmp_path / "b", cfg, progress=False))
    assert len(a) == 6 and a.resolution == (16, 16)
    assert [s["sha256"] for s in a.shards] == [s["sha256"] for s in b.shards]
    for x, y in zip(_arrays(a), _arrays(b)):
        _same(x, y)
    clips = _arrays(a)
    assert {c.meta["trajectory"] for c in clips} == {"ground_robot", "handheld", "loop"}
    assert {c.meta["world"]["kind"] for c in clips} == {"room", "multiroom"}
    assert {c.meta["world"]["seed"] for c in clips} == {0, 1, 2}
    c = clips[0]
    assert c.depth is not None and c.depth.min() > 0 and c.rgb.std() > 2
    np.testing.assert_allclose(c.K[0], [[8, 0, 8], [0, 8, 8], [0, 0, 1]])  # 90 deg at 16 px
    assert a.info["world_seeds"] == [0, 2]


def test_generate_refuses_heldout_seeds_and_bad_settings(tmp_path: Path) -> None:
    with pytest.raises(GenerateError, match="held-out"):
        GenerateConfig(worlds=2, frames=2, res=8, seed_offset=HELDOUT_SEED_BASE - 1)
    with pytest.raises(GenerateError, match="unknown world kinds"):
        GenerateConfig(worlds=1, frames=2, res=8, kinds=("castle",))
    with pytest.raises(GenerateError, match="--workers"):
        GenerateConfig(worlds=1, frames=2, workers=0)
    assert not (tmp_path / "x").exists()


def test_cli_generate_with_two_workers_matches_one(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    args = ["data", "generate", "--worlds", "2", "--frames", "3", "--res", "12", "--clips-per-world", "1",
            "--clips-per-shard", "1"]
    assert cli_main(args + ["--workers", "2", "--out", str(tmp_path / "two")]) == 0
    one = open_dataset(generate(tmp_path / "one", GenerateConfig(worlds=2, frames=3, res=12, clips_per_world=1,
                                                                  clips_per_shard=1), progress=False))
    two = open_dataset(tmp_path / "two")
    for x, y in zip(_arrays(one), _arrays(two)):
        _same(x, y)
    assert cli_main(["data", "generate", "--worlds", "1", "--frames", "2", "--seed-offset", str(HELDOUT_SEED_BASE),
                     "--out", str(tmp_path / "bad")]) == 2
    assert "held-out" in capsys.readouterr().err
