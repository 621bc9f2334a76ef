"""Context juggling: which stored frames the model sees for a new view."""

import math

import numpy as np
import pytest

from rtfm_ros.geometry import GeometryError, PinholeCamera, look_at
from rtfm_ros.memory.juggling import (
    ContextError,
    coverage_matrix,
    frustum_points,
    select_context,
)

CAM = PinholeCamera.from_fov(64, 48, 60.0)


def yaw_view(eye, yaw_deg):
    """Camera at eye looking horizontally at heading yaw (degrees, z-up world, 0 = +x)."""
    a = math.radians(yaw_deg)
    return look_at(eye, np.asarray(eye, float) + [math.cos(a), math.sin(a), 0.0])


def random_poses(n, seed, spread=5.0):
    rng = np.random.default_rng(seed)
    out = np.empty((n, 4, 4))
    for i in range(n):
        out[i] = yaw_view(rng.uniform(-spread, spread, 3) * [1, 1, 0.1], rng.uniform(-180, 180))
    return out


def test_exact_pose_is_chosen_first():
    poses = random_poses(200, 0)
    target = poses[137].copy()
    for budget in (1, 4, 8):
        assert select_context(target, CAM, poses, CAM, budget)[0] == 137


def test_exact_pose_first_even_among_near_duplicates():
    target = yaw_view([0, 0, 0], 10)
    poses = np.stack([yaw_view([0.01 * k, 0.0, 0.0], 10 + k) for k in range(1, 6)] + [target]
                     + [yaw_view([0.0, 0.01 * k, 0.0], 10 - k) for k in range(1, 6)])
    assert select_context(target, CAM, poses, CAM, 3)[0] == 5


def test_facing_away_never_beats_overlap():
    target = yaw_view([0, 0, 0], 0)
    overlapping = yaw_view([-1.0, 0.3, 0.0], 5)     # behind and beside, same direction
    away = yaw_view([0, 0, 0], 180)                  # same spot, looking backwards
    poses = np.stack([away, overlapping])
    assert select_context(target, CAM, poses, CAM, 1) == [1]
    assert select_context(target, CAM, poses, CAM, 2) == [1, 0]


def test_no_overlapping_frame_follows_a_blind_one():
    poses = random_poses(300, 1)
    cams = [CAM] * len(poses)
    target = yaw_view([0.2, -0.3, 0.1], 33)
    order = select_context(target, CAM, poses, cams, 300, candidates=300)
    assert sorted(order) == list(range(300))
    q = coverage_matrix(frustum_points(target, CAM, 3.0), target[:3, 3], poses[order],
                        np.tile([CAM.width, CAM.height, CAM.fx, CAM.fy, CAM.cx, CAM.cy], (len(order), 1)), 6.0)
    sees = q.sum(axis=1) > 0
    assert sees.any() and not sees.all()
    first_blind = int(np.argmin(sees))
    assert not sees[first_blind:].any(), "a frame that sees nothing came before one that overlaps"


def test_deterministic_and_rng_changes_samples():
    poses = random_poses(500, 2)
    target = yaw_view([1.0, 1.0, 0.0], 70)
    a = select_context(target, CAM, poses, CAM, 8)
    b = select_context(target.copy(), CAM, poses.copy(), [CAM] * len(poses), 8)
    assert a == b and len(a) == 8 and len(set(a)) == 8
    intr = np.tile([CAM.width, CAM.height, CAM.fx, CAM.fy, CAM.cx, CAM.cy], (len(poses), 1))
    assert select_context(target, CAM, poses, intr, 8) == a
    r = select_context(target, CAM, poses, CAM, 8, rng=np.random.default_rng(5))
    assert len(r) == 8 and set(r) <= set(range(len(poses)))


def test_greedy_spreads_over_the_view():
    """Ten copies of one view covering the left part, one frame covering the right part."""
    target = yaw_view([0, 0, 0], 0)
    left = [yaw_view([0.0, 0.0, 0.0], 20) for _ in range(10)]
    right = yaw_view([0.0, 0.0, 0.0], -32)
    poses = np.stack(left + [right])
    picked = select_context(target, CAM, poses, CAM, 2)
    assert picked[0] < 10, "the larger-overlap cluster should come first"
    assert picked[1] == 10, f"second pick should cover the right side, got {picked}"
    # Without the spread rule the right frame would lose to a duplicate:
    q = coverage_matrix(frustum_points(target, CAM, 3.0), target[:3, 3], poses,
                        np.tile([CAM.width, CAM.height, CAM.fx, CAM.fy, CAM.cx, CAM.cy], (11, 1)), 6.0)
    assert q[10].sum() < q[0].sum()


def test_candidate_limit_keeps_cost_bounded_and_finds_the_exact_frame():
    poses = random_poses(5000, 3, spread=50.0)
    target = poses[4242].copy()
    picked = select_context(target, CAM, poses, CAM, 6, candidates=16)
    assert picked[0] == 4242 and len(picked) == 6
    near = np.linalg.norm(poses[picked, :3, 3] - target[:3, 3], axis=1)
    assert near.max() < 25.0  # only frames near the camera or its frustum were considered


def test_candidate_indices_restrict_choice():
    poses = random_poses(100, 4)
    target = poses[10].copy()
    picked = select_context(target, CAM, poses, CAM, 5, candidate_indices=[3, 4, 5, 6])
    assert set(picked) <= {3, 4, 5, 6} and 10 not in picked


def test_budget_and_empty_cases():
    poses = random_poses(5, 5)
    assert select_context(poses[0], CAM, poses, CAM, 0) == []
    assert select_context(poses[0], CAM, np.zeros((0, 4, 4)), CAM, 3) == []
    assert sorted(select_context(poses[0], CAM, poses, CAM, 50)) == list(range(5))


def test_mixed_cameras():
    wide = PinholeCamera.from_fov(64, 48, 100.0)
    target = yaw_view([0, 0, 0], 0)
    poses = np.stack([yaw_view([0, 0, 0], 45), yaw_view([0, 0, 0], 45)])
    # The wide camera turned 45 degrees still sees much of the target view; the narrow one less.
    assert select_context(target, CAM, poses, [CAM, wide], 1) == [1]


@pytest.mark.parametrize("kwargs, match", [
    (dict(budget=-1), "budget"),
    (dict(budget=2.5), "budget"),
    (dict(depth_hint=0.0), "depth_hint"),
    (dict(depth_hint=float("nan")), "depth_hint"),
    (dict(poses=np.zeros((3, 3, 3))), "poses"),
    (dict(cameras=[CAM, CAM]), "cameras"),
    (dict(stamps=[0.0, 1.0]), "stamps"),
    (dict(candidate_indices=[0, 99]), "candidate"),
])
def test_bad_input_is_refused(kwargs, match):
    args = dict(target_T=yaw_view([0, 0, 0], 0), target_camera=CAM, poses=random_poses(3, 6),
                cameras=CAM, budget=2)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        select_context(**args)


def test_bad_target_pose_is_refused():
    bad = np.eye(4)
    bad[0, 3] = np.nan
    with pytest.raises(GeometryError):
        select_context(bad, CAM, random_poses(3, 7), CAM, 1)
    with pytest.raises(ContextError):
        select_context(np.eye(4), "cam", random_poses(3, 7), CAM, 1)


def test_recency_breaks_ties_towards_newer_frames():
    target = yaw_view([0, 0, 0], 0)
    same = yaw_view([-0.5, 0, 0], 0)
    poses = np.stack([same, same, same])
    assert select_context(target, CAM, poses, CAM, 1, stamps=[5.0, 9.0, 1.0]) == [1]
    assert select_context(target, CAM, poses, CAM, 1) == [0]


def test_exact_pose_beats_newer_near_duplicates():
    """Frames every centimetre along a line, stamps increasing: the exact (older) one still wins."""
    base = yaw_view([0, 0, 1], 90)
    poses = np.repeat(base[None], 200, axis=0)
    poses[:, 0, 3] = np.arange(200) * 0.01
    stamps = np.arange(200, dtype=float)
    for target in (0, 100, 150, 199):
        assert select_context(poses[target], CAM, poses, CAM, 4, stamps=stamps)[0] == target
    dup = np.concatenate([poses, poses[100:101]])  # the same view again, newer
    assert select_context(poses[100], CAM, dup, CAM, 2, stamps=np.append(stamps, 500.0))[:2] == [200, 100]


def test_priors_demote_frames_except_at_the_exact_pose():
    target = yaw_view([0.0, 0.0, 1.0], 0.0)
    a = yaw_view([0.3, 0.0, 1.0], 0.0)   # slightly ahead
    b = yaw_view([-0.3, 0.0, 1.0], 0.0)  # slightly behind
    poses = np.stack([a, b])
    first = select_context(target, CAM, poses, CAM, 1)[0]
    priors = np.ones(2)
    priors[first] = 0.3
    assert select_context(target, CAM, poses, CAM, 1, priors=priors) == [1 - first]
    # a demoted frame at exactly the target pose still comes first
    poses = np.stack([target, a])
    assert select_context(target, CAM, poses, CAM, 1, priors=np.array([0.1, 1.0])) == [0]
    with pytest.raises(ContextError, match="priors"):
        select_context(target, CAM, poses, CAM, 1, priors=np.array([0.0, 1.0]))


def test_pose_check_determinant_matches_numpy_sign():
    """_checked_pose's triple-product determinant takes the same decisions as np.linalg.det."""
    from rtfm_ros.memory.juggling import _checked_pose, _det3

    rng = np.random.default_rng(5)
    for _ in range(200):
        M = rng.normal(size=(3, 3))
        assert _det3(M.tolist()) == pytest.approx(np.linalg.det(M), rel=1e-9, abs=1e-12)
    for T in random_poses(20, 6):
        assert _checked_pose(T) is not None
        mirrored = T.copy()
        mirrored[:3, 0] *= -1  # orthonormal, det -1: not a rotation
        with pytest.raises(GeometryError):
            _checked_pose(mirrored)


def test_small_worlds_skip_the_candidate_query():
    """frustum_candidates returns every id without a query when each half would hold them all,
    exactly what the query gives."""
    from rtfm_ros.memory.spatial_index import SpatialIndex

    rng = np.random.default_rng(7)
    for n in (0, 1, 5, 31, 32, 33, 70):
        index = SpatialIndex(min_buffer=16)
        if n:
            index.extend(rng.normal(size=(n, 3)))
        for candidates in (1, 8, 64, 100):
            T = yaw_view(rng.normal(size=3), rng.uniform(-180, 180))
            eye = T[:3, 3]
            query = np.unique(index.nearest_many(np.stack([eye, eye + T[:3, 2] * 3.0]), max(1, candidates // 2)))
            got = index.frustum_candidates(T, 3.0, candidates)
            assert np.array_equal(got, query) and got.dtype == query.dtype
