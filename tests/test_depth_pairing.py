"""Seed images paired with their registered depth as the two topics deliver them, in any order."""

import numpy as np

from rtfm_ros.camera.depth_pairing import MAX_PENDING, STALE_NS, DepthPairing
from rtfm_ros.data.depth_maps import DEPTH_SYNC_NS

MS = 1_000_000


def _d(v: float) -> np.ndarray:
    return np.full((2, 2), v, np.float32)


def test_images_go_alone_until_depth_flows_then_wait_for_theirs():
    p: DepthPairing[str] = DepthPairing()
    assert p.image(0, "a") == [("a", None)]  # no depth topic publishing: nothing to wait for
    assert p.depth(100 * MS, _d(1.0)) == []
    [(item, depth)] = p.image(100 * MS + DEPTH_SYNC_NS // 2, "b")  # its depth came first
    assert item == "b" and depth is not None and depth[0, 0] == 1.0
    assert p.image(200 * MS, "c") == [] and p.waiting == 1  # depth flows: it waits for its own
    [(item, depth)] = p.depth(203 * MS, _d(2.0))
    assert item == "c" and depth is not None and depth[0, 0] == 2.0


def test_an_image_whose_depth_never_comes_goes_on_alone():
    p: DepthPairing[str] = DepthPairing()
    p.depth(0, _d(1.0))
    assert p.image(100 * MS, "dropped") == []
    assert p.depth(300 * MS, _d(3.0)) == [("dropped", None)]  # the depth stream is past it
    assert p.image(50 * MS, "late") == [("late", None)]  # older than the newest depth: none will come
    p.image(400 * MS, "x")
    released = p.image(400 * MS + STALE_NS + 1, "y")  # depth stopped: x goes on once stale
    assert released == [("x", None)] and p.waiting == 1
    for k in range(MAX_PENDING + 2):
        p.image(400 * MS + STALE_NS + 2 + k, f"q{k}")
    assert p.waiting == MAX_PENDING
