"""GMSD and the unseen-region realism score (patch SWD) say what they are meant to say, on real
rendered texture from a procedural world."""

import numpy as np
import pytest

from rtfm_ros import PinholeCamera
from rtfm_ros.evaluate.metrics import MetricError, gmsd, patch_swd


@pytest.fixture(scope="module")
def textured():
    """Two MuJoCo views of a held-out room (textured walls, furniture)."""
    from rtfm_ros.sim.renderer import WorldRenderer
    from rtfm_ros.sim.trajectories import make_trajectory
    from rtfm_ros.sim.worlds import make_world

    world = make_world(1_000_911, "room")
    poses = make_trajectory(world, "loop", 12, 0).T_world_camera
    with WorldRenderer(world, PinholeCamera.from_fov(96, 72, 80)) as r:
        return r.render(poses[0])[0], r.render(poses[6])[0]


def test_gmsd_is_zero_for_the_same_image_and_grows_with_shattering(textured):
    img, _ = textured
    assert gmsd(img, img) == 0.0
    shattered = img.copy()
    rng = np.random.default_rng(0)
    for _ in range(40):  # holes and misplaced fragments, as a broken warp leaves them
        y, x = rng.integers(0, 64), rng.integers(0, 88)
        shattered[y:y + 8, x:x + 8] = img[(y + 13) % 64:(y + 13) % 64 + 8, (x + 29) % 88:(x + 29) % 88 + 8]
    smeared = np.repeat(np.repeat(img[::4, ::4], 4, 0), 4, 1)[:72, :96]
    assert gmsd(shattered, img) > 0.02
    assert gmsd(smeared, img) > 0.02
    assert gmsd(img, img[::-1].copy()) > gmsd(shattered, img)  # another picture altogether is further still
    with pytest.raises(MetricError):
        gmsd(img[:2, :2], img[:2, :2])


def test_patch_swd_ranks_a_flat_fill_below_true_texture(textured):
    img, other = textured
    mask = np.ones(img.shape[:2], bool)
    flat = np.broadcast_to(img.reshape(-1, 3).mean(0).round().astype(np.uint8), img.shape).copy()
    blurred = np.repeat(np.repeat(img[::3, ::3], 3, 0), 3, 1)[:72, :96]
    assert patch_swd(img, img, mask) == 0.0
    # Plausible texture that is not pixel-aligned (another view of the same room) is closer to the
    # truth's detail than a smooth fill of the right mean colour or a smear of the truth itself.
    assert patch_swd(other, img, mask) < patch_swd(flat, img, mask)
    assert patch_swd(blurred, img, mask) < patch_swd(flat, img, mask)
    assert np.isnan(patch_swd(img, img, np.zeros_like(mask)))
