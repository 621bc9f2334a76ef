"""How a world renders: one frozen, validated dataclass (WorldModel's ``config``).

These are settings of the renderer, not of any network: how many real frames a view is made
from, the size frames are stored at, which depth sources a frame may use, stereo's depth range,
the bound of a depth observation, what depth a remembered view keeps (render.stored_depth) and
the pixel budgets of a view and of a call.
Every field is checked when a config is made, so a bad value is refused with its name before
anything renders; change one with ``dataclasses.replace`` (a world's config never changes under
a render).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from rtfm_ros.geometry import MAX_PIXELS_PER_CALL, MAX_VIEW_PIXELS

MAX_CONTEXT = 64
MAX_DEPTH_M = 1e6
STORED_DEPTHS = ("checked", "rendered", "none")  # render.stored_depth


class RenderConfigError(ValueError):
    """A render setting that is missing, mistyped or out of range."""


def _positive(name: str, v: object, hi: float = MAX_DEPTH_M) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or not 0 < v <= hi:
        raise RenderConfigError(f"render config {name} must be a finite number in (0, {hi:g}], got {v!r}")
    return float(v)


@dataclass(frozen=True)
class RenderConfig:
    """Settings of one world's renders (module docstring)."""

    context_size: int = 4        # real frames a view is rendered from (generated views may join them)
    max_frame_side: int = 640    # frames are stored at their own size up to this long side
    use_stereo: bool = True      # multi-view stereo depth for frames with posed neighbours
    use_prior: bool = True       # the learned depth prior for a frame alone; off: a flat plane
    depth_range: tuple[float, float] | None = None  # stereo's (near, far); None: from the cameras
    use_learned: bool = True     # the learned renderer finishes each view (render.learned); off: the blend alone
    check_depth: bool = True     # keep stereo depth only where a neighbour agrees (render.consistency)
    complete_depth: bool = True  # fill checked depth's holes with planes per superpixel (render.planar)
    max_depth: float = 40.0      # the largest depth a depth observation reports (Gym envs)
    stored_depth: str = "rendered"  # what a remembered view keeps as depth: checked, rendered or none
    depth_tolerance: float = 0.1    # relative agreement checked depth asks of a real frame
    max_view_pixels: int = MAX_VIEW_PIXELS          # the pixel budget of one view (geometry.check_pixel_budget)
    max_pixels_per_call: int = MAX_PIXELS_PER_CALL  # ... and of one render_batch call

    def __post_init__(self) -> None:
        for name in ("context_size", "max_frame_side", "max_view_pixels", "max_pixels_per_call"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int):
                raise RenderConfigError(f"render config {name} must be an integer, got {v!r}")
        if not 1 <= self.context_size <= MAX_CONTEXT:
            raise RenderConfigError(f"render config context_size must be in 1..{MAX_CONTEXT}, got {self.context_size}")
        if self.max_frame_side < 8:
            raise RenderConfigError(f"render config max_frame_side must be >= 8, got {self.max_frame_side}")
        if not 1 <= self.max_view_pixels <= self.max_pixels_per_call:
            raise RenderConfigError(f"render config needs 1 <= max_view_pixels <= max_pixels_per_call, got "
                                    f"{self.max_view_pixels} and {self.max_pixels_per_call}")
        for name in ("use_stereo", "use_prior", "use_learned", "check_depth", "complete_depth"):
            if not isinstance(getattr(self, name), bool):
                raise RenderConfigError(f"render config {name} must be true or false, got {getattr(self, name)!r}")
        _positive("max_depth", self.max_depth)
        if self.stored_depth not in STORED_DEPTHS:
            raise RenderConfigError(f"render config stored_depth must be one of {', '.join(STORED_DEPTHS)}, "
                                    f"got {self.stored_depth!r}")
        _positive("depth_tolerance", self.depth_tolerance, 1.0)
        if self.depth_range is not None:
            if not isinstance(self.depth_range, tuple) or len(self.depth_range) != 2:
                raise RenderConfigError(f"render config depth_range must be (near, far) or None, got "
                                        f"{self.depth_range!r}")
            near, far = (_positive("depth_range", v) for v in self.depth_range)
            if not near < far:
                raise RenderConfigError(f"render config depth_range needs near < far, got {self.depth_range}")
