"""What `rtfm replay` is asked to do (ReplayOptions), what it did (ReplayResult), and its error."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from rtfm_ros.geometry import PinholeCamera
from rtfm_ros.options import setting

DEPTH_SOURCES = ("checked", "rendered")  # render.stored_depth policies a replay may write


class ReplayError(ValueError):
    """Replay options or bag contents that cannot produce the asked output."""


STORAGES = ("mcap", "sqlite3")


@dataclass(frozen=True)
class ReplayOptions:
    """What to render from a bag, checked when made; `rtfm replay`'s options are made from these
    fields (rtfm_ros.options), each with its help."""

    camera_frame: str = setting(help="TF frame of the simulated camera (optical axes)")
    world_frame: str = setting("map", "fixed frame the world is stored in (default map)")
    world: Path | None = setting(None, "saved world file (.rtfm) to render")
    seed_topic: str | None = setting(None, "Image or CompressedImage topic whose frames seed the world")
    seed_camera_info_topic: str | None = setting(None, "CameraInfo for the seed images (default: found by namespace)")
    seed_stride: int = setting(1, "use every Nth seed image (default 1)")
    seed_depth_topic: str | None = setting(None, "depth Image registered to the seed camera (16UC1 mm or 32FC1 m): "
                                                 "metric depth for the seeds instead of stereo")
    rate_hz: float | None = setting(None, "render at this rate over the TF time span (default 10 Hz)", flag="--rate")
    at_topic: str | None = setting(None, "render at the header stamps of this topic's messages")
    poses: Path | None = setting(None, "CSV/JSON of stamp + pose (world frame) to render instead of TF")
    offset: tuple[float, float, float, float] | None = setting(None, cli=False)  # --offset x,y,z,yaw
    camera: PinholeCamera | None = setting(None, cli=False)  # --width, --height, --fov
    camera_info_topic: str | None = setting(None, "take intrinsics from this CameraInfo topic (scaled to "
                                                  "--width/--height if given)")
    body_frame: bool = setting(False, "the camera frame has ROS body axes (x forward, z up): apply the REP-103 "
                                      "rotation and publish images in <camera-frame>_optical (added to /tf_static)")
    topic_prefix: str | None = setting(None, "output topics' namespace (default /rtfm/<camera>)")
    storage: str = setting("mcap", "output storage (default mcap)", choices=STORAGES)
    copy: bool = setting(True, "do not copy the input bag's messages", flag="--no-copy")
    depth: bool = setting(False, "also write 32FC1 depth on <prefix>/depth/image_raw")
    depth_source: str = setting("rendered", "the depth written (--depth) and kept by remembered views: checked "
                                            "(only where a real frame saw the same surface, NaN elsewhere, as the "
                                            "camera node publishes) or rendered (default)", choices=DEPTH_SOURCES)
    checkpoint: Path | None = setting(None, "model checkpoint (default: the bundled model)")
    save_world: Path | None = setting(None, "write the world (after seeding) to this directory")
    batch_size: int = setting(4, "views rendered per model call (default 4: best on CPU; raise it on a GPU)",
                              flag="--batch")
    remember: bool = setting(True, "do not add rendered views to the world", flag="--no-remember")
    progress: bool = setting(True, "no progress bars", flag="--quiet")

    def __post_init__(self) -> None:
        if not isinstance(self.camera_frame, str) or not self.camera_frame.strip("/"):
            raise ReplayError(f"--camera-frame must name a TF frame, got {self.camera_frame!r}")
        if sum(x is not None for x in (self.rate_hz, self.at_topic, self.poses)) > 1:
            raise ReplayError("--rate, --at-topic and --poses are exclusive: give at most one")
        if self.rate_hz is not None and not (math.isfinite(self.rate_hz) and self.rate_hz > 0):
            raise ReplayError(f"--rate must be a positive number of Hz, got {self.rate_hz}")
        if self.depth_source not in DEPTH_SOURCES:
            raise ReplayError(f"--depth-source must be one of {', '.join(DEPTH_SOURCES)}, got {self.depth_source!r}")
        if self.storage not in STORAGES:
            raise ReplayError(f"--storage must be one of {', '.join(STORAGES)}, got {self.storage!r}")
        if self.batch_size < 1 or self.seed_stride < 1:
            raise ReplayError("--batch and --seed-stride must be >= 1")


@dataclass
class ReplayResult:
    """What a replay did: what it wrote (counts, topics), then how long it took."""

    output: Path | None
    rendered: int = 0
    seeded: int = 0
    skipped: int = 0
    memory_frames: int = 0
    topics: dict[str, str] = field(default_factory=dict)  # image, info (and depth): the topics written
    bag_seconds: float = 0.0
    render_seconds: float = 0.0
    wall_seconds: float = 0.0

    @property
    def realtime_factor(self) -> float:
        """Span of bag time rendered per second of wall time spent rendering and writing."""
        return self.bag_seconds / self.wall_seconds if self.wall_seconds > 0 else float("inf")
