"""Ray: CameraNav sub-envs in actors behind one vector env, and `rtfm replay --ray` over a folder
of bags. One local Ray cluster (2 CPUs) for the module, started and shut down here."""

from __future__ import annotations

import rtfm_ros  # noqa: F401  (first: sets OMP_WAIT_POLICY before torch loads)

# isort: split
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import ray
import torch
from test_replay import read, write_bag

from rtfm_ros import cli
from rtfm_ros.envs.ray_vector import RayCameraNavVectorEnv, merge_infos, split
from rtfm_ros.envs.vector import CameraNavVectorEnv
from rtfm_ros.replay import ReplayError, ReplayOptions
from rtfm_ros.replay.folder import replay_folder
from rtfm_ros.world import WorldModel

SMALL = dict(width=32, height=32, seed_turn_views=4, seed_path_views=1, max_episode_steps=6,
             world_seeds=(0, 8), observation="dict")


@pytest.fixture(scope="module")
def cluster() -> Iterator[None]:
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def test_split_and_merge_infos():
    assert split(5, 2) == [3, 2] and split(4, 4) == [1, 1, 1, 1]
    merged = merge_infos([{"d": np.array([1.0, 2.0]), "_d": np.array([True, True])},
                          {"d": np.array([3.0]), "_d": np.array([True]), "x": np.array([7]), "_x": np.array([True])}],
                         [2, 1])
    assert merged["d"].tolist() == [1.0, 2.0, 3.0] and merged["_d"].all()
    assert merged["x"].tolist() == [0, 0, 7] and merged["_x"].tolist() == [False, False, True]


def test_ray_vector_env_matches_in_process(cluster):
    """4 sub-envs over 2 actors see exactly what 4 sub-envs in this process see (resets included)."""
    network = WorldModel.load(device="cpu").core.depth_prior
    rng = np.random.default_rng(3)
    local = CameraNavVectorEnv(num_envs=4, model=network, **SMALL)
    remote = RayCameraNavVectorEnv(num_envs=4, num_workers=2, model=network, threads=1, **SMALL)
    assert remote.observation_space == local.observation_space and remote.sizes == [2, 2]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as in the actors: the same sums in the same order
    try:
        pairs = [(local.reset(seed=9), remote.reset(seed=9))]
        ends = 0
        for _ in range(8):
            actions = (rng.uniform(-1, 1, (4, 2)) * local.single_action_space.high).astype(np.float32)
            a, b = local.step(actions), remote.step(actions)
            pairs.append(((a[0], a[4]), (b[0], b[4])))
            for x, y in zip(a[1:4], b[1:4]):
                assert np.array_equal(x, y)
            ends += int(a[2].sum() + a[3].sum())
    finally:
        torch.set_num_threads(threads)
        local.close()
        remote.close()
    assert ends >= 2  # autoresets happened in the actors as here
    for (obs_a, info_a), (obs_b, info_b) in pairs:
        for key in ("image", "depth", "pose", "goal"):
            assert np.array_equal(obs_a[key], obs_b[key]), key
        assert np.array_equal(info_a["world_seed"], info_b["world_seed"])
        assert np.array_equal(info_a["memory_frames"], info_b["memory_frames"])
    assert not any(np.array_equal(pairs[0][0][0]["image"][i], pairs[0][0][0]["image"][0]) for i in (1, 2, 3))


def test_replay_folder_reports_the_corrupt_bag(cluster, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """3 bags, the middle one corrupt: 2 output bags, the third reported by name and reason."""
    bags = tmp_path / "bags"
    bags.mkdir()
    write_bag(bags / "a_drive")
    (bags / "b_broken.mcap").write_bytes(b"\x89MCAP0\r\n" + b"\x01\x02" * 500)
    write_bag(bags / "c_drive", storage="sqlite3")
    out = tmp_path / "out"
    code = cli.main(["replay", str(bags), "-o", str(out), "--camera-frame", "camera_optical",
                     "--seed-topic", "/cam/image_raw", "--rate", "10", "--width", "16", "--height", "16",
                     "--quiet", "--ray"])
    text = capsys.readouterr().out
    assert code == 2
    assert sorted(p.name for p in out.iterdir()) == ["a_drive", "c_drive"]
    for name in ("a_drive", "c_drive"):
        images = read(out / name)["/rtfm/camera/image_raw"]
        assert len(images) == 11 and (images[0][1].width, images[0][1].height) == (16, 16)
    assert "FAILED  b_broken.mcap: " in text and "cannot read" in text
    assert "2 of 3 bags replayed" in text and "failed: b_broken.mcap" in text


def test_replay_folder_refuses_before_running(cluster, tmp_path: Path) -> None:
    opt = ReplayOptions(camera_frame="camera_optical", seed_topic="/cam/image_raw")
    with pytest.raises(ReplayError, match="no bags"):
        replay_folder(tmp_path, tmp_path / "out", opt)
    write_bag(tmp_path / "one")
    (tmp_path / "out").mkdir()
    with pytest.raises(ReplayError, match="exists already"):
        replay_folder(tmp_path, tmp_path / "out", opt)
