"""validate_transform's and repair_rotation's fast path for clearly rigid transforms accepts
and returns exactly what the full checks do, at and around their tolerances."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from rtfm_ros.geometry import GeometryError, det3, repair_rotation, validate_transform


def _full_check(T: np.ndarray, atol: float = 1e-5) -> bool:
    R = T[:3, :3]
    return bool(np.isfinite(T).all() and np.allclose(R.T @ R, np.eye(3), atol=atol)
                and abs(np.linalg.det(R) - 1.0) <= atol and np.allclose(T[3], [0.0, 0.0, 0.0, 1.0]))


@pytest.mark.parametrize("seed", range(20))
def test_fast_path_accepts_what_the_full_checks_accept(seed: int) -> None:
    rng = np.random.default_rng(seed)
    for noise in (0.0, 1e-7, 3e-6, 6e-6, 1e-5, 2e-5, 1e-4, 1e-2):
        T = np.eye(4)
        T[:3, :3] = Rotation.random(random_state=seed).as_matrix() + rng.normal(0, noise, (3, 3))
        T[:3, 3] = rng.normal(0, 3, 3)
        try:
            out = validate_transform(T)
            assert _full_check(T) and out is not None and np.array_equal(out, T)
        except GeometryError:
            assert not _full_check(T)
        try:
            rep, repaired = repair_rotation(T, tol=1e-3)
        except GeometryError:
            assert noise >= 1e-4
            continue
        assert repaired or np.array_equal(rep, T)
        R = T[:3, :3]
        off = max(float(np.abs(R.T @ R - np.eye(3)).max()), abs(float(np.linalg.det(R)) - 1.0))
        assert repaired == (off > 1e-5)  # as before the fast path


def test_det3_equals_the_determinant() -> None:
    rng = np.random.default_rng(0)
    for _ in range(50):
        R = rng.normal(size=(3, 3))
        assert det3(R.tolist()) == pytest.approx(float(np.linalg.det(R)), rel=1e-12, abs=1e-12)
