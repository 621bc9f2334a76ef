"""`rtfm replay`: render a simulated camera along the TF trajectory of a recorded ROS 2 bag.

Camera simulation is most useful on data already recorded: a drive through a lab gives the
trajectory (TF) and, with --seed-topic, the real images that seed the world, which can then be
rendered along the same path or new ones (--offset, --poses). All TF is loaded up front, so a
lookup never depends on the order messages were logged. The output bag holds the input's
messages (unless --no-copy) interleaved in time with the rendered Image / CameraInfo (/ depth).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import re
import sys
import tempfile
import time
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Sequence

import numpy as np

from rtfm_ros.bags import (COMPRESSED_IMAGE, IMAGE, BagWriter, camera_info_topic_for, connections_for,
                           decode_image, load_tf, open_bag, read_camera_infos, stamp_to_ns)
from rtfm_ros.geometry import (R_BODY_OPTICAL, PinholeCamera, body_to_optical, make_transform, transform_from_ros,
                               validate_transform)
from rtfm_ros.tf_buffer import NS_PER_S, ExtrapolationError, TransformBuffer, TransformLookupError

if TYPE_CHECKING:  # pragma: no cover
    from rosbags.highlevel import AnyReader

    from rtfm_ros.world import WorldModel


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


# ------------------------------------------------------------------------------ poses
def parse_offset(text: str) -> tuple[float, float, float, float]:
    """'x,y,z,yaw_deg' -> floats."""
    try:
        vals = tuple(float(v) for v in text.split(","))
    except ValueError:
        vals = ()
    if len(vals) != 4 or not all(math.isfinite(v) for v in vals):
        raise ReplayError(f"--offset must be four numbers x,y,z,yaw (metres, degrees), got {text!r}")
    return vals  # type: ignore[return-value]


def apply_offset(T: np.ndarray, offset: Sequence[float]) -> np.ndarray:
    """Shift a camera by (x, y, z) in the world frame and turn it by yaw degrees about world z, in place."""
    x, y, z, yaw = offset
    c, s = math.cos(math.radians(yaw)), math.sin(math.radians(yaw))
    out = np.array(T, dtype=np.float64)
    out[:3, :3] = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]]) @ out[:3, :3]
    out[:3, 3] += (x, y, z)
    return out


def _pose_row(row: dict[str, Any], where: str) -> tuple[int, np.ndarray]:
    try:
        if "stamp_ns" in row:
            t = int(row["stamp_ns"])
        else:
            t = int((Decimal(str(row["stamp"])) * NS_PER_S).to_integral_value())  # exact to the ns
        if "T" in row:
            T = validate_transform(np.asarray(row["T"], dtype=np.float64), f"{where} T")
        else:
            pos = row.get("position") or [row["x"], row["y"], row["z"]]
            q = row.get("orientation") or [row["qx"], row["qy"], row["qz"], row["qw"]]
            T = transform_from_ros([float(v) for v in pos], [float(v) for v in q])
    except (KeyError, TypeError, ValueError, ArithmeticError) as e:
        raise ReplayError(f"{where}: a pose needs stamp (s) or stamp_ns, and x,y,z,qx,qy,qz,qw "
                          f"(or position/orientation, or a 4x4 T): {e}") from e
    if t < 0:
        raise ReplayError(f"{where}: stamp must be >= 0")
    return t, T


def load_poses(path: str | Path) -> list[tuple[int, np.ndarray]]:
    """Stamped T_world_camera poses from CSV (header stamp|stamp_ns,x,y,z,qx,qy,qz,qw) or JSON
    (a list, or {"poses": [...]}, of objects with those keys, position/orientation lists, or T)."""
    path = Path(path)
    if not path.is_file():
        raise ReplayError(f"poses file {path} does not exist")
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(path.read_text(), parse_float=Decimal)
        except json.JSONDecodeError as e:
            raise ReplayError(f"poses file {path} is not valid JSON: {e}") from e
        rows = data.get("poses") if isinstance(data, dict) else data
        if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
            raise ReplayError(f"poses file {path} must hold a list of pose objects")
    else:
        with path.open(newline="") as f:
            rows = [{k.strip(): v for k, v in r.items() if k} for r in csv.DictReader(f)]
    poses = sorted((_pose_row(r, f"{path} pose {i}") for i, r in enumerate(rows)), key=lambda p: p[0])
    if not poses:
        raise ReplayError(f"poses file {path} holds no poses")
    return poses


def _chain_range(tf: TransformBuffer, a: str, b: str) -> tuple[int, int] | None:
    """Time range over which a <-> b can be looked up (None: all static)."""
    def up(frame: str) -> list[tuple[str, str]]:  # (parent, child) edges from frame to its root
        edges = []
        while (parent := tf.parent_of(frame)) is not None:
            edges.append((parent, frame))
            frame = parent
        return edges

    up_a, up_b = up(a.strip("/")), up(b.strip("/"))
    common = set(up_a) & set(up_b)  # edges above the frames' common ancestor take no part
    lo, hi, dynamic = 0, sys.maxsize, False
    for edge in (e for e in up_a + up_b if e not in common):
        rng = tf.time_range(*edge)
        if rng is not None:
            dynamic, lo, hi = True, max(lo, rng[0]), min(hi, rng[1])
    return (lo, hi) if dynamic else None


def _check_frames(tf: TransformBuffer, *frames: str) -> None:
    known = tf.frames()
    for f in frames:
        if f.lstrip("/") not in known:
            listing = ", ".join(sorted(known)) if known else "(none: the bag has no /tf or /tf_static)"
            raise ReplayError(f"frame {f!r} is not in the bag's TF tree; frames in the bag: {listing}")


def _camera_pose(tf: TransformBuffer, world: str, frame: str, t: int, body: bool) -> np.ndarray:
    T = tf.lookup(world, frame, t)
    return body_to_optical(T) if body else T


# ------------------------------------------------------------------------------ seeding
def _seed_sources(reader: "AnyReader", opt: ReplayOptions) -> tuple[list, np.ndarray, list[PinholeCamera]]:
    """Seed image connections and their CameraInfo (stamps, cameras), checked before any work."""
    conns = connections_for(reader, opt.seed_topic or "", {IMAGE, COMPRESSED_IMAGE})
    info_topic = opt.seed_camera_info_topic or camera_info_topic_for(reader, opt.seed_topic or "")
    stamps, cams = read_camera_infos(reader, info_topic)
    return conns, stamps, cams


def seed_world(wm: "WorldModel", reader: "AnyReader", tf: TransformBuffer, opt: ReplayOptions) -> tuple[int, int]:
    """Add the bag's camera images on opt.seed_topic to wm's memory at their TF poses; (added, skipped)."""
    from tqdm import tqdm

    conns, stamps, cams = _seed_sources(reader, opt)
    total = sum(c.msgcount for c in conns)
    added = skipped = 0
    msgs = reader.messages(connections=conns)
    for i, (conn, _, raw) in enumerate(tqdm(msgs, total=total, desc="seeding", unit="img", disable=not opt.progress)):
        if i % opt.seed_stride:
            continue
        msg = reader.deserialize(raw, conn.msgtype)
        t = stamp_to_ns(msg.header.stamp)
        frame = msg.header.frame_id.lstrip("/") or opt.camera_frame
        _check_frames(tf, frame)
        try:
            T = _camera_pose(tf, opt.world_frame, frame, t, opt.body_frame and frame == opt.camera_frame)
        except ExtrapolationError:
            skipped += 1
            continue
        rgb = decode_image(msg, conn.msgtype, (wm.memory_camera_size,) * 2)  # stored at that size
        cam = cams[int(np.argmin(np.abs(stamps - t)))]
        if (cam.width, cam.height) != (rgb.shape[1], rgb.shape[0]):
            cam = cam.scaled(rgb.shape[1], rgb.shape[0])
        wm.add_frame(rgb, T, cam, stamp=t / NS_PER_S, source="seed")
        added += 1
    if not added:
        raise ReplayError(f"no image on {opt.seed_topic} could be placed: none has TF from "
                          f"{opt.world_frame!r} at its stamp ({skipped} skipped)")
    return added, skipped


# ------------------------------------------------------------------------------ replay
def _render_times(reader: "AnyReader", tf: TransformBuffer, opt: ReplayOptions) -> list[int]:
    if opt.at_topic:
        conns = connections_for(reader, opt.at_topic)
        out = []
        for c, _, raw in reader.messages(connections=conns):
            msg = reader.deserialize(raw, c.msgtype)
            if not hasattr(msg, "header"):
                raise ReplayError(f"--at-topic {opt.at_topic} carries {c.msgtype}, which has no header stamp")
            out.append(stamp_to_ns(msg.header.stamp))
        return sorted(set(out))
    rng = _chain_range(tf, opt.world_frame, opt.camera_frame)
    if rng is None:
        raise ReplayError(f"{opt.world_frame} -> {opt.camera_frame} is static in this bag: there is no "
                          "trajectory to follow (use --at-topic or --poses)")
    if rng[0] > rng[1]:
        raise ReplayError(f"the TF edges between {opt.world_frame} and {opt.camera_frame} cover no common time span")
    step = NS_PER_S / float(opt.rate_hz or 10.0)
    n = int(math.floor((rng[1] - rng[0]) / step)) + 1
    return [rng[0] + int(round(k * step)) for k in range(n)]


def _trajectory(reader: "AnyReader", tf: TransformBuffer, opt: ReplayOptions) -> tuple[list[int], np.ndarray, int]:
    """(stamps, Nx4x4 optical T_world_camera, skipped) to render."""
    if opt.poses is not None:
        poses = load_poses(opt.poses)
        stamps = [t for t, _ in poses]
        Ts = [body_to_optical(T) if opt.body_frame else T for _, T in poses]
        skipped = 0
    else:
        _check_frames(tf, opt.world_frame, opt.camera_frame)
        stamps, Ts, skipped = [], [], 0
        for t in _render_times(reader, tf, opt):
            try:
                Ts.append(_camera_pose(tf, opt.world_frame, opt.camera_frame, t, opt.body_frame))
                stamps.append(t)
            except ExtrapolationError:
                if not opt.at_topic:
                    raise
                skipped += 1  # a message of --at-topic before the first or after the last TF sample
    if opt.offset is not None:
        Ts = [apply_offset(T, opt.offset) for T in Ts]
    if not Ts:
        raise ReplayError(f"no render time has TF from {opt.world_frame!r} to {opt.camera_frame!r} "
                          f"({skipped} stamps of {opt.at_topic} outside the TF data)")
    return stamps, np.stack(Ts), skipped


def default_prefix(camera_frame: str) -> str:
    """/rtfm/<camera>: the frame name without _optical_frame / _frame / _link / _optical."""
    name = re.sub(r"(_optical_frame|_optical|_frame|_link)$", "", camera_frame.strip("/")) or "camera"
    return f"/rtfm/{re.sub(r'[^A-Za-z0-9_/]', '_', name)}"


def _render_camera(reader: "AnyReader", opt: ReplayOptions) -> PinholeCamera:
    if opt.camera_info_topic:
        _, cams = read_camera_infos(reader, opt.camera_info_topic)
        cam = cams[0]
        if opt.camera is not None:
            cam = cam.scaled(opt.camera.width, opt.camera.height)
        return cam
    return opt.camera or PinholeCamera.from_fov(64, 64, 90.0)


def _validate(opt: ReplayOptions, output: str | Path | None, have_model: bool) -> None:
    if opt.world is None and not opt.seed_topic and not have_model:
        raise ReplayError("nothing to render from: give a saved world (--world DIR), seed one from the bag's "
                          "camera images (--seed-topic TOPIC), or both")
    if sum(x is not None for x in (opt.rate_hz, opt.at_topic, opt.poses)) > 1:
        raise ReplayError("--rate, --at-topic and --poses are exclusive: give at most one")
    if opt.rate_hz is not None and not (math.isfinite(opt.rate_hz) and opt.rate_hz > 0):
        raise ReplayError(f"--rate must be a positive number of Hz, got {opt.rate_hz}")
    if opt.batch_size < 1 or opt.seed_stride < 1:
        raise ReplayError("--batch and --seed-stride must be >= 1")
    if output is None and opt.save_world is None:
        raise ReplayError("give an output bag (-o) and/or --save-world")
    if opt.world is not None and not Path(opt.world).exists():
        raise ReplayError(f"saved world {opt.world} does not exist")
    if output is not None and Path(output).exists():
        raise ReplayError(f"output {output} exists already; refusing to overwrite it")


def replay(bag: str | Path, output: str | Path | None, opt: ReplayOptions,
           world_model: "WorldModel | None" = None) -> ReplayResult:
    """Seed and/or load a world, render opt.camera_frame along the bag's TF, write the output bag.

    Everything that can be checked (options, frames, topics, camera size) is checked before the
    model loads and before anything is written. ``world_model`` (used as given: opt.world and
    opt.checkpoint are then ignored) lets a caller keep one model across replays.
    """
    _validate(opt, output, world_model is not None)
    result = ReplayResult(output=Path(output) if output is not None else None)
    scratch: tempfile.TemporaryDirectory | None = None
    own_model = world_model is None
    reader = open_bag(bag)
    try:
        tf, offsets = load_tf(reader)
        if not tf.frames() and opt.poses is None:
            raise ReplayError(f"bag {bag} has no /tf or /tf_static messages to follow")
        camera = _render_camera(reader, opt)
        if opt.seed_topic:
            _seed_sources(reader, opt)
        stamps, Ts, result.skipped = _trajectory(reader, tf, opt) if output is not None else ([], np.empty(0), 0)
        if world_model is None:
            world_model, scratch = _load_world(opt)
        world_model.check_camera(camera)
        if opt.seed_topic:
            result.seeded, seed_skipped = seed_world(world_model, reader, tf, opt)
            result.skipped += seed_skipped
        if opt.save_world is not None:
            world_model.save(opt.save_world)
        if output is not None:
            if len(world_model.memory) == 0:
                raise ReplayError("the world is empty: the saved world holds no frames")
            clock = int(np.median(offsets)) if offsets else 0  # log time - header time (sim-time bags)
            _write_output(Path(output), reader, world_model, camera, stamps, Ts, clock, opt, result)
        result.memory_frames = len(world_model.memory)
    except TransformLookupError as e:  # frames not connected, times not covered, ...
        raise ReplayError(f"TF lookup failed: {e}") from e
    finally:
        reader.close()
        if own_model and world_model is not None:
            world_model.memory.close()
        if scratch is not None:
            scratch.cleanup()
    return result


def _load_world(opt: ReplayOptions) -> "tuple[WorldModel, tempfile.TemporaryDirectory | None]":
    """The model with opt.world opened read-only: the saved world is input and is never changed.

    Frames added during replay (seeds, remembered views) go to a scratch copy, deleted afterwards
    (--save-world keeps them).
    """
    from rtfm_ros.memory import FrameMemory
    from rtfm_ros.world import WorldModel

    wm = WorldModel.load(opt.checkpoint)
    if opt.world is None:
        return wm, None
    memory = FrameMemory.open(opt.world, writable=False)
    if not (opt.remember or opt.seed_topic):
        wm.memory = memory
        return wm, None
    scratch = tempfile.TemporaryDirectory(prefix="rtfm-replay-")
    try:
        with memory:
            copy = memory.save(Path(scratch.name) / "world")  # frames copied as stored
        wm.memory = FrameMemory.open(copy)
    except BaseException:
        scratch.cleanup()
        raise
    return wm, scratch


def _write_output(output: Path, reader: "AnyReader", wm: "WorldModel", camera: PinholeCamera, stamps: list[int],
                  Ts: np.ndarray, clock: int, opt: ReplayOptions, result: ReplayResult) -> None:
    """Render in batches and write them, merged in log-time order with the copied input messages."""
    from tqdm import tqdm

    prefix = (opt.topic_prefix or default_prefix(opt.camera_frame)).rstrip("/")
    camera_frame = opt.camera_frame.strip("/")
    frame_id = f"{camera_frame}_optical" if opt.body_frame else camera_frame
    names = {"image": f"{prefix}/image_raw", "info": f"{prefix}/camera_info"}
    if opt.depth:
        names |= {"depth": f"{prefix}/depth/image_raw", "depth_info": f"{prefix}/depth/camera_info"}
    result.topics = names
    copy_conns = [c for c in reader.connections if c.topic not in names.values()] if opt.copy else []
    t_start = time.perf_counter()

    def rendered() -> Iterator[tuple[int, np.ndarray, np.ndarray | None]]:
        for i in range(0, len(stamps), opt.batch_size):
            t0 = time.perf_counter()
            out = wm.render_batch(Ts[i:i + opt.batch_size], camera, remember=opt.remember, return_depth=opt.depth)
            result.render_seconds += time.perf_counter() - t0
            imgs, depths = out if opt.depth else (out, [None] * len(out))
            yield from zip(stamps[i:i + opt.batch_size], imgs, depths)

    with BagWriter(output, storage=opt.storage) as writer, \
            tqdm(total=len(stamps), desc="rendering", unit="frame", disable=not opt.progress) as bar:
        if opt.body_frame:  # the rendered images have optical axes: say how that frame hangs off the body
            t0 = min(stamps[0] + clock, reader.start_time)
            writer.write_tf(max(0, t0 - clock), [(camera_frame, frame_id, make_transform(R_BODY_OPTICAL))],
                            static=True, timestamp_ns=t0)
        copied = reader.messages(connections=copy_conns) if copy_conns else iter(())
        pending = next(copied, None)
        for t, img, d in rendered():
            log_ns = max(0, t + clock)
            while pending is not None and pending[1] <= log_ns:
                writer.copy(pending[0], pending[2], pending[1], reader.typestore)
                pending = next(copied, None)
            writer.write_image(names["image"], t, frame_id, img, timestamp_ns=log_ns)
            writer.write_camera_info(names["info"], t, frame_id, camera, timestamp_ns=log_ns)
            if d is not None:
                writer.write_depth(names["depth"], t, frame_id, d, timestamp_ns=log_ns)
                writer.write_camera_info(names["depth_info"], t, frame_id, camera, timestamp_ns=log_ns)
            result.rendered += 1
            bar.update(1)
        while pending is not None:
            writer.copy(pending[0], pending[2], pending[1], reader.typestore)
            pending = next(copied, None)
    result.wall_seconds = time.perf_counter() - t_start
    result.bag_seconds = (stamps[-1] - stamps[0]) / NS_PER_S if len(stamps) > 1 else 0.0


# ------------------------------------------------------------------------------ command line
def _camera_arg(args: argparse.Namespace) -> PinholeCamera | None:
    if args.width is None and args.height is None and args.fov is None:
        return None
    return PinholeCamera.from_fov(args.width or 64, args.height or 64, args.fov or 90.0)


def run(args: argparse.Namespace) -> int:
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)  # 1 is often faster on a busy machine than oversubscribed cores
    opt = ReplayOptions(
        camera_frame=args.camera_frame, world_frame=args.world_frame, world=args.world, seed_topic=args.seed_topic,
        seed_camera_info_topic=args.seed_camera_info_topic, seed_stride=args.seed_stride, rate_hz=args.rate,
        at_topic=args.at_topic, poses=args.poses, offset=parse_offset(args.offset) if args.offset else None,
        camera=_camera_arg(args), camera_info_topic=args.camera_info_topic, body_frame=args.body_frame,
        topic_prefix=args.topic_prefix, storage=args.storage, copy=not args.no_copy, depth=args.depth,
        checkpoint=args.checkpoint, save_world=args.save_world, batch_size=args.batch,
        remember=not args.no_remember, progress=not args.quiet)
    res = replay(args.bag, args.output, opt)
    if res.output is not None:
        print(f"wrote {res.output}: {res.rendered} frames on {res.topics['image']} over {res.bag_seconds:.2f} s "
              f"of bag time in {res.wall_seconds:.2f} s ({res.realtime_factor:.1f}x real time)")
    if res.seeded:
        print(f"seeded {res.seeded} frames from {opt.seed_topic}")
    if res.skipped:
        print(f"skipped {res.skipped} stamps without TF data")
    if opt.save_world is not None:
        print(f"saved the world ({res.memory_frames if res.output is None else res.seeded} frames) to {opt.save_world}")
    return 0


def add_parser(sub: Any) -> None:
    p = sub.add_parser("replay", help="render a simulated camera along a ROS 2 bag's TF trajectory",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("bag", type=Path, help="input ROS 2 bag (directory, or .mcap / .db3 file)")
    p.add_argument("-o", "--output", type=Path, help="output bag directory (must not exist)")
    p.add_argument("--camera-frame", required=True, help="TF frame of the simulated camera (optical axes)")
    p.add_argument("--world-frame", default="map", help="fixed frame the world is stored in (default map)")
    p.add_argument("--body-frame", action="store_true",
                   help="the camera frame has ROS body axes (x forward, z up): apply the REP-103 rotation and "
                        "publish images in <camera-frame>_optical (added to /tf_static)")
    g = p.add_argument_group("world")
    g.add_argument("--world", type=Path, help="saved world directory to render")
    g.add_argument("--seed-topic", help="Image or CompressedImage topic whose frames seed the world")
    g.add_argument("--seed-camera-info-topic", help="CameraInfo for the seed images (default: found by namespace)")
    g.add_argument("--seed-stride", type=int, default=1, help="use every Nth seed image (default 1)")
    g.add_argument("--save-world", type=Path, help="write the world (after seeding) to this directory")
    g.add_argument("--checkpoint", type=Path, help="model checkpoint (default: the bundled model)")
    g.add_argument("--no-remember", action="store_true", help="do not add rendered views to the world")
    t = p.add_argument_group("when and where")
    t.add_argument("--rate", type=float, help="render at this rate over the TF time span (default 10 Hz)")
    t.add_argument("--at-topic", help="render at the header stamps of this topic's messages")
    t.add_argument("--poses", type=Path, help="CSV/JSON of stamp + pose (world frame) to render instead of TF")
    t.add_argument("--offset", help="x,y,z,yaw: shift the trajectory (metres, world frame) and turn it (degrees)")
    c = p.add_argument_group("camera and output")
    c.add_argument("--width", type=int, help="image width (multiple of 8; default 64)")
    c.add_argument("--height", type=int, help="image height (multiple of 8; default 64)")
    c.add_argument("--fov", type=float, help="horizontal field of view in degrees (default 90)")
    c.add_argument("--camera-info-topic",
                   help="take intrinsics from this CameraInfo topic (scaled to --width/--height if given)")
    c.add_argument("--topic-prefix", help="output topics' namespace (default /rtfm/<camera>)")
    c.add_argument("--depth", action="store_true", help="also write 32FC1 depth on <prefix>/depth/image_raw")
    c.add_argument("--storage", choices=["mcap", "sqlite3"], default="mcap", help="output storage (default mcap)")
    c.add_argument("--no-copy", action="store_true", help="do not copy the input bag's messages")
    c.add_argument("--batch", type=int, default=4,
                   help="views rendered per model call (default 4: best on CPU; raise it on a GPU)")
    c.add_argument("--threads", type=int, default=0, help="CPU threads for the model (default: PyTorch's choice)")
    c.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=run)
