"""The replay itself: check everything, load or seed the world, render along the trajectory in
batches and write the output bag, merged in log-time order with the input's messages.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from rtfm_ros.geometry import R_BODY_OPTICAL, PinholeCamera, make_transform
from rtfm_ros.io.bags import BagWriter, load_tf, open_bag, read_camera_infos
from rtfm_ros.memory.working_copy import WorkingCopy
from rtfm_ros.replay.options import ReplayError, ReplayOptions, ReplayResult
from rtfm_ros.replay.seeding import seed_sources, seed_world
from rtfm_ros.replay.trajectory import trajectory
from rtfm_ros.tf_buffer import NS_PER_S, TransformLookupError

if TYPE_CHECKING:  # pragma: no cover
    from rosbags.highlevel import AnyReader

    from rtfm_ros.world import WorldModel


def default_prefix(camera_frame: str) -> str:
    """/rtfm/<camera>: the frame name without _optical_frame / _frame / _link / _optical."""
    name = re.sub(r"(_optical_frame|_optical|_frame|_link)$", "", camera_frame.strip("/")) or "camera"
    return f"/rtfm/{re.sub(r'[^A-Za-z0-9_/]', '_', name)}"


def _render_camera(reader: AnyReader, opt: ReplayOptions) -> PinholeCamera:
    if opt.camera_info_topic:
        _, cams = read_camera_infos(reader, opt.camera_info_topic)
        cam = cams[0]
        if opt.camera is not None:
            cam = cam.scaled(opt.camera.width, opt.camera.height)
        return cam
    return opt.camera or PinholeCamera.from_fov(64, 64, 90.0)


def _validate(opt: ReplayOptions, output: str | Path | None, have_model: bool) -> None:
    if opt.world is None and not opt.seed_topic and not have_model:
        raise ReplayError("nothing to render from: give a saved world (--world FILE), seed one from the bag's "
                          "camera images (--seed-topic TOPIC), or both")
    if output is None and opt.save_world is None:
        raise ReplayError("give an output bag (-o) and/or --save-world")
    if opt.world is not None and not Path(opt.world).exists():
        raise ReplayError(f"saved world {opt.world} does not exist")
    if output is not None and Path(output).exists():
        raise ReplayError(f"output {output} exists already; refusing to overwrite it")


def replay(bag: str | Path, output: str | Path | None, opt: ReplayOptions,
           world_model: WorldModel | None = None) -> ReplayResult:
    """Seed and/or load a world, render opt.camera_frame along the bag's TF, write the output bag.

    Everything that can be checked (options, frames, topics, camera size) is checked before the
    model loads and before anything is written. ``world_model`` (used as given: opt.world and
    opt.checkpoint are then ignored) lets a caller keep one model across replays.
    """
    _validate(opt, output, world_model is not None)
    result = ReplayResult(output=Path(output) if output is not None else None)
    copy: WorkingCopy | None = None
    own_model = world_model is None
    reader = open_bag(bag)
    try:
        tf, offsets = load_tf(reader)
        if not tf.frames() and opt.poses is None:
            raise ReplayError(f"bag {bag} has no /tf or /tf_static messages to follow")
        camera = _render_camera(reader, opt)
        if opt.seed_topic:
            seed_sources(reader, opt)
        stamps, Ts, result.skipped = trajectory(reader, tf, opt) if output is not None else ([], np.empty(0), 0)
        if world_model is None:
            world_model, copy = _load_world(opt)
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
        if copy is not None:
            copy.close()
        elif own_model and world_model is not None:
            world_model.memory.close()
    return result


def _load_world(opt: ReplayOptions) -> tuple[WorldModel, WorkingCopy | None]:
    """The model with opt.world opened read-only: the saved world is input and is never changed.

    Frames added during replay (seeds, remembered views) go to a working copy, deleted afterwards
    (--save-world keeps them).
    """
    from rtfm_ros.memory import FrameMemory
    from rtfm_ros.render.cache import RenderCore
    from rtfm_ros.world import WorldModel

    core = RenderCore.load(opt.checkpoint)
    if opt.world is None:
        return WorldModel(core), None
    if not (opt.remember or opt.seed_topic):
        wm = WorldModel(core, FrameMemory.open(opt.world, writable=False))
        wm.load_fit_beside(opt.world)  # `rtfm fit`'s parameters, when it left them beside the world
        return wm, None
    copy = WorkingCopy(opt.world)
    try:
        wm = WorldModel(core, copy.memory)
        wm.load_fit_beside(opt.world)
        return wm, copy
    except BaseException:
        copy.close()
        raise


def _write_output(output: Path, reader: AnyReader, wm: WorldModel, camera: PinholeCamera, stamps: list[int],
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
            batch = Ts[i:i + opt.batch_size]
            imgs, depths = wm.render_batch(batch, camera, remember=False, return_depth=True)
            written: list[np.ndarray | None] = []
            for T, img, d in zip(batch, imgs, depths):  # depth as the world's one policy takes it
                written.append(wm.view_depth(d, T, camera, policy=opt.depth_source) if opt.depth else None)
                if opt.remember:
                    wm.remember_view(img, T, camera, d, policy=opt.depth_source)
            result.render_seconds += time.perf_counter() - t0
            yield from zip(stamps[i:i + opt.batch_size], imgs, written)

    with BagWriter(output, storage=opt.storage) as writer, \
            tqdm(total=len(stamps), desc="rendering", unit="frame", disable=not opt.progress) as bar:
        if opt.body_frame:  # the rendered images have optical axes: say how that frame hangs off the body
            t0 = min(stamps[0] + clock, reader.start_time)
            writer.write_tf([(camera_frame, frame_id, make_transform(R_BODY_OPTICAL))], max(0, t0 - clock),
                            static=True, timestamp_ns=t0)
        copied = reader.messages(connections=copy_conns) if copy_conns else iter(())
        pending = next(copied, None)
        for t, img, d in rendered():
            log_ns = max(0, t + clock)
            while pending is not None and pending[1] <= log_ns:
                writer.copy(pending[0], pending[2], pending[1], reader.typestore)
                pending = next(copied, None)
            writer.write_image(names["image"], img, t, frame_id, timestamp_ns=log_ns)
            writer.write_camera_info(names["info"], camera, t, frame_id, timestamp_ns=log_ns)
            if d is not None:
                writer.write_depth(names["depth"], d, t, frame_id, timestamp_ns=log_ns)
                writer.write_camera_info(names["depth_info"], camera, t, frame_id, timestamp_ns=log_ns)
            result.rendered += 1
            bar.update(1)
        while pending is not None:
            writer.copy(pending[0], pending[2], pending[1], reader.typestore)
            pending = next(copied, None)
    result.wall_seconds = time.perf_counter() - t_start
    result.bag_seconds = (stamps[-1] - stamps[0]) / NS_PER_S if len(stamps) > 1 else 0.0
