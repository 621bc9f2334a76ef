"""Real pose files round their numbers (COLMAP text, TUM, ETH: 4-6 decimals): every path that
reads poses from a file or a message accepts them, re-orthonormalised and said so once; a
rotation further than 1e-3 from orthonormal is refused as before."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from rtfm_ros import geometry as g
from rtfm_ros.io import tf_messages
from rtfm_ros.io.messages import bag_types
from rtfm_ros.replay import ReplayError, load_poses
from rtfm_ros.tf_buffer import TransformBuffer


def _poses(n: int = 5) -> list[np.ndarray]:
    """Cameras round a room, turned about an oblique axis so every rotation entry is irrational."""
    out = []
    for i in range(n):
        a = 2 * math.pi * i / n
        T = g.look_at((math.cos(a), math.sin(a), 0.4), (0.1, -0.2, 0.3 + 0.1 * i))
        out.append(T)
    return out


def _off(R: np.ndarray) -> float:
    return max(float(np.abs(R.T @ R - np.eye(3)).max()), abs(float(np.linalg.det(R)) - 1.0))


@pytest.mark.parametrize("decimals,skew", [(6, 0.0), (6, 4e-5), (4, 0.0)])
def test_a_trajectory_with_4x4_poses_rounded_to_a_few_decimals_loads(decimals: int, skew: float, tmp_path: Path,
                                                                      caplog: pytest.LogCaptureFixture):
    """6 decimals (as written, or from a pipeline whose rotations were orthonormal to 4e-5 only, as
    a real RGB-D sequence's were) and 4 decimals: all load; repaired ones said once per file."""
    poses = _poses()
    written = []
    for T in poses:
        W = T.copy()
        W[:3, :3] = W[:3, :3] @ (np.eye(3) + skew * np.array([[0, 1, 0], [1, 0, 0], [0, 0, 1]]))
        written.append(np.round(W, decimals))
    path = tmp_path / "poses.json"
    path.write_text(json.dumps([{"stamp_ns": i * 100_000_000, "T": W.tolist()} for i, W in enumerate(written)]))
    needs_repair = max(_off(W[:3, :3]) for W in written) > 1e-5  # the strict check's tolerance
    assert needs_repair == (decimals == 4 or skew > 0)
    with caplog.at_level("WARNING"):
        loaded = load_poses(path)
    assert sum("re-orthonormalised" in r.message for r in caplog.records) == int(needs_repair)  # once per file
    for (_, T), want, W in zip(loaded, poses, written):
        assert _off(T[:3, :3]) <= (1e-12 if _off(W[:3, :3]) > 1e-5 else 1e-5)  # repaired ones exactly
        np.testing.assert_allclose(T, want, atol=2 * 10.0 ** -decimals + 2 * skew)
    rows = json.loads(path.read_text())
    rows[2]["T"][0][0] += 0.01  # 1e-2 off a rotation: not rounding, a wrong pose
    path.write_text(json.dumps(rows))
    with pytest.raises(ReplayError, match="pose 2.*not orthonormal"):
        load_poses(path)


@pytest.mark.parametrize("decimals", [6, 4])
def test_tf_and_bag_quaternions_rounded_to_a_few_decimals_are_used_normalised(decimals: int, tmp_path: Path):
    """TF messages (live /tf, a bag's /tf) and quaternion pose files: a rounded quaternion is
    normalised, as tf2 does; its rotation is exact to what the rounding allows."""
    buffer = TransformBuffer()
    for i, T in enumerate(_poses()):
        t, q = g.transform_to_ros(T)
        msg = tf_messages.transform_msg(T, "map", "cam", i * 1000, types=bag_types())
        r = msg.transform.rotation
        r.x, r.y, r.z, r.w = (round(float(v), decimals) for v in q)
        M = tf_messages.transform_to_matrix(msg)
        np.testing.assert_allclose(M[:3, :3].T @ M[:3, :3], np.eye(3), atol=1e-12)
        np.testing.assert_allclose(M, T, atol=3 * 10.0 ** -decimals)
        assert not tf_messages.feed_tf_message(buffer, type("TF", (), {"transforms": [msg]})(), static=False)
    csv = "stamp_ns,x,y,z,qx,qy,qz,qw\n" + "".join(
        f"{i},{','.join(f'{v:.{decimals}f}' for v in (*g.transform_to_ros(T)[0], *g.transform_to_ros(T)[1]))}\n"
        for i, T in enumerate(_poses()))
    (tmp_path / "poses.csv").write_text(csv)
    for (_, T), want in zip(load_poses(tmp_path / "poses.csv"), _poses()):
        np.testing.assert_allclose(T, want, atol=3 * 10.0 ** -decimals)
