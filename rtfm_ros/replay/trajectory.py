"""Where and when a replay renders: the bag's TF at a rate or at a topic's stamps, or a poses file,
optionally shifted (--offset). All poses are optical-axes T_world_camera.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import sys
from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from rtfm_ros.geometry import POSE_REPAIR_TOL, body_to_optical, heading_rotation, repair_rotation, transform_from_ros
from rtfm_ros.io.bags import connections_for
from rtfm_ros.io.messages import stamp_to_ns
from rtfm_ros.replay.options import ReplayError, ReplayOptions
from rtfm_ros.tf_buffer import NS_PER_S, ExtrapolationError, TransformBuffer

_log = logging.getLogger(__name__)

if TYPE_CHECKING:  # pragma: no cover
    from rosbags.highlevel import AnyReader


def parse_offset(text: str) -> tuple[float, float, float, float]:
    """'x,y,z,yaw_deg' -> floats."""
    try:
        vals = tuple(float(v) for v in text.split(","))
    except ValueError:
        vals = ()
    if len(vals) != 4 or not all(math.isfinite(v) for v in vals):
        raise ReplayError(f"--offset must be four numbers x,y,z,yaw (metres, degrees), got {text!r}")
    return vals


def apply_offset(T: np.ndarray, offset: Sequence[float]) -> np.ndarray:
    """Shift a camera by (x, y, z) in the world frame and turn it by yaw degrees about world z, in place."""
    x, y, z, yaw = offset
    out = np.array(T, dtype=np.float64)
    out[:3, :3] = heading_rotation(math.radians(yaw)) @ out[:3, :3]
    out[:3, 3] += (x, y, z)
    return out


def _pose_row(row: dict[str, Any], where: str) -> tuple[int, np.ndarray, bool]:
    try:
        if "stamp_ns" in row:
            t = int(row["stamp_ns"])
        else:
            t = int((Decimal(str(row["stamp"])) * NS_PER_S).to_integral_value())  # exact to the ns
        repaired = False
        if "T" in row:  # a 4x4 written with a few decimals: re-orthonormalised within POSE_REPAIR_TOL
            T, repaired = repair_rotation(np.asarray(row["T"], dtype=np.float64), f"{where} T")
        else:
            pos = row.get("position") or [row["x"], row["y"], row["z"]]
            q = row.get("orientation") or [row["qx"], row["qy"], row["qz"], row["qw"]]
            T = transform_from_ros([float(v) for v in pos], [float(v) for v in q])
    except (KeyError, TypeError, ValueError, ArithmeticError) as e:
        raise ReplayError(f"{where}: a pose needs stamp (s) or stamp_ns, and x,y,z,qx,qy,qz,qw "
                          f"(or position/orientation, or a 4x4 T): {e}") from e
    if t < 0:
        raise ReplayError(f"{where}: stamp must be >= 0")
    return t, T, repaired


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
    read = [_pose_row(r, f"{path} pose {i}") for i, r in enumerate(rows)]
    if not read:
        raise ReplayError(f"poses file {path} holds no poses")
    repaired = sum(fixed for _, _, fixed in read)
    if repaired:
        _log.warning("%s: %d of %d rotations were re-orthonormalised (within %g of a rotation, as files "
                     "rounded to a few decimals are)", path, repaired, len(read), POSE_REPAIR_TOL)
    return sorted(((t, T) for t, T, _ in read), key=lambda p: p[0])


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


def check_frames(tf: TransformBuffer, *frames: str) -> None:
    known = tf.frames()
    for f in frames:
        if f.lstrip("/") not in known:
            listing = ", ".join(sorted(known)) if known else "(none: the bag has no /tf or /tf_static)"
            raise ReplayError(f"frame {f!r} is not in the bag's TF tree; frames in the bag: {listing}")


def camera_pose(tf: TransformBuffer, world: str, frame: str, t: int, body: bool) -> np.ndarray:
    T = tf.lookup(world, frame, t)
    return body_to_optical(T) if body else T


def _render_times(reader: AnyReader, tf: TransformBuffer, opt: ReplayOptions) -> list[int]:
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


def trajectory(reader: AnyReader, tf: TransformBuffer, opt: ReplayOptions) -> tuple[list[int], np.ndarray, int]:
    """(stamps, Nx4x4 optical T_world_camera, skipped) to render."""
    if opt.poses is not None:
        poses = load_poses(opt.poses)
        stamps = [t for t, _ in poses]
        Ts = [body_to_optical(T) if opt.body_frame else T for _, T in poses]
        skipped = 0
    else:
        check_frames(tf, opt.world_frame, opt.camera_frame)
        stamps, Ts, skipped = [], [], 0
        for t in _render_times(reader, tf, opt):
            try:
                Ts.append(camera_pose(tf, opt.world_frame, opt.camera_frame, t, opt.body_frame))
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
