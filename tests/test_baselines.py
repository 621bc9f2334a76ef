"""Metrics, baselines and the held-out suite."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np
import pytest

from rtfm_ros.cli import main as cli_main
from rtfm_ros.evaluate.baselines import (
    BaselineError,
    ContextView,
    nearest_frame,
    oracle_reprojection,
    ranked_reprojection,
)
from rtfm_ros.evaluate.metrics import MAX_PSNR, MetricError, psnr, ssim
from rtfm_ros.evaluate.suite import (
    RENDERERS,
    TARGETS_PER_KIND,
    SuiteError,
    build_world,
    evaluate,
    load_suite,
)
from rtfm_ros.geometry import PinholeCamera, look_at
from rtfm_ros.sim.renderer import WorldRenderer
from rtfm_ros.sim.targets import HALF_UNSEEN_RANGE, TARGET_KINDS
from rtfm_ros.sim.worlds import HELDOUT_SEED_BASE, make_world

CAM = PinholeCamera.from_fov(32, 32, 90.0)


def test_psnr_and_ssim() -> None:
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
    assert psnr(a, a) == MAX_PSNR and ssim(a, a) == pytest.approx(1.0)
    b = a.astype(np.int16)
    b[::2] += np.where(b[::2] < 128, 10, -10).astype(np.int16)  # mse = 50
    b = b.astype(np.uint8)
    assert psnr(a, b) == pytest.approx(10 * math.log10(255**2 / 50.0))
    assert 0.9 < ssim(a, b) < 0.999 and ssim(a, 255 - a) < 0.2
    with pytest.raises(MetricError, match="uint8"):
        psnr(a.astype(np.float32), a)
    with pytest.raises(MetricError, match="one shape"):
        ssim(a, a[:8])


def _views(world, poses: list[np.ndarray], cam: PinholeCamera = CAM) -> list[ContextView]:
    with WorldRenderer(world, cam) as r:
        return [ContextView(*[r.render(T)[0]], T_world_camera=T, camera=cam, depth=r.render_depth(T)) for T in poses]


def _scene():
    world = make_world(5, "room")
    p = world.sample_free_point(np.random.default_rng(1), 0.6)
    at = lambda dx, yaw: look_at([p[0] + dx, p[1], 1.0], [p[0] + dx + math.cos(yaw), p[1] + math.sin(yaw), 0.9])  # noqa: E731
    return world, at


def test_nearest_frame_picks_the_closest_pose_and_resizes() -> None:
    world, at = _scene()
    views = _views(world, [at(0.0, 0.0), at(0.1, 1.5), at(0.3, -1.5)])
    assert np.array_equal(nearest_frame(views, at(0.12, 1.4), CAM), views[1].rgb)
    assert np.array_equal(nearest_frame(views, at(0.0, 0.05), CAM), views[0].rgb)
    small = nearest_frame(views, at(0.0, 0.0), PinholeCamera.from_fov(16, 16, 90.0))
    assert small.shape == (16, 16, 3) and small.dtype == np.uint8
    with pytest.raises(BaselineError, match="at least one"):
        nearest_frame([], at(0, 0), CAM)


def test_oracle_reprojection_reproduces_views_and_beats_copying() -> None:
    world, at = _scene()
    views = _views(world, [at(0.0, 0.0), at(0.0, 0.5)])
    assert psnr(oracle_reprojection(views[:1], views[0].T_world_camera, CAM), views[0].rgb) == MAX_PSNR
    assert psnr(oracle_reprojection(views, views[0].T_world_camera, CAM), views[0].rgb) > 28
    target = at(0.0, 0.25)  # half-way in yaw: both views see parts of it
    with WorldRenderer(world, CAM) as r:
        truth = r.render_rgb(target)
    assert psnr(oracle_reprojection(views, target, CAM), truth) > psnr(nearest_frame(views, target, CAM), truth) + 2
    with pytest.raises(BaselineError, match="depth"):
        oracle_reprojection([ContextView(v.rgb, v.T_world_camera, v.camera) for v in views], target, CAM)


def test_ranked_reprojection_keeps_the_best_ranked_view() -> None:
    """At a context view's own pose, ranking keeps that view's pixels (all but a few at depth
    edges); unranked z-buffering lets the other view win wherever depths nearly tie."""
    world, at = _scene()
    views = _views(world, [at(0.0, 0.0), at(0.0, 0.5)])
    for order, pose in ((views, views[0]), (views[::-1], views[1])):
        ranked = psnr(ranked_reprojection(order, pose.T_world_camera, CAM), pose.rgb)
        assert ranked >= 40 and ranked > psnr(oracle_reprojection(order, pose.T_world_camera, CAM), pose.rgb) + 5
    target = at(0.0, 0.25)
    with WorldRenderer(world, CAM) as r:
        truth = r.render_rgb(target)
    assert psnr(ranked_reprojection(views, target, CAM), truth) > psnr(nearest_frame(views, target, CAM), truth) + 2


def test_suite_world_targets_are_deterministic_and_of_each_kind() -> None:
    seed = HELDOUT_SEED_BASE + 1
    a, b = build_world(seed, res=16), build_world(seed, res=16)
    assert np.array_equal(a.targets.rgb, b.targets.rgb) and np.array_equal(a.context.depth, b.context.depth)
    assert a.target_kinds == [k for k in TARGET_KINDS for _ in range(TARGETS_PER_KIND)]
    ctx_xy = a.context.T_world_camera[:, :2, 3]
    world = make_world(seed, a.kind)
    for T, kind in zip(a.targets.T_world_camera, a.target_kinds):
        d = np.linalg.norm(ctx_xy - T[:2, 3], axis=1)
        assert world.is_free(T[0, 3], T[1, 3], 0.2)
        if kind == "interpolation":
            assert d.min() < 0.5
        elif kind == "extrapolation":
            assert d.min() >= 0.6
        elif kind == "half_unseen":
            assert d.min() >= 0.3
        else:  # revisit: near where the context passed in its first third
            assert d[: len(d) // 3].min() < 0.1
    with pytest.raises(SuiteError, match="held-out seeds"):
        build_world(3)


def test_suite_cache_evaluate_and_cli(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    suite = load_suite(tmp_path / "suite", res=16, worlds=1)
    again = load_suite(tmp_path / "suite", res=16, worlds=1)  # from the cache
    assert np.array_equal(suite.worlds[0].targets.rgb, again.worlds[0].targets.rgb)
    assert suite.worlds[0].seed == HELDOUT_SEED_BASE
    with pytest.raises(SuiteError, match="built with"):
        load_suite(tmp_path / "suite", res=16, worlds=2)
    args = argparse.Namespace(checkpoint=None, device="cpu")  # the bundled model for the model renderers
    table = evaluate({n: f(args) for n, f in RENDERERS.items()}, suite, context_budget=3)
    for name in RENDERERS:
        per = table.scores[name]
        assert per["all"]["n"] == len(TARGET_KINDS) * TARGETS_PER_KIND and 5 < per["all"]["psnr"] <= MAX_PSNR
        assert 0 < per["revisit"]["ssim"] <= 1
    assert table.scores["oracle_reprojection"]["all"]["psnr"] > table.scores["nearest_frame"]["all"]["psnr"]
    # the half_unseen views are the ones where about half was never seen, more than the plain extrapolations
    lo, hi = HALF_UNSEEN_RANGE
    assert lo - 0.15 <= table.unseen_share["half_unseen"] <= hi + 0.15
    assert "| nearest_frame |" in table.to_markdown()
    assert cli_main(["eval", "--suite-dir", str(tmp_path / "suite"), "--res", "16", "--worlds", "1",
                     "--renderers", "nearest_frame"]) == 0
    out = capsys.readouterr().out
    assert "| nearest_frame |" in out and "oracle" not in out
    assert cli_main(["eval", "--suite-dir", str(tmp_path / "suite"), "--res", "16", "--worlds", "1",
                     "--renderers", "magic"]) == 2
