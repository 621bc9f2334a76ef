"""What turns a render into a sensor's output: exposure, gain, noise; a depth camera's noise and
dropouts; how far published depth is off.

ROS-free (numpy), shared by the node and the benchmarks. Which depth is published (checked
against real frames, or as rendered) is the core's one policy: rtfm_ros.render.stored_depth.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np


def expose(rgb: np.ndarray, exposure: float = 1.0, gain_db: float = 0.0, noise_stddev: float = 0.0,
           rng: np.random.Generator | None = None) -> np.ndarray:
    """A sensor's response: light x exposure (linear), read noise (stddev, fraction of full scale), x gain.

    The render is taken as the scene at exposure 1 and gain 0 dB; noise is added before the
    gain, so gain amplifies it as on a real sensor. Identity (no copy) at the defaults.
    """
    if exposure == 1.0 and gain_db == 0.0 and noise_stddev == 0.0:
        return rgb
    linear = (rgb.astype(np.float32) / 255.0) ** 2.2 * exposure
    if noise_stddev > 0:
        rng = rng if rng is not None else np.random.default_rng()
        linear = linear + rng.normal(0.0, noise_stddev, size=linear.shape).astype(np.float32)
    linear = np.clip(linear * 10.0 ** (gain_db / 20.0), 0.0, 1.0)
    out: np.ndarray = np.round(255.0 * linear ** (1 / 2.2)).astype(np.uint8)
    return out


def phantom_near_share(depth: np.ndarray, truth: np.ndarray, margin: float = 0.2) -> tuple[float, float]:
    """(share of published pixels >= margin too near vs ground truth, share of pixels published)."""
    pub = np.isfinite(depth) & np.isfinite(truth) & (truth > 0)
    n = int(pub.sum())
    near = int((depth[pub] < (1.0 - margin) * truth[pub]).sum()) if n else 0
    return (near / n if n else 0.0), n / depth.size



DEPTH_NOISE_MODELS = ("none", "stereo")


@dataclass(frozen=True)
class DepthNoise:
    """What a depth camera does to the depth it measures (off by default: ``model`` none, edges 0).

    ``stereo``: an active stereo camera (RealSense, ZED, OAK-D) measures disparity d = f B / z, with
    Gaussian error ``disparity_stddev`` (px) and sub-pixel steps ``subpixel`` (px, 0 = none), so
    depth error grows as sigma_z = z^2 sigma_d / (f B) and depth comes in steps that widen with z.
    ``edge_jump`` > 0: pixels beside a depth edge (neighbours differing by more than that share of
    depth) return nothing, as stereo matching fails on mixed pixels; and the band of background
    the right camera cannot see beside a near object (the stereo occlusion shadow, B from
    ``baseline``) returns nothing too.
    """

    model: str = "none"
    baseline: float = 0.05          # m
    disparity_stddev: float = 0.08  # px
    subpixel: float = 0.125         # px
    edge_jump: float = 0.0          # relative; 0 = no dropouts

    @property
    def active(self) -> bool:
        return self.model != "none" or self.edge_jump > 0

    def at_width(self, width: int, native_width: int = 640) -> DepthNoise:
        """The same camera's noise on an image ``width`` pixels wide, its depth measured at
        ``native_width``: disparities (and their noise and steps) scale with the pixel size, so
        the error in metres stays the camera's whatever size the depth is used at."""
        r = width / native_width
        return replace(self, disparity_stddev=self.disparity_stddev * r, subpixel=self.subpixel * r)

    def apply(self, depth: np.ndarray, fx: float, rng: np.random.Generator | None = None) -> np.ndarray:
        """Measured depth from true depth (HxW metres, NaN = unknown stays unknown); fx in pixels."""
        if not self.active:
            return depth
        rng = rng if rng is not None else np.random.default_rng()
        z = np.asarray(depth, dtype=np.float64)
        known = np.isfinite(z) & (z > 0)
        out = np.where(known, z, np.nan)
        fb = fx * self.baseline
        if self.model == "stereo":
            d = fb / np.where(known, z, 1.0)
            d = d + rng.normal(0.0, self.disparity_stddev, size=d.shape)
            if self.subpixel > 0:
                d = np.round(d / self.subpixel) * self.subpixel
            out = np.where(known & (d > 0), fb / np.where(d > 0, d, 1.0), np.nan)
        if self.edge_jump > 0:
            out = np.where(_edges(z, known, self.edge_jump) | _occluded(z, known, fb), np.nan, out)
        return out.astype(np.float32)


def _edges(z: np.ndarray, known: np.ndarray, jump: float) -> np.ndarray:
    """Pixels with a 4-neighbour whose depth differs by more than jump (relative to the nearer)."""
    edge = np.zeros(z.shape, dtype=bool)
    zz = np.where(known, z, np.inf)
    for axis in (0, 1):
        a, b = np.moveaxis(zz, axis, 0)[:-1], np.moveaxis(zz, axis, 0)[1:]
        with np.errstate(invalid="ignore"):
            big = np.abs(a - b) > jump * np.minimum(a, b)
        big &= np.isfinite(a) & np.isfinite(b)
        e = np.moveaxis(edge, axis, 0)
        e[:-1] |= big
        e[1:] |= big
    return edge


def _occluded(z: np.ndarray, known: np.ndarray, fb: float, max_shift: int = 128) -> np.ndarray:
    """Pixels of the left (reference) camera that the right camera, fb / f to its right, cannot
    see: some pixel s to their right is nearer by a disparity of s or more."""
    d = np.where(known, fb / np.where(known, z, 1.0), 0.0)
    hidden = np.zeros(z.shape, dtype=bool)
    span = int(min(max_shift, z.shape[1] - 1, np.ceil(float(d.max()) - float(d.min())) if d.size else 0))
    for s in range(1, span + 1):
        hidden[:, :-s] |= d[:, s:] - d[:, :-s] >= s
    out: np.ndarray = hidden & known
    return out
