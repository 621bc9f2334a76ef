"""What `rtfm replay` is asked to do (ReplayOptions), what it did (ReplayResult), and its error."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from rtfm_ros.geometry import PinholeCamera

DEPTH_SOURCES = ("checked", "rendered")  # render.stored_depth policies a replay may write


class ReplayError(ValueError):
    """Replay options or bag contents that cannot produce the asked output."""


@dataclass
class ReplayOptions:
    """What to render from a bag; see `rtfm replay --help` for each field's meaning."""

    camera_frame: str
    world_frame: str = "map"
    world: Path | None = None
    seed_topic: str | None = None
    seed_camera_info_topic: str | None = None
    seed_stride: int = 1
    seed_depth_topic: str | None = None
    rate_hz: float | None = None
    at_topic: str | None = None
    poses: Path | None = None
    offset: tuple[float, float, float, float] | None = None
    camera: PinholeCamera | None = None
    camera_info_topic: str | None = None
    body_frame: bool = False
    topic_prefix: str | None = None
    storage: str = "mcap"
    copy: bool = True
    depth: bool = False
    depth_source: str = "rendered"  # written depth and remembered views' depth: checked or rendered
    checkpoint: Path | None = None
    save_world: Path | None = None
    batch_size: int = 4
    remember: bool = True
    progress: bool = True


@dataclass
class ReplayResult:
    output: Path | None
    rendered: int = 0
    seeded: int = 0
    skipped: int = 0
    memory_frames: int = 0
    bag_seconds: float = 0.0
    render_seconds: float = 0.0
    wall_seconds: float = 0.0
    topics: dict[str, str] = field(default_factory=dict)

    @property
    def realtime_factor(self) -> float:
        """Span of bag time rendered per second of wall time spent rendering and writing."""
        return self.bag_seconds / self.wall_seconds if self.wall_seconds > 0 else float("inf")
